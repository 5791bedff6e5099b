package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrDirectoryOptions is wrapped by every DirectoryOptions validation error.
var ErrDirectoryOptions = errors.New("invalid directory option")

// Local is what the directory needs of the node it runs beside
// (*node.Node has it): who the node is, whether it holds the swarm's lease,
// its live registry, and the roles it admits.
type Local interface {
	Chevron() subjects.Chevron
	Pubkey() string
	ServerName() string
	IsLeader() bool
	LeaderToken() uint64
	Members() []wire.Member
	RoleOf(pub string) (string, bool)
}

// Link is one leaf connection of this node, as the directory reports it
// (cmd/robonet fills it from node.LeafLinks).
type Link struct {
	Swarm    string    `json:"swarm"` // the swarm prefix at the other end
	Server   string    `json:"server"`
	Domain   string    `json:"domain,omitempty"`
	Up       bool      `json:"up"`
	Outbound bool      `json:"outbound"` // this node dialled it (a link to the parent)
	RTTMs    float64   `json:"rtt_ms"`
	Since    time.Time `json:"since,omitzero"`
	InMsgs   int64     `json:"in_msgs"`
	OutMsgs  int64     `json:"out_msgs"`
}

// DirectoryOptions configure a Directory. Conn, Signer, Local and Prefix
// are required; the zero value of the others is the default.
type DirectoryOptions struct {
	// Conn is the feature connection the directory uses (node.FeatureConn);
	// the caller closes it after Shutdown.
	Conn *nats.Conn
	// Signer signs the summaries and query answers: the node's own
	// (node.Signer), never a second chain for the same key.
	Signer *mesh.Signer
	// Local is the node the directory runs beside.
	Local Local
	// Prefix is the swarm prefix, zone.region.swarm (node.SwarmPrefix).
	Prefix string
	// Parent returns the parent swarm's prefix as known now ("" for none
	// or not linked yet): node.ParentPrefix.
	Parent func() string
	// Hub is set when the swarm accepts child swarms (node.IsHub): its
	// leader then keeps rn_fed_nodes and rn_fed_events sourcing them.
	Hub bool
	// Links lists the node's leaf connections (node.LeafLinks), for the
	// status view and the catch-up kick; nil: none.
	Links func() []Link
	// Interval is how often the leader publishes its summary (default 1 s).
	Interval time.Duration
	// PartitionAfter is how long a swarm may be silent before it counts as
	// partitioned (default PartitionAfter, 3 s).
	PartitionAfter time.Duration
	// Now is the clock (default time.Now); tests inject one.
	Now func() time.Time
	// Logger receives the directory's logs; nil discards them.
	Logger *slog.Logger
}

func (o DirectoryOptions) validate() (DirectoryOptions, subjects.Chevron, error) {
	bad := func(format string, a ...any) (DirectoryOptions, subjects.Chevron, error) {
		return o, subjects.Chevron{}, fmt.Errorf("%w: %s", ErrDirectoryOptions, fmt.Sprintf(format, a...))
	}
	if o.Conn == nil || o.Signer == nil || o.Local == nil {
		return bad("Conn, Signer and Local are required")
	}
	p, err := subjects.ParseSwarmPrefix(o.Prefix)
	if err != nil {
		return bad("prefix: %v", err)
	}
	if sw, ok := subjects.SwarmOf(o.Local.Chevron()); !ok || sw != p {
		return bad("the node's chevron %q is not a node under the swarm prefix %s", o.Local.Chevron().String(), p)
	}
	if o.Signer.PublicKey() != o.Local.Pubkey() {
		return bad("the signer's key %s is not the node's %s", o.Signer.PublicKey(), o.Local.Pubkey())
	}
	if o.Interval < 0 || o.PartitionAfter < 0 {
		return bad("negative Interval or PartitionAfter")
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	if o.PartitionAfter == 0 {
		o.PartitionAfter = PartitionAfter
	}
	if o.PartitionAfter <= o.Interval {
		return bad("PartitionAfter %v must exceed Interval %v", o.PartitionAfter, o.Interval)
	}
	if o.Parent == nil {
		o.Parent = func() string { return "" }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o, p, nil
}

// Directory is a federated node's view of the swarms it hears: the latest
// summary of each, partitioned when one stops for PartitionAfter. While
// its node holds the swarm's lease it publishes the swarm's own summary
// every Interval, keeps rn_events, and on a hub keeps rn_fed_nodes and
// rn_fed_events sourcing the child swarms. It answers the signed queries
// rn.sys.fed (the directory) and rn.sys.fednodes (the federated registry).
type Directory struct {
	o        DirectoryOptions
	prefix   subjects.Chevron
	domain   string
	book     *book
	verifier *trust.Verifier
	js       jetstream.JetStream
	agg      *aggregator
	union    *unionCache

	regRev atomic.Uint64 // rn_nodes' last sequence, as last read

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	subsMu  sync.Mutex // guards subs
	subs    []*nats.Subscription
	started atomic.Bool
	stop    sync.Once
}

// NewDirectory validates o; it starts nothing.
func NewDirectory(o DirectoryOptions) (*Directory, error) {
	o, p, err := o.validate()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(o.Conn)
	if err != nil {
		return nil, fmt.Errorf("directory: jetstream: %w", err)
	}
	dom, _ := subjects.SwarmDomain(p)
	ctx, cancel := context.WithCancel(context.Background())
	d := &Directory{o: o, prefix: p, domain: dom, book: newBook(p, o.PartitionAfter, o.Interval),
		verifier: trust.NewVerifier(0), js: js, ctx: ctx, cancel: cancel}
	d.union = newUnionCache(js, o.Logger)
	d.agg = newAggregator(d)
	return d, nil
}

// Start subscribes to every swarm's summary and to the directory queries,
// and starts the publisher and, on a hub, the watch of rn_fed_nodes. It
// returns once the subscriptions are in place.
func (d *Directory) Start(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("directory: started twice")
	}
	if d.ctx.Err() != nil {
		return errors.New("directory: shut down")
	}
	if err := d.subscribe(); err != nil {
		d.unsubscribe()
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if err := d.o.Conn.FlushWithContext(ctx); err != nil {
		d.unsubscribe()
		return fmt.Errorf("directory: %w", err)
	}
	d.wg.Add(2)
	go d.publishLoop()
	go d.agg.run(d.ctx, &d.wg)
	if d.o.Hub {
		d.wg.Add(1)
		go d.union.run(d.ctx, &d.wg)
	}
	return nil
}

func (d *Directory) subscribe() error {
	sub, err := d.o.Conn.Subscribe(subjects.DirSummaryWildcard, d.onSummary)
	if err != nil {
		return fmt.Errorf("directory: subscribe %s: %w", subjects.DirSummaryWildcard, err)
	}
	d.addSub(sub)
	return d.serveQueries()
}

func (d *Directory) addSub(s *nats.Subscription) {
	d.subsMu.Lock()
	d.subs = append(d.subs, s)
	d.subsMu.Unlock()
}

func (d *Directory) unsubscribe() {
	d.subsMu.Lock()
	subs := d.subs
	d.subs = nil
	d.subsMu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// Shutdown stops publishing and answering and waits for every goroutine
// the directory started. It is idempotent; it does not close Conn.
func (d *Directory) Shutdown(ctx context.Context) error {
	d.stop.Do(func() {
		d.cancel()
		d.unsubscribe()
	})
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("directory shutdown: %w", ctx.Err())
	}
}

// Prefix is this swarm's prefix.
func (d *Directory) Prefix() string { return d.prefix.String() }

// Counters are what the directory did with the summaries it received.
func (d *Directory) Counters() DirCounters { return d.book.counters() }

// Swarms is the directory now: this node's own swarm (Link LinkSelf) and
// every swarm it has heard of, by prefix.
func (d *Directory) Swarms() []SwarmState {
	now := d.o.Now()
	out := append([]SwarmState{d.selfState(now)}, d.book.snapshot(now)...)
	sort.Slice(out, func(i, j int) bool { return subjects.CompareText(out[i].Prefix, out[j].Prefix) < 0 })
	return out
}

// Swarm is one swarm of the directory; ok is false for one never heard of.
func (d *Directory) Swarm(prefix string) (SwarmState, bool) {
	for _, s := range d.Swarms() {
		if s.Prefix == prefix {
			return s, true
		}
	}
	return SwarmState{}, false
}

// Under lists the swarms whose prefix is under p (p itself when p is a
// swarm prefix, every swarm for the empty prefix), for a federated
// command's expected set.
func (d *Directory) Under(p subjects.Chevron) []SwarmState {
	var out []SwarmState
	for _, s := range d.Swarms() {
		if c, err := subjects.Parse(s.Prefix); err == nil && (c.HasPrefix(p) || p.IsZero()) {
			out = append(out, s)
		}
	}
	return out
}

// selfState is this node's own swarm as it knows it first hand.
func (d *Directory) selfState(now time.Time) SwarmState {
	st := SwarmState{Prefix: d.prefix.String(), Domain: d.domain, Parent: d.o.Parent(), Link: LinkSelf, Hub: d.o.Hub}
	sum := d.local(now)
	st.Nodes, st.Live, st.Caps = sum.Nodes, sum.Live, sum.Caps
	st.Leader, st.LeaderKey = sum.Leader, sum.LeaderKey
	st.RegistryRev = d.regRev.Load()
	if own, ok := d.book.own(); ok {
		st.LastHeard, st.LagMs = own.heard, own.st.LagMs
		st.RegistryRev = max(st.RegistryRev, own.st.RegistryRev)
		if st.Leader == "" {
			st.Leader, st.LeaderKey = own.st.Leader, own.st.LeaderKey
		}
	}
	return st
}

// local summarizes the node's live registry: counts, offline members, the
// caps union and the leader it sees (no token, no relayed swarms).
func (d *Directory) local(now time.Time) wire.DirSummary {
	s := wire.DirSummary{Prefix: d.prefix.String(), Domain: d.domain, Parent: d.o.Parent(), Hub: d.o.Hub, Sent: now.UTC()}
	caps := map[string]bool{}
	for _, m := range d.o.Local.Members() {
		c, err := subjects.Parse(m.Chevron)
		if sw, ok := subjects.SwarmOf(c); err != nil || !ok || sw != d.prefix {
			continue // not a node of this federated swarm: nothing to say upward
		}
		s.Nodes++
		if m.State == wire.StateAlive || m.State == wire.StateSuspect {
			s.Live++
			for _, cp := range m.Caps {
				if subjects.ValidToken(cp) == nil {
					caps[cp] = true
				}
			}
		} else if len(s.Offline) < wire.MaxDirOffline {
			s.Offline = append(s.Offline, m.Chevron)
		} else {
			s.OfflineTrimmed = true
		}
		if m.Leader && m.State != wire.StateOffline {
			s.Leader, s.LeaderKey = m.Chevron, m.Pubkey
		}
	}
	for cp := range caps {
		s.Caps = append(s.Caps, cp)
	}
	sort.Strings(s.Caps)
	if len(s.Caps) > wire.MaxDirCaps {
		s.Caps = s.Caps[:wire.MaxDirCaps]
	}
	return s
}

// summary is what the leader publishes now; ok is false when the node does
// not hold the lease.
func (d *Directory) summary(now time.Time) (wire.DirSummary, bool) {
	token := d.o.Local.LeaderToken()
	if token == 0 {
		return wire.DirSummary{}, false
	}
	s := d.local(now)
	s.Leader, s.LeaderKey, s.Token = d.o.Local.Chevron().String(), d.o.Local.Pubkey(), token
	s.RegistryRev = d.regRev.Load()
	s.Swarms = d.book.descendants(now)
	return s, true
}

// encodeSummary marshals s within wire.MaxDirSummary, dropping the relayed
// swarms' offline lists first, then relayed swarms, if it must.
func encodeSummary(s wire.DirSummary) ([]byte, error) {
	for {
		data, err := json.Marshal(s)
		if err != nil || len(data) <= wire.MaxDirSummary {
			return data, err
		}
		trimmed := false
		for i := range s.Swarms {
			if s.Swarms[i].Offline != nil {
				s.Swarms = slices.Clone(s.Swarms)
				for j := range s.Swarms {
					s.Swarms[j].Offline = nil
				}
				trimmed = true
				break
			}
		}
		if trimmed {
			continue
		}
		if len(s.Swarms) == 0 {
			return nil, fmt.Errorf("directory summary of %d bytes even without relayed swarms", len(data))
		}
		s.Swarms = s.Swarms[:len(s.Swarms)/2]
	}
}

// publishLoop publishes the swarm's summary every Interval while the node
// holds the lease, and refreshes the registry revision.
func (d *Directory) publishLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	subj, _ := subjects.DirSummary(d.prefix)
	for {
		if d.o.Local.IsLeader() {
			d.readRegistryRev()
			if s, ok := d.summary(d.o.Now()); ok {
				if err := d.publishSummary(subj, s); err != nil && d.ctx.Err() == nil {
					d.o.Logger.Debug("publish directory summary", "err", err)
				}
			}
		}
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (d *Directory) publishSummary(subj string, s wire.DirSummary) error {
	data, err := encodeSummary(s)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: subj, Data: data}
	if err := d.o.Signer.SignMsg(m); err != nil {
		return err
	}
	return d.o.Conn.PublishMsg(m)
}

// readRegistryRev reads rn_nodes' last sequence (one JetStream request; the
// previous value stays when it fails).
func (d *Directory) readRegistryRev() {
	ctx, cancel := context.WithTimeout(d.ctx, d.o.Interval/2)
	defer cancel()
	st, err := d.js.Stream(ctx, "KV_"+mesh.NodesBucket)
	if err != nil {
		return
	}
	d.regRev.Store(st.CachedInfo().State.LastSeq)
}

// onSummary takes a summary from the network: signature first, then the
// rule in book.accept.
func (d *Directory) onSummary(m *nats.Msg) {
	p, ok := subjects.ParseDirSummary(m.Subject)
	if !ok || len(m.Data) > wire.MaxDirSummary {
		d.book.refuse(fmt.Errorf("%w: subject %q, %d bytes", ErrSummaryMalformed, clip(m.Subject), len(m.Data)))
		return
	}
	h, err := mesh.ParseSigned(m)
	if err == nil {
		err = d.verifier.Verify(h, m.Subject, m.Data)
	}
	if err != nil {
		d.book.refuse(fmt.Errorf("%w: %v", ErrSummarySignature, err))
		d.o.Logger.Debug("directory summary refused", "subject", m.Subject, "err", err)
		return
	}
	var s wire.DirSummary
	if err := wire.Decode(m.Data, &s); err != nil {
		d.book.refuse(fmt.Errorf("%w: %v", ErrSummaryMalformed, err))
		return
	}
	var registry keyCheck
	if d.o.Hub {
		registry = d.union.keyOf
	}
	if err := d.book.accept(p, s, h.From, d.memberKey, registry, d.o.Now()); err != nil {
		d.o.Logger.Debug("directory summary refused", "subject", m.Subject, "err", err)
	}
}

// memberKey is the key this node's registry has for chevron.
func (d *Directory) memberKey(chevron string) (string, bool) {
	for _, m := range d.o.Local.Members() {
		if m.Chevron == chevron && m.Pubkey != "" {
			return m.Pubkey, true
		}
	}
	return "", false
}

// children are the swarms whose own summaries name this swarm as parent.
func (d *Directory) children(now time.Time) []SwarmState {
	var out []SwarmState
	for _, s := range d.book.snapshot(now) {
		if s.Parent == d.prefix.String() && s.Via == "" {
			out = append(out, s)
		}
	}
	return out
}
