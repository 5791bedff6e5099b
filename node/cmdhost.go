package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Command-host limits.
const (
	// MaxPayload is the embedded server's max_payload: an exec reply carries
	// up to 1 MiB of each of stdout and stderr, JSON-escaped.
	MaxPayload = 8 << 20
	// maxInFlight bounds the commands a node runs at once, all callers
	// together: the last resort behind each caller's own limits
	// (DefaultCallerLimits). Past it the node answers "busy" at once
	// instead of queueing without bound (a storm).
	maxInFlight = 256
	// defaultCmdTimeout applies when a request names none.
	defaultCmdTimeout = 30 * time.Second
	maxCmdTimeout     = 24 * time.Hour
)

// Audit is the body of rn.<chevron>.evt.audit: one per command that ran,
// and for refused commands the first of each kind per sender and second in
// full, the rest of that second summed into one record (see auditLog).
type Audit struct {
	ID string `json:"id,omitempty"`
	// From is the key whose signature the node verified, or
	// AuditUnverified when the command was refused before its signature
	// was verified (unsigned, malformed headers, unknown, revoked or
	// quarantined key, bad signature, a chain break) or the host runs
	// without a guard.
	From string `json:"from"`
	// Claimed is the key the command claimed to come from (its Rn-From;
	// without a guard, the body's from) when From is AuditUnverified.
	Claimed    string `json:"claimed,omitempty"`
	Verb       string `json:"verb"`
	ArgsDigest string `json:"args_digest,omitempty"` // sha256 of the args JSON, hex
	// Status is the reply's status (ok, error, denied), or AuditDropped
	// for a command dropped without an answer.
	Status string  `json:"status"`
	Code   string  `json:"code,omitempty"`
	Ms     float64 `json:"ms"`
	// Count is how many commands the record stands for: 1, or in a
	// summary (no id), the refusals of this kind that followed the first
	// within one second.
	Count int `json:"count"`
}

// hostView is what the catalogue may know of the node.
type hostView struct{ n *Node }

func (h hostView) Status() any    { return h.n.Status() }
func (h hostView) Caps() []string { return h.n.opts.Caps }

// SentinelFindings makes scan report what other nodes' Sentinels see here.
func (h hostView) SentinelFindings() []command.Finding { return h.n.SentinelFindings() }
func (h hostView) ClockOffset() (time.Duration, bool) {
	return h.n.reg.clockOffset(time.Now())
}

// CommandHost serves a catalogue for one chevron: it subscribes on rn.cmd.*
// and every prefix of the chevron (no queue group: every node under a prefix
// answers), replies with the node's chevron and name, and audits every
// command on rn.<chevron>.evt.audit.
//
// Admission is fair: the cheap checks (decoding, the guard's signature,
// role, chain and tier checks) run first, on a few goroutines (a handful
// per core) before anything is reserved, so a caller refused by them never
// holds a slot.
// An admitted caller then takes one of its own slots (CallerLimits: at
// most 32 commands running at once, 50 started per second, bursts of 100)
// and one of the node's maxInFlight; a caller over its own limits is
// answered busy at once and nobody else notices. Checks that do I/O (a
// dangerous command's approval) run inside the slot. A node runs one host;
// benchmarks run thousands on one connection.
type CommandHost struct {
	nc   *nats.Conn
	chev subjects.Chevron
	name string
	cat  *command.Catalogue
	log  *slog.Logger
	ctx  context.Context // commands run under it
	// guard admits commands and signs replies; nil runs every command
	// unsigned and refuses dangerous ones (the bare bus, for benchmarks).
	guard Guard

	admitting chan struct{} // bounds the goroutines running admission checks
	callers   *callerTable  // per verified caller: running commands, rate
	inflight  chan struct{} // the node's slots, all callers together
	audits    *auditLog
	stats     *cmdStats // commands by verb and status, latency (stats.go)
	subs      []*nats.Subscription
	mu        sync.Mutex     // guards closing; taken around wg.Add
	closing   bool           // no new commands start once set
	wg        sync.WaitGroup // running commands
}

// Guard is the trust layer in front of a command host (HCTH).
type Guard interface {
	// Admit runs the checks that need no I/O on one command — its
	// headers, the signer's role, its chain, the tier the call needs
	// (need) and, for a dangerous command, that it may ask at all — and
	// says who sent it and whether it may go on.
	Admit(m *nats.Msg, req *wire.Request, need int, dangerous bool) Admission
	// Approve checks a dangerous command's quorum approval for from, the
	// signer Admit verified; nil means it may run. It may do I/O: the
	// host calls it holding the command's slot.
	Approve(ctx context.Context, m *nats.Msg, req wire.Request, from string) *wire.Error
	// Sign signs a reply or event before it is sent.
	Sign(m *nats.Msg) error
}

// Admission is a Guard's verdict on one command.
type Admission struct {
	// From is the signer whose signature was verified; "" when the command
	// was refused before that (then Claimed is its Rn-From, if any).
	From    string
	Claimed string
	// Drop: say nothing (a replay). Deny: the refusal to answer with.
	Drop bool
	Deny *wire.Error
}

// NewCommandHost subscribes a host for chev on nc. Commands run under ctx.
// guard may be nil: see CommandHost.
func NewCommandHost(ctx context.Context, nc *nats.Conn, chev subjects.Chevron, name string, cat *command.Catalogue, guard Guard, log *slog.Logger) (*CommandHost, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &CommandHost{nc: nc, chev: chev, name: name, cat: cat, log: log, ctx: ctx, guard: guard,
		admitting: make(chan struct{}, max(4, 2*runtime.GOMAXPROCS(0))),
		callers:   newCallerTable(DefaultCallerLimits), inflight: make(chan struct{}, maxInFlight), stats: newCmdStats(cat)}
	h.audits = newAuditLog(h.publishAudit)
	for _, subj := range subjects.CmdSubscriptions(chev) {
		sub, err := nc.Subscribe(subj, h.onCommand)
		if err != nil {
			h.Stop()
			return nil, err
		}
		h.subs = append(h.subs, sub)
	}
	return h, nil
}

// Stop refuses new commands, unsubscribes, waits for running ones and
// publishes the audit summaries still due.
func (h *CommandHost) Stop() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.wg.Wait()
	h.audits.close()
}

// serveCommands builds the node's catalogue and command host.
func (n *Node) serveCommands() error {
	roots, err := n.fileRoots()
	if err != nil {
		return err
	}
	cat, err := command.New(command.Options{
		FileRoots: roots,
		Protected: []string{n.opts.DataDir},
		ExecAllow: n.opts.ExecAllow,
		Files:     n.files,
		Config:    n.config,
		Host:      hostView{n},
		Logger:    n.log,
	})
	if err != nil {
		return fmt.Errorf("command catalogue: %w", err)
	}
	n.cat = cat
	n.catP.Store(cat)
	n.cmds, err = NewCommandHost(n.ctx, n.nc, n.chev, n.name, cat, hostGuard{n}, n.log)
	return err
}

// Catalogue is the node's command catalogue (nil before Start).
func (n *Node) Catalogue() *command.Catalogue { return n.cat }

// admitted is a command that passed the checks before its slot.
type admitted struct {
	req       wire.Request
	from      string // the verified signer; "" when unverified
	claimed   string // who it claimed to be, when unverified
	dangerous bool
}

// record is the audit record of c's result.
func (c admitted) record(res wire.Result) Audit {
	sum := sha256.Sum256(c.req.Args)
	a := Audit{ID: c.req.ID, From: c.from, Verb: c.req.Verb, ArgsDigest: hex.EncodeToString(sum[:]), Status: res.Status, Ms: res.Ms}
	if a.From == "" {
		a.From, a.Claimed = AuditUnverified, c.claimed
	}
	if res.Error != nil {
		a.Code = res.Error.Code
	}
	return a
}

func (h *CommandHost) onCommand(m *nats.Msg) {
	if m.Reply == "" {
		return // a command nobody waits for is not run
	}
	// Admission runs on at most cap(admitting) goroutines; while they are
	// all busy the subscription waits and commands queue in the client.
	// Nothing is refused for it: admission does no I/O and is quick.
	h.admitting <- struct{}{}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		<-h.admitting
		now := time.Now()
		if c, ok := h.admit(m, now); ok {
			h.refuse(m, c, wire.StatusError, &wire.Error{Code: wire.CodeCanceled,
				Msg: fmt.Sprintf("node %s is shutting down", h.chev)}, now)
		}
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		now := time.Now()
		c, ok := h.admit(m, now)
		if ok {
			ok = h.takeSlots(m, c, now)
		}
		<-h.admitting
		if !ok {
			return
		}
		defer h.releaseSlots(c)
		h.runCommand(m, c, now)
	}()
}

// takeSlots takes one of the caller's slots (CallerLimits) and one of the
// node's, or answers busy at once and audits it.
func (h *CommandHost) takeSlots(m *nats.Msg, c admitted, now time.Time) bool {
	busy := func(format string, a ...any) {
		h.refuse(m, c, wire.StatusError, &wire.Error{Code: wire.CodeUnavailable, Msg: fmt.Sprintf(format, a...)}, now)
	}
	if c.from != "" {
		if err := h.callers.take(c.from, now); err != nil {
			busy("node %s busy for this caller: %v (other callers are served)", h.chev, err)
			return false
		}
	}
	select {
	case h.inflight <- struct{}{}:
		return true
	default:
		if c.from != "" {
			h.callers.release(c.from)
		}
		busy("node %s busy: %d commands running, the node's limit for all callers together", h.chev, maxInFlight)
		return false
	}
}

func (h *CommandHost) releaseSlots(c admitted) {
	<-h.inflight
	if c.from != "" {
		h.callers.release(c.from)
	}
}

// admit decodes a command and runs the guard's checks: no slot is held and
// no I/O is done. A refused command is answered (a replay is not) and
// audited here.
func (h *CommandHost) admit(m *nats.Msg, now time.Time) (admitted, bool) {
	var req wire.Request
	verb := lastToken(m.Subject)
	bad := wire.Decode(m.Data, &req)
	if bad == nil && req.Verb == "" {
		req.Verb = verb
	}
	if bad == nil && req.Verb != verb {
		bad = fmt.Errorf("verb %q in the body, %q in the subject", clip(req.Verb, 64), verb)
	}
	if bad != nil {
		// Checked and answered after the caller: strangers learn nothing.
		req = wire.Request{ID: clip(req.ID, 64), Verb: verb}
	}
	// An unknown verb or bad arguments need no tier to be told so, but the
	// caller is still checked first.
	need, dangerous := command.TierRead, false
	if bad == nil {
		risk, rerr := h.cat.Risk(req.Verb, req.Args)
		dangerous = rerr == nil && risk == command.Dangerous
		if rerr == nil {
			need, _ = h.cat.Tier(req.Verb, req.Args)
		}
	}
	c := admitted{req: req, dangerous: dangerous, claimed: clip(req.From, 64)}
	if h.guard == nil {
		if dangerous {
			h.refuse(m, c, wire.StatusDenied, &wire.Error{Code: wire.CodeDenied,
				Msg: fmt.Sprintf("%s is dangerous here (not on this node's --exec-allow list) and needs a quorum approval", req.Verb)}, now)
			return c, false
		}
	} else {
		ad := h.guard.Admit(m, &c.req, need, dangerous)
		c.from, c.claimed = ad.From, ad.Claimed
		if c.from != "" {
			c.req.From = c.from // the handler sees who signed, not a display name
		}
		if ad.Drop {
			h.stats.count(c.req.Verb, StatDropped)
			h.audits.refused(c.record(wire.Result{Status: AuditDropped, Error: &wire.Error{Code: AuditReplay}}), now)
			return c, false
		}
		if ad.Deny != nil {
			status := wire.StatusDenied
			if ad.Deny.Code == wire.CodeBadRequest {
				status = wire.StatusError
			}
			h.refuse(m, c, status, ad.Deny, now)
			return c, false
		}
	}
	if bad != nil {
		h.refuse(m, c, wire.StatusError, &wire.Error{Code: wire.CodeBadRequest, Msg: bad.Error()}, now)
		return c, false
	}
	return c, true
}

// refuse answers a command that does not run and audits it.
func (h *CommandHost) refuse(m *nats.Msg, c admitted, status string, e *wire.Error, now time.Time) {
	res := wire.Result{ID: c.req.ID, Status: status, Error: e}
	h.reply(m, res)
	h.stats.count(c.req.Verb, commandStat(res, true))
	h.audits.refused(c.record(res), now)
}

// runCommand runs an admitted command holding its slots; start is when
// its admission began.
func (h *CommandHost) runCommand(m *nats.Msg, c admitted, start time.Time) {
	req := c.req
	timeout := defaultCmdTimeout
	if req.TimeoutMs > 0 {
		timeout = min(time.Duration(req.TimeoutMs)*time.Millisecond, maxCmdTimeout)
	}
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	if c.dangerous {
		// Only with a guard: without one, admit refused it.
		if deny := h.guard.Approve(ctx, m, req, c.from); deny != nil {
			h.refuse(m, c, wire.StatusDenied, deny, time.Now())
			return
		}
	}
	if req.Verb == "exec" && len(req.Input) > 0 {
		req.Args = withDefault(req.Args, "stdin", string(req.Input))
	}
	res := h.cat.Run(ctx, req)
	// The audit record leaves before the reply, on the same connection: a
	// caller that got its answer knows the record was sent first, even if
	// the node dies the next instant (the chaos checker caught the other
	// order losing records of acknowledged commands).
	h.audits.ran(c.record(res))
	h.reply(m, res)
	h.stats.ran(req.Verb, res, time.Since(start))
}

func (h *CommandHost) reply(m *nats.Msg, res wire.Result) {
	res.Chevron, res.Name = h.chev.String(), h.name
	data, err := json.Marshal(res)
	if err == nil && len(data) > MaxPayload-4096 {
		res = wire.Result{ID: res.ID, Chevron: res.Chevron, Name: res.Name, Status: wire.StatusError, Ms: res.Ms,
			Error: &wire.Error{Code: wire.CodeFailed, Msg: fmt.Sprintf("reply of %d bytes is over the %d-byte limit", len(data), MaxPayload-4096)}}
		data, err = json.Marshal(res)
	}
	if err != nil {
		return
	}
	if m.Reply == "" {
		return
	}
	out := &nats.Msg{Subject: m.Reply, Data: data}
	if h.guard != nil {
		if err := h.guard.Sign(out); err != nil {
			h.log.Warn("sign reply", "err", err)
			return
		}
	}
	if err := h.nc.PublishMsg(out); err != nil {
		h.log.Debug("reply", "err", err)
	}
}

// publishAudit signs and publishes one audit record.
func (h *CommandHost) publishAudit(a Audit) {
	data, err := json.Marshal(a)
	if err != nil {
		return
	}
	out := &nats.Msg{Subject: subjects.Event(h.chev, subjects.EvtAudit), Data: data}
	if h.guard != nil && h.guard.Sign(out) != nil {
		return
	}
	_ = h.nc.PublishMsg(out)
}

// withDefault sets key in a JSON object when it is absent.
func withDefault(args json.RawMessage, key, value string) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(args) > 0 && string(args) != "null" {
		if err := json.Unmarshal(args, &obj); err != nil {
			return args
		}
	}
	if _, ok := obj[key]; ok {
		return args
	}
	v, _ := json.Marshal(value)
	obj[key] = v
	out, err := json.Marshal(obj)
	if err != nil {
		return args
	}
	return out
}

func lastToken(subject string) string {
	for i := len(subject) - 1; i >= 0; i-- {
		if subject[i] == '.' {
			return subject[i+1:]
		}
	}
	return subject
}

// clockOffset is the median of (peer's send time − our receive time) over
// live peers' last heartbeats: how far this node's clock is from the swarm's.
func (r *registry) clockOffset(now time.Time) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ds []time.Duration
	for chev, e := range r.live {
		if r.stateLocked(chev, now) == "alive" {
			ds = append(ds, e.recv.Sub(e.hb.Sent))
		}
	}
	if len(ds) == 0 {
		return 0, false
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], true
}
