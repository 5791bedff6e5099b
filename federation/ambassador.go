package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Ambassador defaults.
const (
	// DefaultAmbassadorTimeout is how long an ambassador waits for its
	// swarm's nodes when a request names no timeout (mesh's default).
	DefaultAmbassadorTimeout = 10 * time.Second
	// MaxAmbassadorTimeout caps what a request may ask the ambassador to
	// wait (a long exec still runs on the nodes; its answer then misses
	// the stream and the node is reported timeout).
	MaxAmbassadorTimeout = time.Hour
	// DefaultAmbassadorInFlight bounds the federated commands one
	// ambassador serves at once; past it a request gets a done with code
	// unavailable at once.
	DefaultAmbassadorInFlight = 64
	// defaultPoll is how often the ambassador looks for a live leader.
	defaultPoll = 250 * time.Millisecond
)

// AmbassadorOptions configure an Ambassador. Node is required; the zero
// value of every other field is a sensible default.
type AmbassadorOptions struct {
	// Node is the started node the ambassador runs beside: it speaks
	// through the node's feature connection and signs with its signer.
	Node *node.Node
	// Swarm is the swarm prefix it answers for; zero: the first three
	// tokens of the node's chevron (which must have four).
	Swarm subjects.Chevron
	// Margin is kept back from a request's deadline so the done record
	// reaches the requester in time; zero: a tenth of the timeout, at
	// least 50 ms and at most 1 s.
	Margin time.Duration
	// DefaultTimeout applies to requests without timeout_ms; zero:
	// DefaultAmbassadorTimeout.
	DefaultTimeout time.Duration
	// MaxInFlight bounds concurrent requests; zero: DefaultAmbassadorInFlight.
	MaxInFlight int
	// Poll is how often leader visibility is checked; zero: 250 ms.
	Poll time.Duration
	// Logger receives the ambassador's logs; nil discards them.
	Logger *slog.Logger
}

// Ambassador answers federated commands for its node's swarm (DESIGN.md,
// issue 11): it joins queue group amb.<swarm> on the swarm's rn.fed
// subjects only while its node sees a live swarm leader (so the minority
// side of a split swarm stays silent), forwards each command unchanged into
// the swarm (adding Rn-Fed-Subject and its node's Rn-Fed-Via signature),
// and streams to the requester a signed start, every node's reply
// verbatim, and a signed done that accounts for every expected node.
type Ambassador struct {
	opts  AmbassadorOptions
	n     *node.Node
	swarm subjects.Chevron
	subjs []string
	queue string
	log   *slog.Logger

	nc     *nats.Conn
	js     jetstream.JetStream
	signer *mesh.Signer
	verify *trust.Verifier
	slots  chan struct{}

	mu      sync.Mutex // guards subs
	subs    []*nats.Subscription
	serving atomic.Bool
	rev     atomic.Uint64 // the swarm's rn_nodes revision, refreshed while serving
	revAt   time.Time     // when rev was last read; the check loop's alone

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// NewAmbassador validates opts; it starts nothing.
func NewAmbassador(opts AmbassadorOptions) (*Ambassador, error) {
	if opts.Node == nil {
		return nil, errors.New("ambassador: no node")
	}
	sw := opts.Swarm
	if sw.IsZero() {
		var err error
		if sw, err = subjects.NodeSwarm(opts.Node.Chevron()); err != nil {
			return nil, fmt.Errorf("ambassador: node %s: %w", opts.Node.Chevron(), err)
		}
	}
	subjs, err := subjects.FedCmdSubscriptions(sw)
	if err != nil {
		return nil, fmt.Errorf("ambassador: %w", err)
	}
	queue, _ := subjects.AmbassadorQueue(sw)
	if !opts.Node.Chevron().HasPrefix(sw) {
		return nil, fmt.Errorf("ambassador: node %s is not in swarm %s", opts.Node.Chevron(), sw)
	}
	if opts.Margin < 0 || opts.DefaultTimeout < 0 || opts.MaxInFlight < 0 || opts.Poll < 0 {
		return nil, errors.New("ambassador: negative option")
	}
	if opts.DefaultTimeout == 0 {
		opts.DefaultTimeout = DefaultAmbassadorTimeout
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultAmbassadorInFlight
	}
	if opts.Poll == 0 {
		opts.Poll = defaultPoll
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ambassador{opts: opts, n: opts.Node, swarm: sw, subjs: subjs, queue: queue, log: log,
		verify: trust.NewVerifier(0), slots: make(chan struct{}, opts.MaxInFlight)}, nil
}

// Start opens the feature connection and begins watching for a leader; it
// returns once the first check is done (serving if a leader is visible).
func (a *Ambassador) Start(ctx context.Context) error {
	nc, err := a.n.FeatureConn("ambassador")
	if err != nil {
		return fmt.Errorf("ambassador: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("ambassador: %w", err)
	}
	a.nc, a.js, a.signer = nc, js, a.n.Signer()
	a.ctx, a.cancel = context.WithCancel(context.Background())
	a.check(ctx)
	a.wg.Add(1)
	go a.loop()
	return nil
}

// Shutdown stops serving, waits for requests in progress (they end with
// their done, or are cut short) and closes the connection. Idempotent.
func (a *Ambassador) Shutdown(ctx context.Context) error {
	a.once.Do(func() {
		if a.cancel == nil {
			return
		}
		a.cancel()
		a.unsubscribe()
		a.wg.Wait()
		a.nc.Close()
	})
	return nil
}

// Serving reports whether the ambassador is in its swarm's queue group now.
func (a *Ambassador) Serving() bool { return a.serving.Load() }

// Swarm is the swarm prefix it answers for.
func (a *Ambassador) Swarm() subjects.Chevron { return a.swarm }

func (a *Ambassador) loop() {
	defer a.wg.Done()
	t := time.NewTicker(a.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.check(a.ctx)
		}
	}
}

// check joins or leaves the queue group as leader visibility says, and
// refreshes the registry revision while serving.
func (a *Ambassador) check(ctx context.Context) {
	if leaderVisible(a.n.Members()) {
		if !a.serving.Load() {
			if err := a.subscribe(); err != nil {
				a.log.Warn("ambassador: subscribe", "swarm", a.swarm, "err", err)
				return
			}
			a.log.Info("ambassador serving", "swarm", a.swarm, "queue", a.queue)
		}
		a.refreshRev(ctx)
		return
	}
	if a.serving.Load() {
		a.unsubscribe()
		a.log.Info("ambassador silent: no live leader in view", "swarm", a.swarm)
	}
}

// leaderVisible reports whether a live member holds the swarm-leader lease
// (the registry shows Leader only for a member that is not offline).
func leaderVisible(members []wire.Member) bool {
	for _, m := range members {
		if m.Leader {
			return true
		}
	}
	return false
}

func (a *Ambassador) subscribe() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var subs []*nats.Subscription
	for _, s := range a.subjs {
		sub, err := a.nc.QueueSubscribe(s, a.queue, a.onRequest)
		if err != nil {
			for _, x := range subs {
				_ = x.Unsubscribe()
			}
			return err
		}
		subs = append(subs, sub)
	}
	if err := a.nc.Flush(); err != nil {
		for _, x := range subs {
			_ = x.Unsubscribe()
		}
		return err
	}
	a.subs = subs
	a.serving.Store(true)
	return nil
}

func (a *Ambassador) unsubscribe() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.subs {
		_ = s.Unsubscribe()
	}
	a.subs = nil
	a.serving.Store(false)
}

// refreshRev reads the rn_nodes stream's last sequence (the swarm's
// registry revision) at most once a second.
func (a *Ambassador) refreshRev(ctx context.Context) {
	if time.Since(a.revAt) < time.Second {
		return
	}
	a.revAt = time.Now()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	s, err := a.js.Stream(ctx, "KV_"+node.BucketNodes)
	if err != nil {
		return
	}
	a.rev.Store(s.CachedInfo().State.LastSeq)
}

// onRequest takes one federated command off the queue subscription: it
// runs on the subscription's goroutine, so the work goes to its own.
func (a *Ambassador) onRequest(m *nats.Msg) {
	if m.Reply == "" || a.excluded(m) {
		return // nobody waits, or the requester gathers this swarm itself
	}
	select {
	case a.slots <- struct{}{}:
	default:
		a.refuse(m, "", wire.CodeUnavailable, fmt.Sprintf("ambassador of %s busy: %d federated commands in progress", a.swarm, a.opts.MaxInFlight))
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() { <-a.slots }()
		a.serve(m, time.Now())
	}()
}

// excluded reports whether m's Rn-Fed-Exclude names this swarm (a
// malformed header excludes nothing: parse refuses it).
func (a *Ambassador) excluded(m *nats.Msg) bool {
	excl, _ := subjects.ParseFedExclude(m.Header.Get(wire.HdrFedExclude))
	for _, x := range excl {
		if a.swarm.HasPrefix(x) {
			return true
		}
	}
	return false
}

// request is one federated command as the ambassador understood it.
type request struct {
	msg    *nats.Msg
	id     string
	verb   string
	prefix subjects.Chevron // the fed subject's
	sel    subjects.Selector
	whole  bool          // no filters: the whole prefix
	wait   time.Duration // until the done is sent
}

// parse checks a federated command (onRequest has already left out the
// ones that exclude this swarm); a nil request with a nil error means it
// is not this swarm's to answer.
func (a *Ambassador) parse(m *nats.Msg, now time.Time) (*request, *wire.Error) {
	bad := func(format string, args ...any) (*request, *wire.Error) {
		return nil, &wire.Error{Code: wire.CodeBadRequest, Msg: fmt.Sprintf(format, args...)}
	}
	prefix, verb, err := subjects.ParseFedCmd(m.Subject)
	if err != nil || !subjects.Overlaps(prefix, a.swarm) {
		return nil, nil // not ours (a subscription would not deliver it)
	}
	if _, err := subjects.ParseFedExclude(m.Header.Get(wire.HdrFedExclude)); err != nil {
		return bad("%s: %v", wire.HdrFedExclude, err)
	}
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return bad("federated command on %s: %v (sign it: Rn-From, Rn-Seq, Rn-Prev, Rn-Sig)", m.Subject, err)
	}
	// The nodes judge the command (chain, replay, role, tier); these two
	// checks only keep one forged or foreign publish from costing every
	// node of the swarm a refusal.
	if err := a.verify.Verify(h, m.Subject, m.Data); err != nil {
		return nil, &wire.Error{Code: wire.CodeDenied, Msg: fmt.Sprintf("federated command: %v", err)}
	}
	if _, ok := a.n.RoleOf(h.From); !ok {
		return nil, &wire.Error{Code: wire.CodeDenied, Msg: fmt.Sprintf("key %s is not a user of swarm %s or of the swarms above it", h.From, a.swarm)}
	}
	var body wire.Request
	if err := wire.Decode(m.Data, &body); err != nil {
		return bad("%v", err)
	}
	if body.ID == "" || len(body.ID) > wire.MaxFedID {
		return bad("request id %q: want 1 to %d bytes", clip(body.ID), wire.MaxFedID)
	}
	if body.Verb != "" && body.Verb != verb {
		return bad("verb %q in the body, %q in the subject", clip(body.Verb), verb)
	}
	timeout := a.opts.DefaultTimeout
	if body.TimeoutMs > 0 {
		timeout = min(time.Duration(body.TimeoutMs)*time.Millisecond, MaxAmbassadorTimeout)
	}
	margin := a.opts.Margin
	if margin == 0 {
		margin = min(max(timeout/10, 50*time.Millisecond), time.Second)
	}
	r := &request{msg: m, id: body.ID, verb: verb, prefix: prefix, wait: max(timeout-margin-time.Since(now), 0), whole: true}
	r.sel, _ = subjects.ParseSelector("all")
	if s := m.Header.Get(wire.HdrFedSelector); s != "" {
		if len(s) > wire.MaxFedSelector {
			return bad("%s: %d bytes, limit %d", wire.HdrFedSelector, len(s), wire.MaxFedSelector)
		}
		sel, err := subjects.ParseSelector(s)
		if err != nil {
			return bad("%s: %v", wire.HdrFedSelector, err)
		}
		r.sel = sel
		if p, whole := sel.Prefix(); !whole || !prefix.HasPrefix(p) {
			r.whole = false
		}
	}
	return r, nil
}

// expected resolves the request against the live registry: the members
// under the fed prefix that the selector matches, in chevron order.
func (a *Ambassador) expected(r *request) []wire.Member {
	var out []wire.Member
	for _, m := range mesh.Resolve(r.sel, a.n.Members()) {
		if c, err := subjects.Parse(m.Chevron); err == nil && c.HasPrefix(r.prefix) && c.HasPrefix(a.swarm) {
			out = append(out, m)
		}
	}
	return out
}

// serve runs one federated command inside the swarm and streams the
// answers back.
func (a *Ambassador) serve(m *nats.Msg, now time.Time) {
	r, werr := a.parse(m, now)
	if werr != nil {
		a.refuse(m, "", werr.Code, werr.Msg)
		return
	}
	if r == nil {
		return
	}
	set := a.expected(r)
	if len(set) > wire.MaxFedNodes {
		a.refuse(m, r.id, wire.CodeBadRequest, fmt.Sprintf("%d nodes of %s match, more than the %d one federated command may reach: narrow the selector", len(set), a.swarm, wire.MaxFedNodes))
		return
	}
	exp := make([]wire.FedNode, len(set))
	byChev := make(map[string]wire.FedNode, len(set))
	var send []wire.FedNode
	for i, mm := range set {
		exp[i] = wire.FedNode{Chevron: mm.Chevron, Name: mm.Name, Pubkey: mm.Pubkey, State: mm.State}
		byChev[mm.Chevron] = exp[i]
		if mm.State != wire.StateOffline {
			send = append(send, exp[i])
		}
	}
	rev := a.rev.Load()
	self := a.n.Chevron().String()
	if err := a.sendStart(m.Reply, wire.FedStart{Kind: wire.FedKindStart, ID: r.id, Swarm: a.swarm.String(), Ambassador: self,
		RegistryRev: rev, WaitMs: r.wait.Milliseconds()}, exp); err != nil {
		a.log.Debug("ambassador: start", "err", err)
		return
	}
	inbox := a.nc.NewInbox()
	ch := make(chan *nats.Msg, len(send)+64)
	sub, err := a.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		a.done(m.Reply, r, exp, nil, rev, &wire.Error{Code: wire.CodeInternal, Msg: err.Error()})
		return
	}
	defer sub.Unsubscribe()
	if err := a.forward(r, inbox, send, len(send) == len(set)); err != nil {
		a.done(m.Reply, r, exp, nil, rev, &wire.Error{Code: wire.CodeInternal, Msg: err.Error()})
		return
	}
	answered := map[string]bool{}
	timer := time.NewTimer(r.wait)
	defer timer.Stop()
collect:
	for len(answered) < len(send) {
		select {
		case rep := <-ch:
			chev, ok := a.checkReply(rep, r.id, byChev)
			if !ok || answered[chev] {
				continue
			}
			answered[chev] = true
			a.relay(m.Reply, rep)
		case <-timer.C:
			break collect
		case <-a.ctx.Done():
			break collect
		}
	}
	a.done(m.Reply, r, exp, answered, rev, nil)
}

// forward publishes the command into the swarm: once on the deepest of
// the fed prefix and the swarm prefix when the set is that whole prefix
// and every node is live, else to each node of send.
func (a *Ambassador) forward(r *request, inbox string, send []wire.FedNode, allLive bool) error {
	if len(send) == 0 {
		return nil
	}
	var targets []subjects.Chevron
	if r.whole && allLive {
		targets = []subjects.Chevron{subjects.Deeper(r.prefix, a.swarm)}
	} else {
		for _, nd := range send {
			c, err := subjects.Parse(nd.Chevron)
			if err != nil {
				continue
			}
			targets = append(targets, c)
		}
	}
	userSig := r.msg.Header.Get(wire.HdrSig)
	for _, c := range targets {
		subj, err := subjects.Cmd(c, r.verb)
		if err != nil {
			return err
		}
		out := &nats.Msg{Subject: subj, Reply: inbox, Data: r.msg.Data, Header: nats.Header{}}
		for k, v := range r.msg.Header {
			out.Header[k] = append([]string(nil), v...)
		}
		out.Header.Set(wire.HdrFedSubject, r.msg.Subject)
		h, err := a.signer.Sign(subj, wire.FedViaPayload(r.msg.Subject, userSig))
		if err != nil {
			return fmt.Errorf("sign forward: %w", err)
		}
		e := h.Encode()
		out.Header.Set(wire.HdrFedVia, wire.FormatFedVia(e[wire.HdrFrom], e[wire.HdrSeq], e[wire.HdrPrev], e[wire.HdrSig]))
		if err := a.nc.PublishMsg(out); err != nil {
			return fmt.Errorf("forward %s: %w", subj, err)
		}
	}
	return a.nc.Flush()
}

// checkReply accepts a node's reply for this request: a result for the
// request's id from an expected node, signed by that node's registered key
// over the subject it arrived on. It returns the node's chevron.
func (a *Ambassador) checkReply(m *nats.Msg, id string, byChev map[string]wire.FedNode) (string, bool) {
	if len(m.Data) > mesh.MaxReply {
		return "", false
	}
	var res wire.Result
	if json.Unmarshal(m.Data, &res) != nil || res.ID != id {
		return "", false
	}
	want, ok := byChev[res.Chevron]
	if !ok {
		return "", false
	}
	h, err := mesh.ParseSigned(m)
	if err != nil || (want.Pubkey != "" && h.From != want.Pubkey) || a.verify.Verify(h, m.Subject, m.Data) != nil {
		return "", false
	}
	return res.Chevron, true
}

// relay passes a node's reply on verbatim: its payload and headers (its
// signature), plus the kind and the subject the node signed it for.
func (a *Ambassador) relay(to string, rep *nats.Msg) {
	out := &nats.Msg{Subject: to, Data: rep.Data, Header: nats.Header{}}
	for k, v := range rep.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	out.Header.Set(wire.HdrFedKind, wire.FedKindResult)
	out.Header.Set(wire.HdrFedSigned, rep.Subject)
	if err := a.nc.PublishMsg(out); err != nil {
		a.log.Debug("ambassador: relay", "err", err)
	}
}

// chunkLimit is the most bytes one stream message of ours may carry.
func (a *Ambassador) chunkLimit() int {
	limit := wire.MaxMessage
	if mp := a.nc.MaxPayload(); mp > 0 && int(mp) < limit {
		limit = int(mp)
	}
	return limit - 8<<10 // headers and the envelope
}

// sendStart sends the start record, in as many parts as the expected list
// needs to keep each message under the chunk limit.
func (a *Ambassador) sendStart(to string, st wire.FedStart, exp []wire.FedNode) error {
	parts := splitNodes(exp, a.chunkLimit())
	for i, p := range parts {
		st.Expected, st.Part, st.Parts = p, i+1, len(parts)
		if err := a.send(to, wire.FedKindStart, st); err != nil {
			return err
		}
	}
	return nil
}

// splitNodes cuts exp into runs whose JSON stays under limit bytes (at
// least one part, possibly empty).
func splitNodes(exp []wire.FedNode, limit int) [][]wire.FedNode {
	var out [][]wire.FedNode
	var cur []wire.FedNode
	size := 0
	for _, nd := range exp {
		b, _ := json.Marshal(nd)
		if len(cur) > 0 && size+len(b)+1 > limit {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, nd)
		size += len(b) + 1
	}
	if len(cur) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	return out
}

// done sends the closing record: every expected node, how many answered,
// the offline ones (not sent to) and the ones that did not answer in time.
func (a *Ambassador) done(to string, r *request, exp []wire.FedNode, answered map[string]bool, rev uint64, e *wire.Error) {
	d := wire.FedDone{Kind: wire.FedKindDone, ID: r.id, Swarm: a.swarm.String(), Ambassador: a.n.Chevron().String(),
		Expected: []string{}, Offline: []string{}, Timeout: []string{}, RegistryRev: rev, Error: e}
	for _, nd := range exp {
		d.Expected = append(d.Expected, nd.Chevron)
		switch {
		case nd.State == wire.StateOffline:
			d.Offline = append(d.Offline, nd.Chevron)
		case answered[nd.Chevron]:
			d.Answered++
		default:
			d.Timeout = append(d.Timeout, nd.Chevron)
		}
	}
	if err := a.send(to, wire.FedKindDone, d); err != nil {
		a.log.Debug("ambassador: done", "err", err)
	}
	_ = a.nc.Flush()
}

// refuse answers a command the ambassador will not forward with a done
// carrying the error.
func (a *Ambassador) refuse(m *nats.Msg, id, code, msg string) {
	d := wire.FedDone{Kind: wire.FedKindDone, ID: id, Swarm: a.swarm.String(), Ambassador: a.n.Chevron().String(),
		Expected: []string{}, Offline: []string{}, Timeout: []string{}, RegistryRev: a.rev.Load(),
		Error: &wire.Error{Code: code, Msg: msg}}
	if err := a.send(m.Reply, wire.FedKindDone, d); err != nil {
		a.log.Debug("ambassador: refuse", "err", err)
	}
}

// send signs v (as the ambassador's node) and publishes it to the
// requester's inbox.
func (a *Ambassador) send(to, kind string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	out := &nats.Msg{Subject: to, Data: data, Header: nats.Header{wire.HdrFedKind: []string{kind}}}
	if err := a.signer.SignMsg(out); err != nil {
		return err
	}
	return a.nc.PublishMsg(out)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
