package colonize

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/trust"
)

// maxSkew is the clock difference colonize accepts: join tokens and route
// certificates carry times, and a node far off would be refused or refuse.
const maxSkew = 60 * time.Second

func (r *hostRun) preflight(ctx context.Context) (string, string, error) {
	out, err := r.sh.output(ctx, preflightScript(), nil)
	if err != nil {
		return "", "", fmt.Errorf("preflight: %w", err)
	}
	p, err := parsePreflight(string(out))
	if err != nil {
		return "", "", err
	}
	r.pre = p
	if r.j, err = parseJournal(p.journal); err != nil {
		return "", "", fail(err, "inspect the journal; `robonet uncolonize` refuses it too, remove it by hand")
	}
	bin, err := r.e.o.Binaries.For(r.facts.Arch)
	if err != nil {
		return "", "", fail(err, "")
	}
	lf, err := r.e.local(bin)
	if err != nil {
		return "", "", err
	}
	r.bin = lf
	var notes []string
	if !p.exists["/usr/local/bin"] {
		return "", "", fail(errors.New("/usr/local/bin does not exist"), "create it (mkdir -p /usr/local/bin) and rerun")
	}
	if p.noexec {
		return "", "", fail(errors.New("/usr/local/bin is on a noexec mount"), "remount it exec, robonet cannot run from there")
	}
	if need := 2 * lf.size / 1024; p.freeBin < need && p.binSum != lf.sum {
		return "", "", fail(fmt.Errorf("%d KiB free in /usr/local/bin, need %d", p.freeBin, need), "free disk space on the target")
	}
	if p.freeData < 64*1024 {
		return "", "", fail(fmt.Errorf("%d KiB free under /var/lib, need 65536", p.freeData), "free disk space on the target")
	}
	skew := time.Duration(p.now-time.Now().Unix()) * time.Second
	if skew > maxSkew || skew < -maxSkew {
		return "", "", fail(fmt.Errorf("the target's clock is %v off this machine's", skew), "sync its clock (timedatectl set-ntp true, or chrony/ntpd), then rerun")
	}
	if p.tmpNoexec {
		notes = append(notes, "/tmp noexec (not used)")
	}
	if p.selinux != "" {
		notes = append(notes, "SELinux "+p.selinux)
	}
	switch {
	case p.binSum == lf.sum:
		notes = append(notes, "robonet present, same build")
	case p.binSum != "":
		notes = append(notes, "robonet present, another build ("+short(p.binSum)+"): upgrade")
	}
	if p.active {
		notes = append(notes, "node running")
	}
	if r.j == nil && p.exists[BinaryPath] {
		notes = append(notes, "robonet installed by other means: colonize will keep its files on uncolonize")
	}
	return StatusUnchanged, fmt.Sprintf("skew %v, %d MiB free; %s", skew, p.freeBin/1024, strings.Join(notes, ", ")), nil
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// begin writes the journal ahead of the run's first change to the target:
// it lists every managed path the run may create, so whatever a kill
// leaves behind, uncolonize and a rerun know it is colonize's.
func (r *hostRun) begin(ctx context.Context) error {
	if r.mutated {
		return nil
	}
	if r.j == nil {
		r.j = &journal{}
	}
	if r.j.Run == nil {
		r.j.Run = &runLog{Started: time.Now().UTC().Format(time.RFC3339), WasActive: r.pre.active}
	}
	r.j.Service = "fallback"
	paths := []string{DataDir, StateDir, ConfigDir, BinaryPath, ConfigPath, TokenPath, LogPath, PidPath}
	if r.facts.Init == "systemd" {
		r.j.Service = "systemd"
		paths = []string{DataDir, StateDir, ConfigDir, BinaryPath, ConfigPath, TokenPath, UnitPath}
	}
	for _, p := range paths {
		if !r.pre.exists[p] {
			r.j.note(p)
		}
	}
	data := r.j.encode(time.Now())
	if err := r.sh.run(ctx, writeJournalScript(len(data)), bytes.NewReader(data), nil); err != nil {
		return fmt.Errorf("write journal %s: %w", JournalPath, err)
	}
	r.mutated = true
	return nil
}

func (r *hostRun) upload(ctx context.Context) (string, string, error) {
	lf := r.bin
	if r.pre.binSum == lf.sum && r.pre.binSize == lf.size {
		return StatusUnchanged, fmt.Sprintf("%s sha256 %s, 0 bytes sent", BinaryPath, short(lf.sum)), nil
	}
	if r.e.o.Check {
		return StatusChanged, fmt.Sprintf("would upload %s (%d bytes, sha256 %s)", lf.path, lf.size, short(lf.sum)), nil
	}
	if err := r.begin(ctx); err != nil {
		return "", "", err
	}
	f, err := os.Open(lf.path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	restorecon := ""
	if r.pre.selinux != "" && r.pre.selinux != "Disabled" {
		restorecon = "restorecon -F " + BinaryPath + " || true"
	}
	script := fmt.Sprintf(`set -e; umask 022; t=/usr/local/bin/.robonet.new.%[1]s; trap 'rm -f "$t"' EXIT
cat > "$t"
s=$(wc -c < "$t" | tr -d ' '); [ "$s" = %[2]d ] || { echo "received $s bytes, sent %[2]d" >&2; exit 3; }
h=$(sha256sum "$t" | cut -d' ' -f1); [ "$h" = %[3]s ] || { echo "sha256 $h, sent %[3]s" >&2; exit 4; }
chmod 0755 "$t"; sync "$t" 2>/dev/null || sync
%[4]s
mv -f "$t" %[5]s; trap - EXIT
%[6]s
sha256sum %[5]s | cut -d' ' -f1`, r.sh.nonce, lf.size, lf.sum, saveScript(BinaryPath), BinaryPath, restorecon)
	out, err := r.sh.output(ctx, script, f)
	if err != nil {
		return "", "", fmt.Errorf("upload: %w", err)
	}
	if got := strings.TrimSpace(string(out)); got != lf.sum {
		return "", "", fmt.Errorf("upload: %s has sha256 %q after the rename, want %s", BinaryPath, got, lf.sum)
	}
	r.note(BinaryPath)
	r.res.BytesSent += lf.size
	r.changed["binary"] = true
	return StatusChanged, fmt.Sprintf("%d bytes to %s, sha256 %s verified, renamed into place", lf.size, BinaryPath, short(lf.sum)), nil
}

// note records that the run saved path's previous version.
func (r *hostRun) note(path string) {
	if r.pre.exists[path] && r.j != nil && r.j.Run != nil {
		r.j.Run.Saved = append(r.j.Run.Saved, path)
	}
}

// nodeConfig is the config this target should have.
func (r *hostRun) nodeConfig(ctx context.Context) (NodeConfig, error) {
	c := NodeConfig{Data: DataDir, Cluster: "0.0.0.0:6222", Swarm: r.e.o.Swarm.Name(), TokenFile: TokenPath,
		Chevron: r.t.Chevron, Caps: r.t.Caps, Tags: r.t.Tags}
	if err := checkSwarmName(c.Swarm); err != nil {
		return c, err
	}
	if old := configValue(r.pre.config, "join"); old != "" && len(r.e.o.Join) == 0 {
		// Joining matters only for the first contact (routes are gossiped
		// after): keep the addresses the node has, so a grown swarm does
		// not rewrite every node's config and restart it.
		c.Join = strings.Split(old, ",")
		if c.Chevron == "" {
			c.Chevron = configValue(r.pre.config, "chevron")
		}
		for _, a := range c.Join {
			if err := checkJoin(a); err != nil {
				return c, fail(fmt.Errorf("%s on the target: %w", ConfigPath, err), "pass --join ADDR to replace it")
			}
		}
		if c.Chevron != "" {
			if err := CheckTarget(Target{Chevron: c.Chevron}); err != nil {
				return c, fail(fmt.Errorf("%s on the target: %w", ConfigPath, err), "pass --chevron, or fix the file")
			}
		}
		return c, nil
	}
	join := r.e.o.Join
	if len(join) == 0 {
		var err error
		if join, err = r.e.o.Swarm.JoinAddrs(ctx); err != nil {
			return c, fmt.Errorf("the swarm's route addresses: %w", err)
		}
	}
	for _, a := range join {
		if port, ok := unspecified(a); ok {
			if r.facts.SSHClient == "" {
				continue
			}
			a = net.JoinHostPort(r.facts.SSHClient, port)
		}
		c.Join = append(c.Join, a)
	}
	c.Join = sortedUnique(c.Join)
	for _, a := range c.Join {
		if err := checkJoin(a); err != nil {
			return c, fail(err, "pass --join ADDR with a member's route address")
		}
	}
	if len(c.Join) == 0 {
		return c, fail(errors.New("no route address for the target to join"), "pass --join ADDR (a member's cluster address the target can reach)")
	}
	return c, nil
}

func (r *hostRun) config(ctx context.Context) (string, string, error) {
	c, err := r.nodeConfig(ctx)
	if err != nil {
		return "", "", err
	}
	want := string(c.render())
	if r.pre.config == want {
		return StatusUnchanged, ConfigPath + " (0600) as rendered", nil
	}
	if r.e.o.Check {
		r.emitDiff(StepConfig, ConfigPath, r.pre.config, want)
		return StatusChanged, "would write " + ConfigPath, nil
	}
	if err := r.begin(ctx); err != nil {
		return "", "", err
	}
	if err := r.writeFile(ctx, ConfigPath, []byte(want)); err != nil {
		return "", "", err
	}
	r.changed["config"] = true
	return StatusChanged, fmt.Sprintf("%s written (0600), join %s", ConfigPath, strings.Join(c.Join, ",")), nil
}

// writeFile writes data to a managed path atomically, 0600, keeping the
// previous version for a rollback.
func (r *hostRun) writeFile(ctx context.Context, path string, data []byte) error {
	dir := path[:strings.LastIndex(path, "/")]
	script := fmt.Sprintf(`set -e; umask 077; mkdir -p %[1]s; %[2]s; t=%[3]s.tmp.$$; trap 'rm -f "$t"' EXIT; cat > "$t"; sync "$t" 2>/dev/null || true; mv -f "$t" %[3]s; trap - EXIT`,
		quote(dir), saveScript(path), quote(path))
	if err := r.sh.run(ctx, script, bytes.NewReader(data), nil); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	r.note(path)
	return nil
}

func (r *hostRun) emitDiff(step, path, old, new string) {
	r.e.emit(Event{Host: r.res.Host, Step: step, Status: StatusRunning, Detail: "diff " + path, Diff: Diff(path, old, new)})
}

func (r *hostRun) identity(ctx context.Context) (string, string, error) {
	if r.e.o.Check && (!r.pre.exists[DataDir+"/node.nk"] || r.changed["binary"] || r.pre.binSum != r.bin.sum) {
		if r.pre.exists[DataDir+"/node.nk"] {
			return StatusUnchanged, "node key present in " + DataDir, nil
		}
		return StatusChanged, "would create the node key on the target", nil
	}
	if !r.pre.exists[DataDir+"/node.nk"] {
		if err := r.begin(ctx); err != nil {
			return "", "", err
		}
	}
	id, err := r.proveIdentity(ctx)
	if err != nil {
		return "", "", err
	}
	r.pubkey = id.Pubkey
	if id.Created {
		r.newKey = true
		return StatusChanged, "node key made on the target; public key " + id.Pubkey, nil
	}
	return StatusUnchanged, "node key " + id.Pubkey, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func (r *hostRun) credential(ctx context.Context) (string, string, error) {
	if r.pubkey == "" { // --check on a host without a key yet
		return StatusChanged, fmt.Sprintf("would issue a one-time join token bound to the new key (ttl %v)", r.e.o.TokenTTL), nil
	}
	m, err := r.e.o.Swarm.Member(ctx, r.pubkey)
	if err != nil {
		return "", "", fmt.Errorf("look up %s in the registry: %w", r.pubkey, err)
	}
	r.member = m
	switch {
	case m.Revoked:
		return "", "", fail(fmt.Errorf("node key %s is revoked in this swarm", r.pubkey), "robonet uncolonize the host (it removes the old key), then colonize it again")
	case m.Registered:
		return StatusUnchanged, fmt.Sprintf("already a member as %s (%s): no token needed", m.Chevron, m.Name), nil
	case r.e.o.Check:
		return StatusChanged, fmt.Sprintf("would issue a one-time join token bound to %s (ttl %v)", r.pubkey, r.e.o.TokenTTL), nil
	}
	tok, err := r.e.o.Swarm.IssueToken(ctx, r.pubkey, r.e.o.TokenTTL)
	if err != nil {
		return "", "", fail(fmt.Errorf("issue a join token: %w", err), "colonize needs an admin's credentials (--nkey) on a node holding the swarm secret")
	}
	r.issued = true
	if err := r.begin(ctx); err != nil {
		return "", "", err
	}
	if err := r.writeFile(ctx, TokenPath, []byte(tok+"\n")); err != nil {
		return "", "", err
	}
	r.changed["token"] = true
	return StatusChanged, fmt.Sprintf("one-time token bound to %s, ttl %v, in %s (0600)", short(r.pubkey), r.e.o.TokenTTL, TokenPath), nil
}

// identityReply is what `robonet identity --json --prove` prints.
type identityReply struct {
	Pubkey  string `json:"pubkey"`
	Created bool   `json:"created"`
	Proof   string `json:"proof"`
}

// proveIdentity runs robonet identity on the target with a fresh challenge
// and checks the answer: the host must hold the key it names. Without the
// proof a hostile target could name another member's key, be reported
// joined as that node, and later have uncolonize revoke it.
func (r *hostRun) proveIdentity(ctx context.Context) (identityReply, error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	challenge := hex.EncodeToString(b[:])
	var id identityReply
	out, err := r.sh.output(ctx, BinaryPath+" identity --data "+DataDir+" --json --prove "+challenge, nil)
	if err != nil {
		return id, fmt.Errorf("robonet identity: %w", err)
	}
	if err := json.Unmarshal(out, &id); err != nil || !validNodeKey(id.Pubkey) {
		return id, fmt.Errorf("robonet identity printed %q: not a node public key", clip(string(out), 120))
	}
	if err := trust.CheckIdentity(id.Pubkey, challenge, id.Proof); err != nil {
		return id, fail(err, "the target's robonet does not prove it holds the key it names: inspect the host")
	}
	return id, nil
}
