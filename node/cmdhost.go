package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
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
	// maxInFlight bounds the commands a node runs at once; past it the node
	// answers "busy" at once instead of queueing without bound (a storm).
	maxInFlight = 256
	// defaultCmdTimeout applies when a request names none.
	defaultCmdTimeout = 30 * time.Second
	maxCmdTimeout     = 24 * time.Hour
)

// Audit is the body of rn.<chevron>.evt.audit: one per command executed.
type Audit struct {
	ID         string  `json:"id"`
	From       string  `json:"from,omitempty"` // the requester's connection name (HCTH identity with the trust layer)
	Verb       string  `json:"verb"`
	ArgsDigest string  `json:"args_digest"` // sha256 of the args JSON, hex
	Status     string  `json:"status"`
	Code       string  `json:"code,omitempty"`
	Ms         float64 `json:"ms"`
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
// answers), runs at most maxInFlight commands at once, replies with the
// node's chevron and name, and publishes an audit event per command. A node
// runs one; benchmarks run thousands on one connection.
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

	inflight chan struct{}
	subs     []*nats.Subscription
	mu       sync.Mutex     // guards closing; taken around wg.Add
	closing  bool           // no new commands start once set
	wg       sync.WaitGroup // running commands
}

// Guard is the trust layer in front of a command host (HCTH): Admit decides
// whether one command may run (drop: say nothing, as for a replay; deny: the
// refusal to answer with), given the tier the call needs and whether it is
// dangerous; Sign signs a reply or event before it is sent.
type Guard interface {
	Admit(ctx context.Context, m *nats.Msg, req *wire.Request, need int, dangerous bool) (drop bool, deny *wire.Error)
	Sign(m *nats.Msg) error
}

// NewCommandHost subscribes a host for chev on nc. Commands run under ctx.
// guard may be nil: see CommandHost.
func NewCommandHost(ctx context.Context, nc *nats.Conn, chev subjects.Chevron, name string, cat *command.Catalogue, guard Guard, log *slog.Logger) (*CommandHost, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &CommandHost{nc: nc, chev: chev, name: name, cat: cat, log: log, ctx: ctx, guard: guard, inflight: make(chan struct{}, maxInFlight)}
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

// Stop refuses new commands, unsubscribes and waits for running ones.
func (h *CommandHost) Stop() {
	h.mu.Lock()
	h.closing = true
	h.mu.Unlock()
	for _, s := range h.subs {
		_ = s.Unsubscribe()
	}
	h.wg.Wait()
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

func (h *CommandHost) onCommand(m *nats.Msg) {
	if m.Reply == "" {
		return // a command nobody waits for is not run
	}
	select {
	case h.inflight <- struct{}{}:
	default:
		h.reply(m, wire.Result{Status: wire.StatusError, Error: &wire.Error{Code: wire.CodeUnavailable,
			Msg: fmt.Sprintf("node %s busy: %d commands running", h.chev, maxInFlight)}})
		return
	}
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		<-h.inflight
		h.reply(m, wire.Result{Status: wire.StatusError, Error: &wire.Error{Code: wire.CodeCanceled,
			Msg: fmt.Sprintf("node %s is shutting down", h.chev)}})
		return
	}
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		defer func() { <-h.inflight }()
		h.runCommand(m)
	}()
}

func (h *CommandHost) runCommand(m *nats.Msg) {
	var req wire.Request
	if err := wire.Decode(m.Data, &req); err != nil {
		h.reply(m, wire.Result{Status: wire.StatusError, Error: &wire.Error{Code: wire.CodeBadRequest, Msg: err.Error()}})
		return
	}
	verb := lastToken(m.Subject)
	if req.Verb == "" {
		req.Verb = verb
	}
	if req.Verb != verb {
		h.reply(m, wire.Result{ID: req.ID, Status: wire.StatusError, Error: &wire.Error{Code: wire.CodeBadRequest,
			Msg: fmt.Sprintf("verb %q in the body, %q in the subject", clip(req.Verb, 64), verb)}})
		return
	}
	timeout := defaultCmdTimeout
	if req.TimeoutMs > 0 {
		timeout = min(time.Duration(req.TimeoutMs)*time.Millisecond, maxCmdTimeout)
	}
	ctx, cancel := context.WithTimeout(h.ctx, timeout)
	defer cancel()
	// An unknown verb or bad arguments need no tier to be told so, but the
	// caller is still checked first: strangers learn nothing.
	risk, rerr := h.cat.Risk(req.Verb, req.Args)
	dangerous := rerr == nil && risk == command.Dangerous
	need := command.TierRead
	if rerr == nil {
		need, _ = h.cat.Tier(req.Verb, req.Args)
	}
	if h.guard == nil && dangerous {
		res := wire.Result{ID: req.ID, Status: wire.StatusDenied, Error: &wire.Error{Code: wire.CodeDenied,
			Msg: fmt.Sprintf("%s is dangerous here (not on this node's --exec-allow list) and needs a quorum approval", req.Verb)}}
		h.reply(m, res)
		h.audit(req, res)
		return
	}
	if h.guard != nil {
		drop, deny := h.guard.Admit(ctx, m, &req, need, dangerous)
		if drop {
			return
		}
		if deny != nil {
			res := wire.Result{ID: req.ID, Status: wire.StatusDenied, Error: deny}
			if deny.Code == wire.CodeBadRequest {
				res.Status = wire.StatusError
			}
			h.reply(m, res)
			h.audit(req, res)
			return
		}
	}
	if req.Verb == "exec" && len(req.Input) > 0 {
		req.Args = withDefault(req.Args, "stdin", string(req.Input))
	}
	res := h.cat.Run(ctx, req)
	h.reply(m, res)
	h.audit(req, res)
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

func (h *CommandHost) audit(req wire.Request, res wire.Result) {
	sum := sha256.Sum256(req.Args)
	a := Audit{ID: req.ID, From: req.From, Verb: req.Verb, ArgsDigest: hex.EncodeToString(sum[:]), Status: res.Status, Ms: res.Ms}
	if res.Error != nil {
		a.Code = res.Error.Code
	}
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
