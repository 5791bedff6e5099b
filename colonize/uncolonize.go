package colonize

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrNotColonized is returned by Uncolonize for a host with no journal.
var ErrNotColonized = errors.New("not colonized by robonet")

// Uncolonize stops and disables the node on every target, removes every
// path its journal lists and revokes the node's key in the swarm.
func Uncolonize(ctx context.Context, targets []Target, o Options) ([]Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	e := &engine{o: o}
	return e.each(ctx, targets, e.uncolonize), nil
}

func (e *engine) uncolonize(ctx context.Context, t Target) Result {
	r := e.newRun(t)
	err := r.connect(ctx)
	if err == nil {
		defer r.conn.Close()
		err = r.remove(ctx)
	}
	return r.finish(err)
}

func (r *hostRun) remove(ctx context.Context) error {
	var j *journal
	err := r.step(StepDetect, func() (string, string, error) {
		out, err := r.conn.Output(ctx, detectScript, nil)
		if err != nil {
			return "", "", fmt.Errorf("detect: %w", err)
		}
		if r.facts, err = parseFacts(string(out)); err != nil {
			return "", "", err
		}
		out, err = r.sh.output(ctx, "cat "+JournalPath+" 2>/dev/null || true", nil)
		if err != nil {
			return "", "", err
		}
		if j, err = parseJournal(string(out)); err != nil {
			return "", "", err
		}
		if j == nil {
			return "", "", fail(fmt.Errorf("%w: no journal at %s", ErrNotColonized, JournalPath), "nothing was removed; a robonet installed by hand is removed by hand")
		}
		// The key to revoke is the one the host proves it holds (before its
		// data dir goes), never the journal's word alone: a hostile host
		// could name another member's key there.
		detail := fmt.Sprintf("journal lists %d paths, service %s", len(j.Created), j.Service)
		if j.Pubkey != "" {
			id, err := r.proveIdentity(ctx)
			switch {
			case err != nil:
				r.unproven = fmt.Sprintf("the host did not prove it holds %s (%v)", j.Pubkey, err)
			case id.Pubkey != j.Pubkey:
				r.unproven = fmt.Sprintf("the host holds %s, not the journal's %s", id.Pubkey, j.Pubkey)
			default:
				r.pubkey = id.Pubkey
				detail += ", node key " + short(id.Pubkey) + " proven"
			}
		}
		return StatusUnchanged, detail, nil
	})
	if err != nil {
		return err
	}
	if err := r.step(StepStop, func() (string, string, error) {
		script := stopFallback
		if j.Service == "systemd" {
			script = "systemctl disable --now --quiet " + UnitName + " 2>/dev/null || true; systemctl reset-failed " + UnitName + " 2>/dev/null || true"
		}
		if err := r.sh.run(ctx, script, nil, nil); err != nil {
			return "", "", fmt.Errorf("stop the node: %w", err)
		}
		return StatusChanged, "node stopped (lame duck), service disabled", nil
	}); err != nil {
		return err
	}
	if err := r.step(StepRemove, func() (string, string, error) {
		paths := sortedUnique(append(slices.Clone(j.Created), j.runCreated()...))
		script := removeScript(paths)
		if j.Run != nil {
			// An unfinished run kept previous versions of files that existed
			// before it: put them back, as a rollback would.
			for _, p := range j.Run.Saved {
				if !slices.Contains(paths, p) {
					script = fmt.Sprintf("if [ -e %[1]s ]; then mv -f %[1]s %[2]s; fi; ", quote(prevName(p)), quote(p)) + script
				}
			}
		}
		if !slices.Contains(paths, DataDir) {
			script += "; rm -rf " + StateDir
		}
		if j.Service == "systemd" {
			script += "; systemctl daemon-reload"
		}
		if err := r.sh.run(ctx, script, nil, nil); err != nil {
			return "", "", fmt.Errorf("remove: %w", err)
		}
		return StatusChanged, "removed " + strings.Join(paths, " "), nil
	}); err != nil {
		return err
	}
	// One removal at a time: a stream replicated on two removed nodes
	// would wait for JetStream to place it again before taking a write.
	r.e.join.Lock()
	defer r.e.join.Unlock()
	return r.step(StepRevoke, func() (string, string, error) {
		if r.unproven != "" {
			return "", "", fail(fmt.Errorf("not revoked: %s", r.unproven), "the host is clean; if the key is this host's, revoke it by hand: robonet revoke KEY")
		}
		if r.pubkey == "" {
			return StatusSkipped, "the journal names no key (the node never finished joining)", nil
		}
		m, err := r.e.o.Swarm.Member(ctx, r.pubkey)
		if err == nil && m.Revoked {
			return StatusUnchanged, r.pubkey + " already revoked", nil
		}
		if err := r.e.o.Swarm.Revoke(ctx, r.pubkey, "uncolonized"); err != nil {
			return "", "", fail(fmt.Errorf("revoke %s: %w", r.pubkey, err), "the host is clean; revoke the key by hand: robonet revoke "+r.pubkey)
		}
		r.member = m
		return StatusChanged, fmt.Sprintf("%s revoked (%s)", r.pubkey, m.Chevron), nil
	})
}
