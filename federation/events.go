package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
)

// Durable federation state (DESIGN.md, "State in JetStream").
const (
	// StreamEvents is every federated swarm's stream of its nodes' events
	// but heartbeats and tier views (subjects.DurableEventKinds).
	StreamEvents = "rn_events"
	// StreamFedEvents is a hub's stream sourcing each child's rn_events
	// (and a child hub's rn_fed_events) across domains.
	StreamFedEvents = "rn_fed_events"
	// BucketFedNodes is a hub's KV sourcing each child's rn_nodes (and a
	// child hub's rn_fed_nodes) across domains: who exists below it.
	BucketFedNodes = "rn_fed_nodes"
	// EventsMaxAge is how long events are kept: the longest partition after
	// which a hub still receives every event produced during it.
	EventsMaxAge = 7 * 24 * time.Hour
)

// fedNodesStream is the stream behind BucketFedNodes.
const fedNodesStream = "KV_" + BucketFedNodes

// EventsConfig is swarm p's rn_events stream: the durable event kinds of
// its nodes, kept EventsMaxAge, on file (the server syncs every write).
func EventsConfig(p subjects.Chevron, replicas int) (jetstream.StreamConfig, error) {
	subs, err := subjects.EventsSubjects(p)
	if err != nil {
		return jetstream.StreamConfig{}, fmt.Errorf("events stream: %w", err)
	}
	return jetstream.StreamConfig{
		Name: StreamEvents, Description: "robonet: this swarm's events but heartbeats, sourced by its hub",
		Subjects: subs, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxAge: EventsMaxAge, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	}, nil
}

// childScope is what a child hub's own aggregates may hold: its region
// (a hub with a parent admits child swarms in its region), as a subject
// fragment "3.12".
func childScope(c subjects.Chevron) string {
	t := c.Tokens()
	return fmt.Sprintf("%d.%d", t[0], t[1])
}

// external is how a hub reaches child c's JetStream: c's domain API, with
// deliveries under rn.fed.js.<c> (the only delivery subjects c's link lets
// through for it).
func external(c subjects.Chevron) (*jetstream.ExternalStream, error) {
	dom, err := subjects.SwarmDomain(c)
	if err != nil {
		return nil, err
	}
	dp, _ := subjects.SourceDeliverPrefix(c)
	return &jetstream.ExternalStream{APIPrefix: "$JS." + dom + ".API", DeliverPrefix: dp}, nil
}

// FedNodesSources are the sources a hub's rn_fed_nodes takes from child
// swarm c: c's rn_nodes, only keys under c (a child cannot register nodes
// outside its prefix upward), renamed into rn_fed_nodes; and when c is a
// hub, c's rn_fed_nodes, only keys in its region.
func FedNodesSources(c subjects.Chevron, hub bool) ([]*jetstream.StreamSource, error) {
	ext, err := external(c)
	if err != nil {
		return nil, fmt.Errorf("rn_fed_nodes source: %w", err)
	}
	out := []*jetstream.StreamSource{{
		Name: "KV_" + mesh.NodesBucket, External: ext,
		SubjectTransforms: []jetstream.SubjectTransformConfig{{
			Source:      "$KV." + mesh.NodesBucket + "." + c.String() + ".*",
			Destination: "$KV." + BucketFedNodes + "." + c.String() + ".{{wildcard(1)}}",
		}},
	}}
	if hub {
		x := *ext
		out = append(out, &jetstream.StreamSource{Name: fedNodesStream, External: &x,
			FilterSubject: "$KV." + BucketFedNodes + "." + childScope(c) + ".>"})
	}
	return out, nil
}

// FedEventsSources are the sources a hub's rn_fed_events takes from child
// swarm c: c's rn_events, only events of c's nodes; and when c is a hub,
// c's rn_fed_events, only events in its region.
func FedEventsSources(c subjects.Chevron, hub bool) ([]*jetstream.StreamSource, error) {
	ext, err := external(c)
	if err != nil {
		return nil, fmt.Errorf("rn_fed_events source: %w", err)
	}
	out := []*jetstream.StreamSource{{Name: StreamEvents, External: ext, FilterSubject: subjects.Root + "." + c.String() + ".>"}}
	if hub {
		x := *ext
		out = append(out, &jetstream.StreamSource{Name: StreamFedEvents, External: &x,
			FilterSubject: subjects.Root + "." + childScope(c) + ".>"})
	}
	return out, nil
}

// FedNodesConfig is a hub's rn_fed_nodes with the given sources.
func FedNodesConfig(sources []*jetstream.StreamSource, replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketFedNodes,
		Description: "robonet: the registries of the swarms below this hub (sourced, read-only)",
		History:     1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1), Sources: sources}
}

// FedEventsConfig is a hub's rn_fed_events with the given sources.
func FedEventsConfig(sources []*jetstream.StreamSource, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: StreamFedEvents,
		Description: "robonet: the events of the swarms below this hub (sourced, read-only)",
		Sources:     sources, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxAge: EventsMaxAge, Storage: jetstream.FileStorage, Replicas: max(replicas, 1)}
}

// childKey names a child in the aggregates: its prefix, and whether its
// own aggregates are sourced too.
type childKey struct {
	prefix subjects.Chevron
	hub    bool
}

// sourcedChildren reads back which children a stream's sources cover.
func sourcedChildren(sources []*jetstream.StreamSource) map[subjects.Chevron]bool {
	out := map[subjects.Chevron]bool{}
	for _, s := range sources {
		if s == nil || s.External == nil {
			continue
		}
		dom := strings.TrimSuffix(strings.TrimPrefix(s.External.APIPrefix, "$JS."), ".API")
		p, err := subjects.ParseSwarmPrefix(strings.ReplaceAll(strings.TrimPrefix(dom, "rn-"), "-", "."))
		if err != nil {
			continue
		}
		out[p] = out[p] || s.Name == fedNodesStream || s.Name == StreamFedEvents
	}
	return out
}

// aggregator keeps the durable federation streams while the node leads
// its swarm: rn_events everywhere; on a hub rn_fed_nodes and rn_fed_events
// with a source for every child the directory has heard, and the catch-up
// kick when a child comes back.
type aggregator struct {
	d *Directory

	// The fields below are the run goroutine's alone.
	wasLeader  bool
	nextEvents time.Time
	nextHub    time.Time
	sourced    map[subjects.Chevron]bool // children in both aggregates, as last written or read
	prevUp     map[string]bool           // child prefix → up at the last step
	lastKick   time.Time

	// kick steps the aggregates' leaders down (KickAggregates on the
	// directory's connection; tests count calls instead).
	kick    func(ctx context.Context) (int, error)
	kicks   atomic.Uint64 // step-downs sent
	rejoins atomic.Uint64 // children seen back after a partition
	mu      sync.Mutex    // guards lastErr
	// lastErr is the last failure to keep a stream ("" when the last
	// attempt worked), for the status view.
	lastErr string
}

func newAggregator(d *Directory) *aggregator {
	a := &aggregator{d: d, sourced: map[subjects.Chevron]bool{}, prevUp: map[string]bool{}}
	a.kick = func(ctx context.Context) (int, error) { return KickAggregates(ctx, d.o.Conn, d.js) }
	return a
}

// Kicks is how many aggregate stream leader step-downs (catch-up kicks)
// this node sent.
func (d *Directory) Kicks() uint64 { return d.agg.kicks.Load() }

// Rejoins is how many times, while this node led a hub, a child swarm
// came back after a partition (each one asks for a catch-up kick).
func (d *Directory) Rejoins() uint64 { return d.agg.rejoins.Load() }

// kickEvery bounds the catch-up kicks: one per this interval, whoever
// came back.
const kickEvery = 2 * time.Second

func (a *aggregator) run(ctx context.Context, wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(min(a.d.o.Interval, 250*time.Millisecond))
	defer t.Stop()
	for {
		a.step(ctx, a.d.o.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *aggregator) setErr(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil {
		a.lastErr = ""
		return
	}
	a.lastErr = err.Error()
}

func (a *aggregator) step(ctx context.Context, now time.Time) {
	if !a.d.o.Local.IsLeader() {
		a.wasLeader = false
		clear(a.prevUp)
		return
	}
	if !a.wasLeader {
		a.wasLeader = true
		a.nextEvents, a.nextHub = time.Time{}, time.Time{}
	}
	if !now.Before(a.nextEvents) {
		err := a.ensureEvents(ctx)
		a.setErr(err)
		a.nextEvents = now.Add(10 * time.Second)
		if err != nil {
			a.nextEvents = now.Add(2 * time.Second)
			a.d.o.Logger.Debug("keep rn_events (retrying)", "err", err)
		}
	}
	if !a.d.o.Hub {
		return
	}
	children := a.d.children(now)
	missing := a.sourced == nil // the aggregates themselves, before any child
	for _, c := range children {
		p, err := subjects.ParseSwarmPrefix(c.Prefix)
		if err != nil || !a.d.inScope(p) {
			continue
		}
		if have, ok := a.sourced[p]; !ok || (c.Hub && !have) {
			missing = true
		}
	}
	if missing || !now.Before(a.nextHub) {
		err := a.ensureHub(ctx, children)
		a.setErr(err)
		a.nextHub = now.Add(30 * time.Second)
		if err != nil {
			a.nextHub = now.Add(2 * time.Second)
			a.d.o.Logger.Warn("keep rn_fed_nodes / rn_fed_events (retrying)", "err", err)
		}
	}
	a.kickIfBack(ctx, children, now)
}

// inScope reports whether swarm p may be this hub's child: a hub without
// a parent (a zone hub) admits swarms of its zone, a hub with one (a
// region hub) swarms of its region, never itself. A summary that names
// this hub as parent from outside that scope gets no source (admission
// refuses such a swarm's link anyway).
func (d *Directory) inScope(p subjects.Chevron) bool {
	t, self := p.Tokens(), d.prefix.Tokens()
	if p == d.prefix || t[0] != self[0] {
		return false
	}
	return d.o.Parent() == "" || t[1] == self[1]
}

// replicasOf is the replica count of stream (1 when unknown): the
// aggregates follow rn_nodes', which the node scales with the swarm.
func (a *aggregator) replicasOf(ctx context.Context, stream string) int {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := a.d.js.Stream(cctx, stream)
	if err != nil {
		return 1
	}
	return max(st.CachedInfo().Config.Replicas, 1)
}

// ensureEvents creates rn_events, or raises its replicas to rn_nodes'.
func (a *aggregator) ensureEvents(ctx context.Context) error {
	want, err := EventsConfig(a.d.prefix, a.replicasOf(ctx, "KV_"+mesh.NodesBucket))
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := a.d.js.Stream(cctx, StreamEvents)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = a.d.js.CreateStream(cctx, want)
	case err != nil:
	default:
		have := st.CachedInfo().Config
		if have.Replicas < want.Replicas || !slices.Equal(have.Subjects, want.Subjects) || have.MaxAge != want.MaxAge {
			_, err = a.d.js.UpdateStream(cctx, want)
		}
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", StreamEvents, err)
	}
	return nil
}

// ensureHub makes rn_fed_nodes and rn_fed_events source every child the
// directory has heard and every child they sourced before (a child that
// is silent stays sourced: it is partitioned, not gone), at rn_nodes'
// replica count.
func (a *aggregator) ensureHub(ctx context.Context, children []SwarmState) error {
	replicas := a.replicasOf(ctx, "KV_"+mesh.NodesBucket)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want := map[subjects.Chevron]bool{}
	var nodesHave, eventsHave jetstream.StreamConfig
	nodesSt, nerr := a.d.js.Stream(cctx, fedNodesStream)
	if nerr == nil {
		nodesHave = nodesSt.CachedInfo().Config
		for p, hub := range sourcedChildren(nodesHave.Sources) {
			want[p] = want[p] || hub
		}
	} else if !errors.Is(nerr, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", fedNodesStream, nerr)
	}
	eventsSt, eerr := a.d.js.Stream(cctx, StreamFedEvents)
	if eerr == nil {
		eventsHave = eventsSt.CachedInfo().Config
		for p, hub := range sourcedChildren(eventsHave.Sources) {
			want[p] = want[p] || hub
		}
	} else if !errors.Is(eerr, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", StreamFedEvents, eerr)
	}
	for _, c := range children {
		if p, err := subjects.ParseSwarmPrefix(c.Prefix); err == nil && a.d.inScope(p) {
			want[p] = want[p] || c.Hub
		}
	}
	// A hub keeps its aggregates from the start, children or not: its
	// own parent sources them as soon as it hears of this hub, and a
	// source whose stream does not exist yet fails and backs off (5 s,
	// then 10 s, 20 s, … up to 2 min) before the first row arrives.
	keys := make([]childKey, 0, len(want))
	for p, hub := range want {
		keys = append(keys, childKey{p, hub})
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].prefix.Compare(keys[j].prefix) < 0 })
	var nodeSrc, eventSrc []*jetstream.StreamSource
	for _, k := range keys {
		ns, err := FedNodesSources(k.prefix, k.hub)
		if err != nil {
			return err
		}
		es, err := FedEventsSources(k.prefix, k.hub)
		if err != nil {
			return err
		}
		nodeSrc, eventSrc = append(nodeSrc, ns...), append(eventSrc, es...)
	}
	kvCfg := FedNodesConfig(nodeSrc, replicas)
	switch {
	case nerr != nil:
		if _, err := a.d.js.CreateKeyValue(cctx, kvCfg); err != nil {
			return fmt.Errorf("bucket %s: %w", BucketFedNodes, err)
		}
	case !sameSources(nodesHave.Sources, nodeSrc) || nodesHave.Replicas < replicas:
		if _, err := a.d.js.UpdateKeyValue(cctx, kvCfg); err != nil {
			return fmt.Errorf("bucket %s: %w", BucketFedNodes, err)
		}
	}
	evCfg := FedEventsConfig(eventSrc, replicas)
	switch {
	case eerr != nil:
		if _, err := a.d.js.CreateStream(cctx, evCfg); err != nil {
			return fmt.Errorf("stream %s: %w", StreamFedEvents, err)
		}
	case !sameSources(eventsHave.Sources, eventSrc) || eventsHave.Replicas < replicas:
		if _, err := a.d.js.UpdateStream(cctx, evCfg); err != nil {
			return fmt.Errorf("stream %s: %w", StreamFedEvents, err)
		}
	}
	a.sourced = want
	return nil
}

// sameSources compares sources by what identifies them to the server:
// name, domain API, filter and transforms.
func sameSources(a, b []*jetstream.StreamSource) bool {
	id := func(ss []*jetstream.StreamSource) []string {
		var out []string
		for _, s := range ss {
			if s == nil {
				continue
			}
			api := ""
			if s.External != nil {
				api = s.External.APIPrefix + " " + s.External.DeliverPrefix
			}
			tr, _ := json.Marshal(s.SubjectTransforms)
			out = append(out, s.Name+" "+api+" "+s.FilterSubject+" "+string(tr))
		}
		sort.Strings(out)
		return out
	}
	return slices.Equal(id(a), id(b))
}

// kickIfBack steps down the aggregate streams' leaders when a child comes
// back (research §3.4): after a partition a source retries with a backoff
// of up to two minutes, and only the server holding the returning leaf
// connection retries its sources at once; a new stream leader sets its
// sources up fresh (measured 0.65–0.92 s instead of up to 50 s). A child
// is back when the directory hears it again after it was partitioned, or
// when a leaf link of this node to it comes up after none was.
func (a *aggregator) kickIfBack(ctx context.Context, children []SwarmState, now time.Time) {
	linked := map[string]bool{}
	if a.d.o.Links != nil {
		for _, l := range a.d.o.Links() {
			if l.Up && !l.Outbound {
				linked[l.Swarm] = true
			}
		}
	}
	var back []string
	for _, c := range children {
		up := c.Link == LinkUp
		was, seen := a.prevUp[c.Prefix]
		wasLinked, seenLinked := a.prevUp["link:"+c.Prefix]
		if (seen && !was && up) || (seenLinked && !wasLinked && linked[c.Prefix]) {
			back = append(back, c.Prefix)
		}
		a.prevUp[c.Prefix] = up
		a.prevUp["link:"+c.Prefix] = linked[c.Prefix]
	}
	a.rejoins.Add(uint64(len(back)))
	if len(back) == 0 || now.Sub(a.lastKick) < kickEvery {
		return
	}
	a.lastKick = now
	n, err := a.kick(ctx)
	a.kicks.Add(uint64(n))
	if err != nil {
		a.d.o.Logger.Debug("catch-up kick", "err", err)
	}
	a.d.o.Logger.Info("child swarm back: stepped down the aggregate streams' leaders so their sources catch up now",
		"swarms", back, "streams", n)
}

// KickAggregates steps down the leaders of a hub's aggregate streams
// (rn_fed_nodes, rn_fed_events), over nc with js's API, so that a new
// leader sets their sources up fresh; it returns how many stepped down. A
// stream of one replica has no other leader to move to: its only server
// holds every leaf link, and retries its sources itself when one comes up.
func KickAggregates(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (int, error) {
	n := 0
	var errs []error
	for _, stream := range []string{fedNodesStream, StreamFedEvents} {
		if err := stepDown(ctx, nc, js, stream); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// stepDown asks stream's leader to step down.
func stepDown(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream string) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := js.Stream(cctx, stream)
	if err != nil {
		return fmt.Errorf("%s: %w", stream, err)
	}
	if st.CachedInfo().Config.Replicas < 2 {
		return fmt.Errorf("%s has one replica: no other leader to move to", stream)
	}
	resp, err := nc.RequestWithContext(cctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil)
	if err != nil {
		return fmt.Errorf("%s: step down: %w", stream, err)
	}
	var r struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("%s: step down: %w", stream, err)
	}
	if !r.Success {
		if r.Error != nil {
			return fmt.Errorf("%s: step down: %s", stream, r.Error.Description)
		}
		return fmt.Errorf("%s: step down refused", stream)
	}
	return nil
}
