package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/robonet-mesh/robonet/colonize"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// colonizeFlags are the flags colonize and uncolonize share.
type colonizeFlags struct {
	keys           []string
	passwordStdin  bool
	sudoStdin      bool
	acceptNew      bool
	hostKey        string
	insecure       bool
	sshConfig      string
	knownHosts     []string
	hosts          string
	parallel       int
	join           []string
	chevron        string
	caps           []string
	tags           string
	binary         string
	binaries       string
	check          bool
	keepOnFailure  bool
	wait           time.Duration
	connectTimeout time.Duration
}

func (f *colonizeFlags) sshFlags(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.keys, "key", nil, "SSH private key file (repeatable); the agent at SSH_AUTH_SOCK is used too")
	fl.BoolVar(&f.passwordStdin, "password-stdin", false, "read the SSH password from the first line of stdin")
	fl.BoolVar(&f.sudoStdin, "sudo-password-stdin", false, "read the sudo password from stdin (the next line after --password-stdin's); asked once on a terminal otherwise")
	fl.BoolVar(&f.acceptNew, "accept-new", false, "record an unknown host key in known_hosts (a changed one is always refused)")
	fl.StringVar(&f.hostKey, "host-key", "", "accept only the host key with this fingerprint (SHA256:…), whatever known_hosts says")
	fl.BoolVar(&f.insecure, "insecure-ignore-host-key", false, "DANGEROUS: accept any host key (a machine in the middle gets the join credential)")
	fl.StringVar(&f.sshConfig, "ssh-config", "", "ssh_config file (default ~/.ssh/config; 'none' for none)")
	fl.StringArrayVar(&f.knownHosts, "known-hosts", nil, "known_hosts file (repeatable; default ~/.ssh/known_hosts, the first is where --accept-new writes)")
	fl.StringVar(&f.hosts, "hosts", "", "file of hosts: '[user@]host[:port] [chevron=…] [caps=…] [tags=…]' per line, # comments")
	fl.IntVar(&f.parallel, "parallel", 32, "hosts worked on at once")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", 10*time.Second, "TCP connect timeout per attempt")
}

func newColonizeCmd(g *globals) *cobra.Command {
	var f colonizeFlags
	cmd := &cobra.Command{
		Use:   "colonize [USER@]HOST[:PORT]... | --hosts FILE",
		Short: "Turn bare SSH hosts into nodes of this swarm: 12 checked steps, idempotent, rolled back on failure (admin)",
		Long: `colonize connects to each host over SSH (honouring ~/.ssh/config and known_hosts),
becomes root (root, sudo -n, or sudo with --sudo-password-stdin), uploads the robonet binary
over the session, writes /etc/robonet/robonet.conf, makes the node key on the host, delivers a
one-time join token bound to that key, starts a systemd unit and waits until the node is live
in the swarm. A rerun changes nothing and uploads nothing; a node that does not come up is
rolled back (--keep-on-failure to keep it). Exit status: 0 every host ok or unchanged,
2 some host failed, 1 a usage or local error.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runColonize(cmd, g, &f, args, false)
		},
	}
	f.sshFlags(cmd)
	fl := cmd.Flags()
	fl.StringSliceVar(&f.join, "join", nil, "route addresses the new nodes join, host:port,… (default: the swarm's own, with this machine's address as the host sees it)")
	fl.StringVar(&f.chevron, "chevron", "", "chevron for the node (one host only; default: the lowest free one)")
	fl.StringSliceVar(&f.caps, "caps", nil, "capabilities of the new nodes, e.g. camera,gpu")
	fl.StringVar(&f.tags, "tags", "", "tags of the new nodes, key=value,…")
	fl.StringVar(&f.binary, "binary", "", "robonet binary to install (default: this one, when the host's architecture matches)")
	fl.StringVar(&f.binaries, "binaries", "", "directory of robonet-linux-<arch> binaries, one per target architecture")
	fl.BoolVar(&f.check, "check", false, "dry run: report what would change, with diffs, and change nothing")
	fl.BoolVar(&f.keepOnFailure, "keep-on-failure", false, "leave a host that failed as it is instead of rolling it back")
	fl.DurationVar(&f.wait, "wait", 60*time.Second, "how long to wait for each node to be live in the swarm")
	return cmd
}

func newUncolonizeCmd(g *globals) *cobra.Command {
	var f colonizeFlags
	cmd := &cobra.Command{
		Use:   "uncolonize [USER@]HOST[:PORT]... | --hosts FILE",
		Short: "Undo colonize: stop and disable the node, remove every path colonize made, revoke its key (admin)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runColonize(cmd, g, &f, args, true)
		},
	}
	f.sshFlags(cmd)
	return cmd
}

func runColonize(cmd *cobra.Command, g *globals, f *colonizeFlags, args []string, undo bool) error {
	targets, err := colonizeTargets(f, args)
	if err != nil {
		return err
	}
	o := colonize.Options{Parallel: f.parallel, Check: f.check, KeepOnFailure: f.keepOnFailure, WaitJoin: f.wait,
		Caps: f.caps, Chevron: f.chevron, Binaries: colonize.Binaries{File: f.binary, Dir: f.binaries}}
	if o.Binaries.Self, err = os.Executable(); err != nil {
		o.Binaries.Self = ""
	}
	if f.tags != "" {
		if o.Tags, err = node.ParseTags(f.tags); err != nil {
			return err
		}
	}
	if f.binary != "" && f.binaries != "" {
		return errors.New("--binary and --binaries: give one")
	}
	if f.binary != "" {
		if st, err := os.Stat(f.binary); err != nil || !st.Mode().IsRegular() {
			return fmt.Errorf("--binary %s: not a regular file (%v)", f.binary, err)
		}
	}
	if f.binaries != "" {
		if st, err := os.Stat(f.binaries); err != nil || !st.IsDir() {
			return fmt.Errorf("--binaries %s: not a directory (%v)", f.binaries, err)
		}
	}
	if f.chevron != "" && len(targets) > 1 {
		return errors.New("--chevron names one node: give chevron=… per line in --hosts instead")
	}
	for _, t := range targets {
		if t.Caps == nil {
			t.Caps = o.Caps
		}
		if t.Tags == nil {
			t.Tags = o.Tags
		}
		if t.Chevron == "" {
			t.Chevron = o.Chevron
		}
		if err := colonize.CheckTarget(t); err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	for _, a := range f.join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("--join %q: %v", a, err)
		}
	}
	o.Join = f.join
	if o.SSH, o.SudoPassword, err = sshOptions(cmd, f); err != nil {
		return err
	}
	ctx := cmd.Context()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	c, err := g.connect(cctx)
	cancel()
	if err != nil {
		return fmt.Errorf("colonize grows the swarm of the node the CLI talks to: %w", err)
	}
	defer c.Close()
	sw, err := newMeshSwarm(ctx, c)
	if err != nil {
		return err
	}
	o.Swarm = sw
	out := newColonizeOutput(cmd, g.json, len(targets))
	o.Event = out.event
	var results []colonize.Result
	if undo {
		results, err = colonize.Uncolonize(ctx, targets, o)
	} else {
		results, err = colonize.Run(ctx, targets, o)
	}
	out.stop()
	if err != nil {
		return err
	}
	if !g.json {
		fmt.Fprint(cmd.OutOrStdout(), colonize.Recap(results))
	}
	failed := 0
	for _, r := range results {
		if r.Failed() {
			failed++
		}
	}
	if failed > 0 {
		return exitError{code: 2, err: fmt.Errorf("%d of %d hosts failed", failed, len(results))}
	}
	return nil
}

func colonizeTargets(f *colonizeFlags, args []string) ([]colonize.Target, error) {
	var targets []colonize.Target
	if f.hosts != "" {
		fh, err := os.Open(f.hosts)
		if err != nil {
			return nil, fmt.Errorf("--hosts: %w", err)
		}
		defer fh.Close()
		if targets, err = colonize.ParseHostsFile(fh); err != nil {
			return nil, fmt.Errorf("--hosts %s: %w", f.hosts, err)
		}
	}
	for _, a := range args {
		t, err := colonize.ParseTarget(a)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		return nil, errors.New("no host: give USER@HOST or --hosts FILE")
	}
	if f.parallel < 1 {
		return nil, fmt.Errorf("--parallel %d: want at least 1", f.parallel)
	}
	return targets, nil
}

// sshOptions turns the flags into colonize.SSHOptions, reading passwords
// from stdin when asked: the SSH password's line first, then sudo's.
func sshOptions(cmd *cobra.Command, f *colonizeFlags) (colonize.SSHOptions, func() ([]byte, error), error) {
	o := colonize.SSHOptions{ConfigFile: f.sshConfig, KnownHosts: f.knownHosts, AcceptNew: f.acceptNew,
		HostKey: f.hostKey, InsecureIgnoreHostKey: f.insecure, KeyFiles: f.keys, ConnectTimeout: f.connectTimeout}
	if f.hostKey != "" && !strings.HasPrefix(f.hostKey, "SHA256:") {
		return o, nil, fmt.Errorf("--host-key %q: want SHA256:… as ssh-keygen -lf prints it", f.hostKey)
	}
	if f.insecure {
		fmt.Fprintln(cmd.ErrOrStderr(), "robonet: WARNING: --insecure-ignore-host-key: host keys are NOT checked; whoever answers gets the join credential")
	}
	prompt := colonize.TerminalPrompter()
	o.Prompt = prompt
	var in *bufio.Reader
	readLine := func(what string) ([]byte, error) {
		if in == nil {
			in = bufio.NewReader(cmd.InOrStdin())
		}
		line, err := in.ReadBytes('\n')
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			return nil, fmt.Errorf("%s: reading stdin: %w", what, err)
		}
		return []byte(strings.TrimRight(string(line), "\r\n")), nil
	}
	if f.passwordStdin {
		pw, err := readLine("--password-stdin")
		if err != nil {
			return o, nil, err
		}
		o.Password = pw
	}
	var sudo func() ([]byte, error)
	switch {
	case f.sudoStdin:
		pw, err := readLine("--sudo-password-stdin")
		if err != nil {
			return o, nil, err
		}
		sudo = func() ([]byte, error) { return pw, nil }
	case prompt != nil:
		var once sync.Once
		var pw []byte
		var perr error
		sudo = func() ([]byte, error) {
			once.Do(func() { pw, perr = prompt.Secret("sudo password (asked once for every host of this run): ") })
			return pw, perr
		}
	}
	return o, sudo, nil
}

// meshSwarm is colonize's view of the swarm, over the CLI's mesh client.
type meshSwarm struct {
	c    *mesh.Client
	name string
}

func newMeshSwarm(ctx context.Context, c *mesh.Client) (*meshSwarm, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, err
	}
	return &meshSwarm{c: c, name: st.Swarm}, nil
}

func (s *meshSwarm) Name() string { return s.name }

func (s *meshSwarm) JoinAddrs(ctx context.Context) ([]string, error) {
	ids, err := s.c.Identities(ctx)
	if err != nil {
		return nil, err
	}
	regs, _, err := ids.RegisteredNodes(ctx)
	if err != nil {
		return nil, err
	}
	members, err := s.c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, m := range members {
		live[m.Pubkey] = m.State != wire.StateOffline
	}
	var out []string
	for _, r := range regs {
		a := r.Endpoints.Cluster
		if a == "" || !live[r.Pubkey] {
			continue
		}
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		// An unspecified host is only meaningful for the node this CLI
		// reaches: colonize puts the address the target sees in its place.
		if ip := net.ParseIP(h); (h == "" || ip != nil && ip.IsUnspecified()) && r.Pubkey != s.c.NodeKey() {
			continue
		}
		out = append(out, a)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil, errors.New("no live member listens for routes (start nodes with --cluster, or pass --join)")
	}
	return out, nil
}

func (s *meshSwarm) Member(ctx context.Context, pubkey string) (colonize.MemberState, error) {
	var st colonize.MemberState
	members, err := s.c.Nodes(ctx)
	if err != nil {
		return st, err
	}
	for _, m := range members {
		if m.Pubkey == pubkey {
			st = colonize.MemberState{Registered: true, Live: m.State == wire.StateAlive, Chevron: m.Chevron, Name: m.Name}
		}
	}
	if st.Live {
		return st, nil // heartbeating: not revoked (the wait step polls this)
	}
	ids, err := s.c.Identities(ctx)
	if err != nil {
		return st, err
	}
	if st.Revoked, err = ids.IsRevoked(ctx, pubkey); err != nil {
		return st, err
	}
	return st, nil
}

func (s *meshSwarm) IssueToken(ctx context.Context, pubkey string, ttl time.Duration) (string, error) {
	var tr node.TokenReply
	err := s.c.Query(ctx, subjects.QueryToken, node.TokenRequest{TTLMs: ttl.Milliseconds(), Pubkey: pubkey}, &tr)
	if err != nil {
		return "", hintIf(err, "issuing tokens needs an admin's credentials")
	}
	return tr.Token, nil
}

func (s *meshSwarm) Revoke(ctx context.Context, pubkey, reason string) error {
	if !nkeys.IsValidPublicUserKey(pubkey) {
		return fmt.Errorf("%q is not a node key", pubkey)
	}
	ids, err := s.c.Identities(ctx)
	if err != nil {
		return err
	}
	members, err := s.c.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.Pubkey == pubkey {
			err = ids.RemoveNode(ctx, m, reason, signerKey(s.c), time.Now())
			return hintIf(err, "revoking needs an admin's credentials")
		}
	}
	return hintIf(ids.Revoke(ctx, pubkey, "", reason, signerKey(s.c), time.Now()), "revoking needs an admin's credentials")
}

func hintIf(err error, hint string) error {
	if err == nil {
		return nil
	}
	return permissionHint(err, hint)
}

// colonizeOutput prints events: JSON lines with --json; step lines for one
// host; a live table for many on a terminal (nothing until the recap when
// stdout is not one).
type colonizeOutput struct {
	w     io.Writer
	json  bool
	many  bool
	tty   bool
	mu    sync.Mutex
	rows  map[string]*liveRow
	order []string
	drawn int
	done  chan struct{}
	wg    sync.WaitGroup
}

type liveRow struct {
	step, status string
	began        time.Time
	end          time.Duration
	finished     bool
}

func newColonizeOutput(cmd *cobra.Command, asJSON bool, hosts int) *colonizeOutput {
	o := &colonizeOutput{w: cmd.OutOrStdout(), json: asJSON, many: hosts > 1, rows: map[string]*liveRow{}, done: make(chan struct{})}
	if f, ok := o.w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		o.tty = true
	}
	if o.many && o.tty && !o.json {
		o.wg.Add(1)
		go o.redraw()
	}
	return o
}

func (o *colonizeOutput) event(ev colonize.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		b, _ := json.Marshal(ev)
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	row := o.rows[ev.Host]
	if row == nil {
		row = &liveRow{began: ev.Time}
		o.rows[ev.Host] = row
		o.order = append(o.order, ev.Host)
	}
	row.step, row.status = ev.Step, ev.Status
	if ev.Step == colonize.StepDone {
		row.finished, row.end = true, time.Duration(ev.TookMs*float64(time.Millisecond))
	}
	if o.many {
		return
	}
	switch {
	case ev.Diff != "":
		fmt.Fprint(o.w, indentLines(ev.Diff, "      "))
	case ev.Step == colonize.StepDone:
	default:
		fmt.Fprintf(o.w, "%-16s %-10s %7s  %s\n", ev.Step, ev.Status, fmtDur(ev.TookMs), ev.Detail)
		if ev.Error != "" {
			fmt.Fprint(o.w, indentLines("error: "+ev.Error, "      "))
		}
		if ev.Remedy != "" {
			fmt.Fprint(o.w, indentLines("remedy: "+ev.Remedy, "      "))
		}
	}
}

func fmtDur(ms float64) string {
	return (time.Duration(ms * float64(time.Millisecond))).Round(time.Millisecond).String()
}

func indentLines(s, pre string) string {
	s = strings.TrimRight(s, "\n")
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre) + "\n"
}

func (o *colonizeOutput) redraw() {
	defer o.wg.Done()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-o.done:
			o.draw()
			return
		case <-t.C:
			o.draw()
		}
	}
}

func (o *colonizeOutput) draw() {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	if o.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", o.drawn)
	}
	for _, h := range o.order {
		r := o.rows[h]
		el := r.end
		if !r.finished {
			el = time.Since(r.began)
		}
		fmt.Fprintf(&b, "\x1b[2K%-28s %-16s %-11s %6.1fs\n", clip(h), r.step, r.status, el.Seconds())
	}
	o.drawn = len(o.order)
	fmt.Fprint(o.w, b.String())
}

func (o *colonizeOutput) stop() {
	close(o.done)
	o.wg.Wait()
}
