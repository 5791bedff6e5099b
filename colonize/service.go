package colonize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

func validNodeKey(k string) bool { return nkeys.IsValidPublicUserKey(k) }

// startFallback starts the node detached, without systemd, and records its pid.
const startFallback = `touch ` + LogPath + `; chmod 0600 ` + LogPath + `
setsid ` + BinaryPath + ` up --config ` + ConfigPath + ` >>` + LogPath + ` 2>&1 </dev/null &
echo $! > ` + PidPath

// stopFallback stops the node started by startFallback, waiting for its lame duck.
const stopFallback = `p=$(cat ` + PidPath + ` 2>/dev/null) || p=
if [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' < /proc/$p/cmdline | grep -q 'robonet up'; then
  kill -TERM "$p"; i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 500 ]; do sleep 0.1; i=$((i+1)); done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p"
fi
rm -f ` + PidPath

func (r *hostRun) service(ctx context.Context) (string, string, error) {
	restart := r.changed["binary"] || r.changed["config"] || r.changed["token"]
	if r.facts.Init != "systemd" {
		return r.serviceFallback(ctx, restart)
	}
	unitChanged := r.pre.unit != unitText
	if r.e.o.Check {
		if unitChanged {
			r.emitDiff(StepService, UnitPath, r.pre.unit, unitText)
		}
		switch {
		case unitChanged || restart:
			return StatusChanged, "would install and (re)start " + UnitName, nil
		case !r.pre.active || !r.pre.enabled:
			return StatusChanged, "would enable and start " + UnitName, nil
		}
		return StatusUnchanged, UnitName + " enabled and active", nil
	}
	if !unitChanged && !restart && r.pre.active && r.pre.enabled {
		return StatusUnchanged, UnitName + " enabled and active", nil
	}
	if err := r.begin(ctx); err != nil {
		return "", "", err
	}
	var what []string
	if unitChanged {
		if err := r.writeFile(ctx, UnitPath, []byte(unitText)); err != nil {
			return "", "", err
		}
		restart = true
		what = append(what, "unit written")
	}
	script := "set -e; systemctl daemon-reload; systemctl enable --quiet " + UnitName
	if restart && r.pre.active {
		script += "; systemctl restart " + UnitName
		what = append(what, "restarted")
	} else {
		script += "; systemctl start " + UnitName
		what = append(what, "enabled, started")
	}
	if err := r.sh.run(ctx, script, nil, nil); err != nil {
		return "", "", fmt.Errorf("systemctl: %w", err)
	}
	r.started = true
	return StatusChanged, UnitName + " " + strings.Join(what, ", "), nil
}

func (r *hostRun) serviceFallback(ctx context.Context, restart bool) (string, string, error) {
	const how = "no systemd: runs detached, pid in " + PidPath + ", log " + LogPath + " (not started at boot)"
	if !restart && r.pre.active {
		return StatusUnchanged, how, nil
	}
	if r.e.o.Check {
		return StatusChanged, "would (re)start the node; " + how, nil
	}
	if err := r.begin(ctx); err != nil {
		return "", "", err
	}
	if err := r.sh.run(ctx, stopFallback+"\n"+startFallback, nil, nil); err != nil {
		return "", "", fmt.Errorf("start the node: %w", err)
	}
	r.started = true
	return StatusChanged, "started; " + how, nil
}

// serviceState reports whether the node's service runs, and when it does
// not, the last lines it logged.
func (r *hostRun) serviceState(ctx context.Context) (bool, string) {
	script := `p=$(cat ` + PidPath + ` 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo RUNNING; tail -n 12 ` + LogPath + ` 2>/dev/null`
	if r.facts.Init == "systemd" {
		script = `systemctl is-active --quiet ` + UnitName + ` && echo RUNNING; journalctl -u ` + UnitName + ` -n 12 --no-pager -o cat 2>/dev/null`
	}
	out, err := r.sh.output(ctx, script, nil)
	if err != nil {
		return true, "" // unknown: let the registry decide
	}
	s := string(out)
	if rest, ok := strings.CutPrefix(s, "RUNNING\n"); ok {
		return true, rest
	}
	return false, s
}

func (r *hostRun) wait(ctx context.Context) (string, string, error) {
	if r.e.o.Check {
		return StatusSkipped, "--check", nil
	}
	deadline := time.Now().Add(r.e.o.WaitJoin)
	var lastSvc time.Time
	for {
		m, err := r.e.o.Swarm.Member(ctx, r.pubkey)
		if err == nil && m.Registered && m.Live {
			r.member = m
			if running, _ := r.serviceState(ctx); running {
				break
			}
		}
		if time.Since(lastSvc) > time.Second {
			lastSvc = time.Now()
			if running, logs := r.serviceState(ctx); !running {
				return "", "", fail(fmt.Errorf("the node's service is not running; its last log lines:\n%s", indent(logs)),
					"see the log above; colonize rolls back unless --keep-on-failure")
			}
		}
		if time.Now().After(deadline) {
			return "", "", fail(fmt.Errorf("node %s not live in the registry after %v", short(r.pubkey), r.e.o.WaitJoin),
				"check that the target reaches the --join addresses (route port 6222) and the node's log (journalctl -u robonet)")
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	interrupted := r.j != nil && (r.j.Run != nil || r.pre.exists[TokenPath])
	if !r.mutated && !interrupted {
		return StatusUnchanged, fmt.Sprintf("live as %s (%s)", r.member.Chevron, r.member.Name), nil
	}
	if err := r.commit(ctx); err != nil {
		return "", "", err
	}
	if !r.mutated {
		// An earlier run was cut short after its node came up: finish it.
		return StatusOK, fmt.Sprintf("live as %s (%s); finished the interrupted run's journal", r.member.Chevron, r.member.Name), nil
	}
	return StatusOK, fmt.Sprintf("joined as %s (%s), heartbeating", r.member.Chevron, r.member.Name), nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "  (nothing logged)"
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// commit ends a run that worked: the spent token and the previous versions
// go, the journal records the node's key and no unfinished run.
func (r *hostRun) commit(ctx context.Context) error {
	r.j.Run = nil
	r.j.Pubkey = r.pubkey
	data := r.j.encode(time.Now())
	script := "set -e; rm -f " + TokenPath + "; rm -rf " + PrevDir + "; " + writeJournalScript(len(data))
	if err := r.sh.run(ctx, script, bytes.NewReader(data), nil); err != nil {
		return fmt.Errorf("finish the journal: %w", err)
	}
	return nil
}

// rollback puts back what the run changed: the previous binary, config and
// unit, and the old node running again; on a host colonize had not set up
// before, it removes everything. The new key, if the swarm saw it, is
// revoked.
func (r *hostRun) rollback(ctx context.Context, cause error) {
	start := time.Now()
	if r.e.o.KeepOnFailure {
		r.report(StepRollback, StatusSkipped, "--keep-on-failure: the host is left as the failed step left it; rerun or uncolonize", time.Since(start), nil)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
	defer cancel()
	err := r.undo(ctx)
	if r.issued && r.newKey {
		if rerr := r.e.o.Swarm.Revoke(ctx, r.pubkey, "colonize rolled back: "+clip(cause.Error(), 80)); rerr != nil {
			err = errors.Join(err, fmt.Errorf("revoke %s: %w", r.pubkey, rerr))
		}
	}
	detail := "previous binary, config and service restored"
	if r.j.Run != nil && slices.Contains(r.j.Run.Created, DataDir) {
		detail = "everything colonize put there removed"
	}
	if r.issued && r.newKey {
		detail += "; new key revoked"
	}
	r.res.RolledBack = err == nil
	r.report(StepRollback, StatusChanged, detail, time.Since(start), err)
}

func (r *hostRun) undo(ctx context.Context) error {
	run := r.j.Run
	if run == nil {
		return nil
	}
	var b strings.Builder
	if r.facts.Init == "systemd" {
		b.WriteString("systemctl stop " + UnitName + " 2>/dev/null || true\n")
	} else {
		b.WriteString(stopFallback + "\n")
	}
	for _, p := range run.Saved {
		fmt.Fprintf(&b, "if [ -e %[1]s ]; then mv -f %[1]s %[2]s; fi\n", quote(prevName(p)), quote(p))
	}
	if slices.Contains(run.Created, UnitPath) {
		b.WriteString("systemctl disable --quiet " + UnitName + " 2>/dev/null || true; systemctl reset-failed " + UnitName + " 2>/dev/null || true\n")
	}
	b.WriteString(removeScript(run.Created) + "\n")
	if r.facts.Init == "systemd" {
		b.WriteString("systemctl daemon-reload\n")
	}
	if run.WasActive {
		if r.facts.Init == "systemd" {
			b.WriteString("systemctl start " + UnitName + "\n")
		} else {
			b.WriteString(startFallback + "\n")
		}
	}
	if err := r.sh.run(ctx, b.String(), nil, nil); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	if slices.Contains(run.Created, DataDir) {
		return nil // the journal went with it
	}
	r.j.Created = slices.DeleteFunc(r.j.Created, func(p string) bool { return slices.Contains(run.Created, p) })
	r.j.Run = nil
	data := r.j.encode(time.Now())
	return r.sh.run(ctx, "rm -rf "+PrevDir+"; "+writeJournalScript(len(data)), bytes.NewReader(data), nil)
}
