package colonize

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Swarm is what colonize needs from the swarm it grows. The CLI implements
// it over its mesh client (colonize does not import the node package).
type Swarm interface {
	// Name is the swarm's name (the NATS cluster name nodes must share).
	Name() string
	// JoinAddrs are route addresses a new node may join; an unspecified
	// host (0.0.0.0) stands for the controller as the target sees it.
	JoinAddrs(ctx context.Context) ([]string, error)
	// Member says whether pubkey is a registered node, its chevron, and
	// whether it is live (heartbeating); revoked is true for a key the
	// swarm refuses.
	Member(ctx context.Context, pubkey string) (m MemberState, err error)
	// IssueToken asks for a one-time join token bound to pubkey.
	IssueToken(ctx context.Context, pubkey string, ttl time.Duration) (string, error)
	// Revoke removes pubkey from the swarm for good (its registration too).
	Revoke(ctx context.Context, pubkey, reason string) error
}

// MemberState is a key's standing in the swarm.
type MemberState struct {
	Registered bool
	Live       bool
	Revoked    bool
	Chevron    string
	Name       string
}

// Options configure a colonize or uncolonize run. The zero value of every
// duration is its default.
type Options struct {
	SSH      SSHOptions
	Swarm    Swarm
	Join     []string // --join; empty: the swarm's own addresses
	Binaries Binaries
	// Caps, Tags and Chevron apply to targets that do not set their own.
	Caps    []string
	Tags    map[string]string
	Chevron string
	// Check only reports what would change (steps 1–6 still run, read only).
	Check bool
	// KeepOnFailure leaves a failed host as it is, for debugging.
	KeepOnFailure bool
	Parallel      int           // hosts at once, default 32
	WaitJoin      time.Duration // deadline of the wait for join step, default 60s
	TokenTTL      time.Duration // join token lifetime, default 10m, at most 15m
	// SudoPassword returns the sudo password, asked once per run; nil: none.
	SudoPassword func() ([]byte, error)
	// Event receives every step's report; calls are serialised.
	Event func(Event)
}

// MaxTokenTTL bounds a colonize join token's life.
const MaxTokenTTL = 15 * time.Minute

func (o *Options) defaults() error {
	if o.Parallel <= 0 {
		o.Parallel = 32
	}
	if o.WaitJoin <= 0 {
		o.WaitJoin = 60 * time.Second
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = 10 * time.Minute
	}
	if o.TokenTTL > MaxTokenTTL {
		return fmt.Errorf("token ttl %v: at most %v", o.TokenTTL, MaxTokenTTL)
	}
	if o.Swarm == nil {
		return errors.New("colonize: no swarm to join")
	}
	return nil
}

// Run colonizes every target, at most Parallel at once, and returns one
// Result per target in the order given.
func Run(ctx context.Context, targets []Target, o Options) ([]Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	e := &engine{o: o}
	return e.each(ctx, targets, e.colonize), nil
}

type engine struct {
	o  Options
	mu sync.Mutex // serialises Event calls
	// join admits one new node at a time: JetStream's meta group grows by
	// one peer per join, and fresh peers added at once can split it.
	join sync.Mutex

	hashMu sync.Mutex
	hashes map[string]localFile // local binaries, hashed once per run
}

func (e *engine) local(path string) (localFile, error) {
	e.hashMu.Lock()
	defer e.hashMu.Unlock()
	if lf, ok := e.hashes[path]; ok {
		return lf, nil
	}
	lf, err := hashFile(path)
	if err != nil {
		return lf, err
	}
	if e.hashes == nil {
		e.hashes = map[string]localFile{}
	}
	e.hashes[path] = lf
	return lf, nil
}

func (e *engine) each(ctx context.Context, targets []Target, fn func(context.Context, Target) Result) []Result {
	results := make([]Result, len(targets))
	sem := make(chan struct{}, e.o.Parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = Result{Host: t.String(), Status: StatusFailed, Err: ctx.Err(), Counts: map[string]int{}}
				return
			}
			defer func() { <-sem }()
			results[i] = fn(ctx, t)
		}()
	}
	wg.Wait()
	return results
}

func (e *engine) emit(ev Event) {
	if e.o.Event == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ev.Time = time.Now().UTC()
	e.o.Event(ev)
}

// hostRun is one host's pass: its state across steps.
type hostRun struct {
	e       *engine
	t       Target
	res     Result
	began   time.Time
	conn    *Conn
	sh      *shell
	facts   Facts
	pre     preflight
	j       *journal
	changed map[string]bool // what this run changed: binary, config, unit, token
	pubkey  string
	member  MemberState
	mutated bool // the target was written to: a failure rolls back
	bin     localFile
	newKey  bool // the identity step made the node key
	issued  bool // a join token was issued for it
	started bool // the service step (re)started the node
	// unproven says why uncolonize will not revoke the journal's key.
	unproven string
}

// stepFailure is a failed step's error with the remedy an operator needs.
type stepFailure struct {
	err    error
	remedy string
}

func (f *stepFailure) Error() string { return f.err.Error() }
func (f *stepFailure) Unwrap() error { return f.err }

func fail(err error, remedy string) error { return &stepFailure{err: err, remedy: remedy} }

// step runs fn as the named step and reports it. fn returns the status and
// a detail; an error makes the step failed.
func (r *hostRun) step(name string, fn func() (status, detail string, err error)) error {
	start := time.Now()
	status, detail, err := fn()
	r.report(name, status, detail, time.Since(start), err)
	return err
}

func (r *hostRun) report(name, status, detail string, took time.Duration, err error) {
	ev := Event{Host: r.res.Host, Step: name, Status: status, TookMs: ms(took), Detail: detail}
	if err != nil {
		ev.Status = StatusFailed
		ev.Error = err.Error()
		var sf *stepFailure
		if errors.As(err, &sf) {
			ev.Remedy = sf.remedy
		}
		var hk *HostKeyError
		if errors.As(err, &hk) {
			ev.Remedy = hk.Remedy
		}
		r.res.FailedStep = name
	}
	if name == StepIdentity {
		ev.Pubkey = r.pubkey
	}
	r.res.Counts[ev.Status]++
	r.e.emit(ev)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (e *engine) newRun(t Target) *hostRun {
	return &hostRun{e: e, t: t, began: time.Now(), changed: map[string]bool{},
		res: Result{Host: t.String(), Counts: map[string]int{}}}
}

// colonize is the twelve steps on one host.
func (e *engine) colonize(ctx context.Context, t Target) Result {
	r := e.newRun(t)
	if t.Caps == nil {
		t.Caps = e.o.Caps
	}
	if t.Tags == nil {
		t.Tags = e.o.Tags
	}
	if t.Chevron == "" {
		t.Chevron = e.o.Chevron
	}
	r.t = t
	err := CheckTarget(t)
	if err != nil {
		r.report(StepConnect, StatusFailed, "", 0, err)
		return r.finish(err)
	}
	err = r.connect(ctx)
	if err == nil {
		defer r.conn.Close()
		err = r.steps(ctx)
		if err != nil && r.mutated && !e.o.Check {
			r.rollback(ctx, err)
		}
	}
	return r.finish(err)
}

func (r *hostRun) finish(err error) Result {
	r.res.Took = time.Since(r.began)
	r.res.Pubkey = r.pubkey
	r.res.Chevron = r.member.Chevron
	r.res.Err = err
	switch {
	case err != nil && r.res.Unreachable:
		r.res.Status = "unreachable"
	case err != nil:
		r.res.Status = StatusFailed
	case r.res.Counts[StatusChanged] > 0:
		r.res.Status = StatusChanged
	default:
		r.res.Status = StatusOK
	}
	ev := Event{Host: r.res.Host, Step: StepDone, Status: r.res.Status, TookMs: ms(r.res.Took),
		Chevron: r.res.Chevron, Pubkey: r.res.Pubkey, Bytes: r.res.BytesSent}
	if err != nil {
		ev.Error = err.Error()
	}
	r.e.emit(ev)
	return r.res
}

// connect runs steps 1–3 (Dial reports them) and 4, privilege.
func (r *hostRun) connect(ctx context.Context) error {
	conn, results, err := Dial(ctx, r.t, r.e.o.SSH)
	for _, sr := range results {
		status := sr.Status
		// Reaching and logging in change nothing on the target; only a
		// host key recorded in known_hosts changes something (here).
		if status != StatusFailed && !(sr.Step == StepHostKey && status == StatusChanged) {
			status = StatusUnchanged
		}
		r.report(sr.Step, status, sr.Detail, sr.Took, sr.Err)
	}
	if err != nil {
		r.res.Unreachable = errors.Is(err, ErrUnreachable)
		return err
	}
	r.conn = conn
	r.sh = newShell(conn)
	return r.step(StepPrivilege, func() (string, string, error) {
		ctx, cancel := context.WithTimeout(ctx, stepDeadline)
		defer cancel()
		mode, err := r.sh.probe(ctx, r.e.o.SudoPassword)
		if errors.Is(err, ErrSudoPassword) {
			return "", "", fail(err, "check the password given to --sudo-password-stdin (it is the same for every host of a run)")
		}
		if errors.Is(err, ErrNeedSudoPassword) {
			return "", "", fail(err, "pass the sudo password with --sudo-password-stdin, or allow NOPASSWD sudo for this user")
		}
		if err != nil {
			return "", "", err
		}
		return StatusUnchanged, fmt.Sprintf("as root via %s (login %s)", mode, r.conn.User()), nil
	})
}

func (r *hostRun) steps(ctx context.Context) error {
	for _, s := range []struct {
		name string
		fn   func(context.Context) (string, string, error)
	}{
		{StepDetect, r.detect},
		{StepPreflight, r.preflight},
		{StepUpload, r.upload},
		{StepConfig, r.config},
		{StepIdentity, r.identity},
		{StepCredential, r.credential},
	} {
		if err := r.step(s.name, func() (string, string, error) { return r.bounded(ctx, s.name, s.fn) }); err != nil {
			return err
		}
	}
	fresh := !r.member.Registered
	if fresh && !r.e.o.Check {
		// One new node joins at a time (see engine.join).
		r.e.join.Lock()
		defer r.e.join.Unlock()
	}
	if err := r.step(StepService, func() (string, string, error) { return r.bounded(ctx, StepService, r.service) }); err != nil {
		return err
	}
	return r.step(StepWait, func() (string, string, error) { return r.bounded(ctx, StepWait, r.wait) })
}

// Step deadlines: a target that stops answering in the middle of a step
// (a hung disk, a sudo that waits for a terminal) fails that host, not the
// run. The upload gets room for a large binary over a slow link.
const (
	stepDeadline   = 2 * time.Minute
	uploadDeadline = 15 * time.Minute
)

func (r *hostRun) bounded(ctx context.Context, name string, fn func(context.Context) (string, string, error)) (string, string, error) {
	d := stepDeadline
	switch name {
	case StepUpload:
		d = uploadDeadline
	case StepWait:
		d = r.e.o.WaitJoin + stepDeadline
	}
	sctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	status, detail, err := fn(sctx)
	if err != nil && sctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		err = fail(fmt.Errorf("%s: no answer from the target within %v: %w", name, d, err), "check the host (disk, load, a prompt waiting for a terminal) and rerun")
	}
	return status, detail, err
}

func (r *hostRun) detect(ctx context.Context) (string, string, error) {
	// As the login user: SSH_CONNECTION names the controller's address as
	// the target sees it (sudo would drop it from the environment).
	out, err := r.conn.Output(ctx, detectScript+`; echo "--ssh--"; echo "${SSH_CONNECTION%% *}"`, nil)
	if err != nil {
		return "", "", fmt.Errorf("detect: %w", err)
	}
	text, ssh, _ := strings.Cut(string(out), "--ssh--")
	f, err := parseFacts(text)
	r.facts = f
	r.facts.SSHClient = strings.TrimSpace(ssh)
	if err != nil {
		return "", "", fail(err, "robonet runs on Linux x86_64, aarch64, armv7l, i686 and riscv64")
	}
	return StatusUnchanged, fmt.Sprintf("%s %s (%s), init %s", f.Kernel, f.Machine, cmpOr(f.OSName, f.OSID, "unknown distribution"), f.Init), nil
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// localFile is the binary to upload, hashed once per run and path.
type localFile struct {
	path string
	size int64
	sum  string
}

func hashFile(path string) (localFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return localFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return localFile{}, fmt.Errorf("read %s: %v", path, err)
	}
	return localFile{path: path, size: n, sum: hex.EncodeToString(h.Sum(nil))}, nil
}

// hostOf is the host part of a join address, for replacing unspecified ones.
func unspecified(addr string) (port string, ok bool) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", false
	}
	ip := net.ParseIP(h)
	return p, h == "" || (ip != nil && ip.IsUnspecified())
}

func sortedUnique(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
