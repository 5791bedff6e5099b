package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Swarm statuses of a federated gather (SwarmResult.Status).
const (
	SwarmLocal       = "local"       // the requester's own swarm, gathered in-swarm
	SwarmComplete    = "complete"    // its ambassador's done arrived: every node accounted
	SwarmPartitioned = "partitioned" // cut off at send time (the directory): not waited for
	SwarmIncomplete  = "incomplete"  // no done by the deadline (or no ambassador serves it)
	SwarmRefused     = "refused"     // its ambassador refused the command (Error says why)
)

// ErrNotFederated is returned for a selector that stays inside the local
// swarm (or names no prefix): mesh.Gather serves it.
var ErrNotFederated = errors.New("not a federated selector")

// Request is one federated command.
type Request struct {
	// GatherRequest's Selector, Verb, Args, Input, Timeout (default 10 s),
	// From and Approval apply; Batch and Limit work inside one swarm only
	// and are refused here.
	mesh.GatherRequest
	// Local is the requester's swarm prefix (zone.region.swarm).
	Local subjects.Chevron
	// Members is the local swarm's live registry as the connected node
	// sees it (mesh.Client.Nodes): the local part's expected set.
	Members []wire.Member
	// Swarms is the federated directory at send time (H3's directory):
	// which swarms exist and whether each is cut off.
	Swarms []SwarmState
	// NodeKey, when set, is the federated registry's word on node keys
	// (H3's rn_fed_nodes): an ambassador's stream then counts only when
	// its signer, and every node it lists, has the key NodeKey gives its
	// chevron (a chevron it does not know is refused). Nil: a stream
	// counts when it is consistent — one signer, a node of the swarm, that
	// lists itself (if at all) under that key, and that is the directory's
	// leader key when it claims the leader's chevron; node replies must be
	// signed by the keys the stream lists.
	NodeKey func(chevron string) (pubkey string, ok bool)
}

// NodeResult is one node's part of a federated gather.
type NodeResult struct {
	mesh.NodeResult
	Swarm string `json:"swarm"` // the node's swarm prefix
}

// SwarmResult is how one swarm answered.
type SwarmResult struct {
	Swarm  string `json:"swarm"`
	Status string `json:"status"` // SwarmLocal, SwarmComplete, SwarmPartitioned, SwarmIncomplete, SwarmRefused
	// Ambassador is the chevron of the node that answered for the swarm,
	// AmbassadorKey the key that signed its start and done.
	Ambassador    string   `json:"ambassador,omitempty"`
	AmbassadorKey string   `json:"ambassador_key,omitempty"`
	Expected      int      `json:"expected"` // nodes the swarm expected to answer
	Answered      int      `json:"answered"`
	Offline       []string `json:"offline,omitempty"`
	Timeout       []string `json:"timeout,omitempty"`
	RegistryRev   uint64   `json:"registry_rev,omitempty"`
	Error         string   `json:"error,omitempty"`
	Code          string   `json:"code,omitempty"`
	// Dropped counts this swarm's stream messages that did not verify.
	Dropped int `json:"dropped,omitempty"`
}

// Summary counts a federated gather: the node counts (mesh.Summary) and
// the swarms'.
type Summary struct {
	mesh.Summary
	Swarms      int `json:"swarms"`
	Partitioned int `json:"partitioned"`
	Incomplete  int `json:"incomplete"`
	Refused     int `json:"refused"`
}

// Result is a federated gather: every swarm, every node (chevron order),
// and the summary. When the selector is exactly one other swarm's prefix
// (`run 3.12.7 status`) that swarm answers as one logical node: Results
// holds one entry whose chevron is the swarm prefix, whose status is ok
// when every node of it was ok, error when some were not, timeout when its
// answer was incomplete and offline when it was partitioned, and whose
// output is {"swarm", "summary", "results"} with the per-node results (a
// swarm whose ambassador refused the command is error, or denied when it
// refused the key).
type Result struct {
	Selector string        `json:"selector"`
	Verb     string        `json:"verb"`
	Swarms   []SwarmResult `json:"swarms"`
	Results  []NodeResult  `json:"results"`
	Summary  Summary       `json:"summary"`
}

// OK reports whether every swarm answered in full and every node was ok.
func (r Result) OK() bool {
	for _, s := range r.Swarms {
		if s.Status != SwarmLocal && s.Status != SwarmComplete {
			return false
		}
	}
	return r.Summary.Total > 0 && r.Summary.OK == r.Summary.Total
}

// Plan is what a federated command needs before it is sent, decided from
// the selector, the local swarm and the directory alone.
type Plan struct {
	Scope subjects.Chevron // the prefix the command is published for
	// Local: the local swarm is under Scope, so its part is gathered
	// in-swarm and the federated command excludes it.
	Local bool
	// Remote are the other swarms under Scope the directory has in view;
	// Partitioned those it shows cut off.
	Remote      []subjects.Chevron
	Partitioned []SwarmState
	// Logical is set when the selector is exactly one remote swarm's
	// prefix: it answers as one logical node.
	Logical bool
}

// IsFederated reports whether sel reaches outside the local swarm: its
// scope is a prefix that is not inside local.
func IsFederated(sel subjects.Selector, local subjects.Chevron) bool {
	scope, ok := sel.Scope()
	return ok && !local.IsZero() && !scope.HasPrefix(local)
}

// PlanFor decides a federated command's plan at now. A swarm whose link is
// down, or whose last summary is older than PartitionAfter, is
// partitioned: the gather does not wait for it. The local swarm and any
// swarm listed twice count once.
func PlanFor(sel subjects.Selector, local subjects.Chevron, swarms []SwarmState, now time.Time) (Plan, error) {
	if local.Len() != subjects.SwarmTokens {
		return Plan{}, fmt.Errorf("local swarm %q: want a swarm prefix (zone.region.swarm)", local)
	}
	scope, ok := sel.Scope()
	if !ok || scope.HasPrefix(local) {
		return Plan{}, fmt.Errorf("%w: %q stays in swarm %s", ErrNotFederated, sel, local)
	}
	p := Plan{Scope: scope, Local: local.HasPrefix(scope)}
	seen := map[subjects.Chevron]bool{local: true}
	var known []string
	for _, s := range swarms {
		c, err := subjects.ParseSwarmPrefix(s.Prefix)
		if err != nil || seen[c] {
			continue
		}
		seen[c] = true
		known = append(known, s.Prefix)
		if !subjects.Overlaps(scope, c) {
			continue
		}
		if s.Partitioned() || (!s.LastHeard.IsZero() && now.Sub(s.LastHeard) > PartitionAfter) {
			p.Partitioned = append(p.Partitioned, s)
			continue
		}
		p.Remote = append(p.Remote, c)
	}
	if !p.Local && len(p.Remote) == 0 && len(p.Partitioned) == 0 {
		sort.Strings(known)
		return Plan{}, fmt.Errorf("%w %q: no swarm under %s in the federated directory (local %s; swarms: %s)",
			mesh.ErrNoMatch, sel, scope, local, strings.Join(known, ", "))
	}
	pfx, whole := sel.Prefix()
	p.Logical = whole && pfx == scope && scope.Len() == subjects.SwarmTokens && !p.Local
	sort.Slice(p.Remote, func(i, j int) bool { return p.Remote[i].Compare(p.Remote[j]) < 0 })
	return p, nil
}

// Gather runs a federated command: the local swarm's part in-swarm (mesh,
// against req.Members), the rest published once on
// rn.fed.<scope>.cmd.<verb> (excluding the local swarm) and answered by
// each swarm's ambassador. It waits until every swarm in view sent its done
// or req.Timeout passed, and accounts for every node of every swarm. A
// relayed node reply counts only when signed by the key its ambassador's
// start lists for that node, over the subject it was signed for, for this
// request; the start and done only when signed by one key, the
// ambassador's. progress, if not nil, sees each node's result as it
// settles (calls are serialized).
func Gather(ctx context.Context, c *mesh.Client, req Request, progress func(NodeResult)) (Result, error) {
	res := Result{Selector: req.Selector, Verb: req.Verb}
	sel, err := subjects.ParseSelector(req.Selector)
	if err != nil {
		return res, err
	}
	if err := subjects.ValidToken(req.Verb); err != nil {
		return res, fmt.Errorf("verb: %w", err)
	}
	if req.Batch != 0 || req.Limit != 0 {
		return res, errors.New("--batch and --limit work inside one swarm; a federated command goes to every swarm at once")
	}
	if req.Timeout <= 0 {
		req.Timeout = 10 * time.Second
	}
	if c.Signer() == nil {
		return res, errors.New("a federated command must be signed: the client has no signer")
	}
	plan, err := PlanFor(sel, req.Local, req.Swarms, time.Now())
	if err != nil {
		return res, err
	}
	var mu sync.Mutex // serializes progress
	report := func(r NodeResult) {
		if progress != nil {
			mu.Lock()
			progress(r)
			mu.Unlock()
		}
	}

	// The remote part is published first, so the ambassadors work while
	// the local part runs.
	var col *collector
	if len(plan.Remote) > 0 {
		if col, err = publishFed(c, req, sel, plan, report); err != nil {
			return res, err
		}
		defer col.close()
	}
	waitLocal := startLocal(ctx, c, req, sel, plan, report)
	if col != nil {
		col.run(ctx, req.Timeout)
	}
	local, err := waitLocal()
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if plan.Local {
		res.Swarms = append(res.Swarms, local.swarm)
		res.Results = append(res.Results, local.results...)
		res.Summary.Dropped += local.dropped
	}
	for _, s := range plan.Partitioned {
		sr := SwarmResult{Swarm: s.Prefix, Status: SwarmPartitioned, Code: SwarmPartitioned,
			Expected: s.Nodes, Error: partitionedText(s, time.Now())}
		res.Swarms = append(res.Swarms, sr)
	}
	if col != nil {
		swarms, nodes, dropped := col.results(req.Timeout)
		res.Swarms = append(res.Swarms, swarms...)
		res.Results = append(res.Results, nodes...)
		res.Summary.Dropped += dropped
	}
	sort.Slice(res.Swarms, func(i, j int) bool { return subjects.CompareText(res.Swarms[i].Swarm, res.Swarms[j].Swarm) < 0 })
	sortResults(res.Results)
	if plan.Logical {
		res.Results = []NodeResult{logicalNode(plan.Scope.String(), res)}
	}
	res.Summary = summarize(res.Results, res.Swarms, res.Summary.Dropped)
	return res, nil
}

func partitionedText(s SwarmState, now time.Time) string {
	if s.LastHeard.IsZero() {
		return "partitioned: never heard in the federated directory"
	}
	return fmt.Sprintf("partitioned: last heard %s ago (link %s)", now.Sub(s.LastHeard).Round(time.Millisecond), s.Link)
}

// localPart is the local swarm's part of a federated gather.
type localPart struct {
	swarm   SwarmResult
	results []NodeResult
	dropped int
}

// startLocal gathers the local swarm's part in-swarm, when the plan has
// one, on its own goroutine; the returned function waits for it.
func startLocal(ctx context.Context, c *mesh.Client, req Request, sel subjects.Selector, plan Plan, report func(NodeResult)) func() (localPart, error) {
	if !plan.Local {
		return func() (localPart, error) { return localPart{}, nil }
	}
	var set []wire.Member
	for _, m := range mesh.Resolve(sel, req.Members) {
		if cv, err := subjects.Parse(m.Chevron); err == nil && cv.HasPrefix(req.Local) {
			set = append(set, m)
		}
	}
	swarm := req.Local.String()
	if len(set) == 0 {
		return func() (localPart, error) {
			return localPart{swarm: SwarmResult{Swarm: swarm, Status: SwarmLocal}}, nil
		}
	}
	var g mesh.GatherResult
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		g, err = c.GatherSet(ctx, req.GatherRequest, sel, set, func(r mesh.NodeResult) {
			report(NodeResult{NodeResult: r, Swarm: swarm})
		})
	}()
	return func() (localPart, error) {
		<-done
		if err != nil {
			return localPart{}, fmt.Errorf("local swarm %s: %w", swarm, err)
		}
		lp := localPart{swarm: localSwarm(req.Local, set, g), dropped: g.Summary.Dropped}
		for _, r := range g.Results {
			lp.results = append(lp.results, NodeResult{NodeResult: r, Swarm: swarm})
		}
		return lp, nil
	}
}

// localSwarm accounts for the local part like a done would.
func localSwarm(local subjects.Chevron, set []wire.Member, g mesh.GatherResult) SwarmResult {
	sr := SwarmResult{Swarm: local.String(), Status: SwarmLocal, Expected: len(set)}
	for _, r := range g.Results {
		switch r.Status {
		case mesh.StatusOffline:
			sr.Offline = append(sr.Offline, r.Chevron)
		case mesh.StatusTimeout:
			sr.Timeout = append(sr.Timeout, r.Chevron)
		default:
			sr.Answered++
		}
	}
	return sr
}

// publishFed sends the one federated publish and returns the collector of
// its answers.
func publishFed(c *mesh.Client, req Request, sel subjects.Selector, plan Plan, report func(NodeResult)) (*collector, error) {
	subj, err := subjects.FedCmd(plan.Scope, req.Verb)
	if err != nil {
		return nil, err
	}
	id := nuid.Next()
	body, err := json.Marshal(wire.Request{Verb: req.Verb, Args: req.Args, ID: id, From: req.From,
		TimeoutMs: req.Timeout.Milliseconds(), Input: req.Input})
	if err != nil {
		return nil, err
	}
	nc := c.Conn()
	col := &collector{id: id, swarms: map[string]*swarmAnswer{}, verify: trust.NewVerifier(0), report: report, nodeKey: req.NodeKey}
	for _, p := range plan.Remote {
		col.swarms[p.String()] = &swarmAnswer{prefix: p, nodes: map[string]*NodeResult{}, keys: map[string]string{}}
	}
	for _, st := range req.Swarms {
		if a := col.swarms[st.Prefix]; a != nil && st.Leader != "" && st.LeaderKey != "" {
			a.leader, a.leaderKey = st.Leader, st.LeaderKey
		}
	}
	inbox := nc.NewInbox()
	if col.sub, err = nc.SubscribeSync(inbox); err != nil {
		return nil, err
	}
	// Bounded by bytes, not by a message count: a swarm of thousands of
	// nodes answers at once. Past the bound messages are dropped by the
	// client and their nodes end as timeouts.
	_ = col.sub.SetPendingLimits(-1, maxPending)
	m := &nats.Msg{Subject: subj, Reply: inbox, Data: body, Header: nats.Header{}}
	if plan.Local {
		m.Header.Set(wire.HdrFedExclude, subjects.FormatFedExclude(req.Local))
	}
	if pfx, whole := sel.Prefix(); !whole || pfx != plan.Scope {
		m.Header.Set(wire.HdrFedSelector, sel.String())
	}
	if req.Approval != "" {
		m.Header.Set(wire.HdrApproval, req.Approval)
	}
	if err := c.Signer().Fresh(); err != nil {
		col.close()
		return nil, err
	}
	if err := c.Signer().SignMsg(m); err != nil {
		col.close()
		return nil, fmt.Errorf("sign %s: %w", subj, err)
	}
	col.sent = time.Now()
	if err := nc.PublishMsg(m); err != nil {
		col.close()
		return nil, fmt.Errorf("publish %s: %w", subj, err)
	}
	if err := nc.Flush(); err != nil {
		col.close()
		return nil, fmt.Errorf("flush: %w", err)
	}
	return col, nil
}

// logicalNode folds a whole swarm's answer into one result.
func logicalNode(swarm string, res Result) NodeResult {
	var sr SwarmResult
	for _, s := range res.Swarms {
		if s.Swarm == swarm {
			sr = s
		}
	}
	inner := summarize(res.Results, []SwarmResult{sr}, 0)
	out := NodeResult{NodeResult: mesh.NodeResult{Chevron: swarm, Name: "swarm " + swarm}, Swarm: swarm}
	switch {
	case sr.Status == SwarmPartitioned:
		out.Status, out.Error, out.Code = mesh.StatusOffline, sr.Error, SwarmPartitioned
	case sr.Status == SwarmIncomplete:
		out.Status, out.Error, out.Code = mesh.StatusTimeout, sr.Error, SwarmIncomplete
	case sr.Status == SwarmRefused && sr.Code == wire.CodeDenied:
		out.Status, out.Error, out.Code = mesh.StatusDenied, sr.Error, sr.Code
	case sr.Status == SwarmRefused:
		out.Status, out.Error, out.Code = mesh.StatusError, sr.Error, sr.Code
	case inner.Total > 0 && inner.OK == inner.Total:
		out.Status = mesh.StatusOK
	default:
		out.Status, out.Error, out.Code = mesh.StatusError, "not every node was ok: "+inner.Line, "partial"
	}
	out.Text = inner.Line
	var maxMs float64
	for _, r := range res.Results {
		maxMs = math.Max(maxMs, r.Ms)
	}
	out.Ms = maxMs
	out.Output, _ = json.Marshal(struct {
		Swarm   string       `json:"swarm"`
		Summary Summary      `json:"summary"`
		Results []NodeResult `json:"results"`
	}{swarm, inner, res.Results})
	return out
}

func sortResults(rs []NodeResult) {
	sort.SliceStable(rs, func(i, j int) bool { return subjects.CompareText(rs[i].Chevron, rs[j].Chevron) < 0 })
}

// summarize counts node statuses (mesh.Summarize) and swarm statuses.
func summarize(rs []NodeResult, swarms []SwarmResult, dropped int) Summary {
	nodes := make([]mesh.NodeResult, len(rs))
	for i, r := range rs {
		nodes[i] = r.NodeResult
	}
	s := Summary{Summary: mesh.Summarize(nodes), Swarms: len(swarms)}
	s.Dropped = dropped
	for _, sw := range swarms {
		switch sw.Status {
		case SwarmPartitioned:
			s.Partitioned++
		case SwarmIncomplete:
			s.Incomplete++
		case SwarmRefused:
			s.Refused++
		}
	}
	parts := []string{fmt.Sprintf("%d swarms", s.Swarms)}
	for _, p := range []struct {
		n    int
		name string
	}{{s.Partitioned, "partitioned"}, {s.Incomplete, "incomplete"}, {s.Refused, "refused"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	s.Line = s.Counts() + " · " + strings.Join(parts, ", ")
	if s.OK+s.Error+s.Denied > 0 {
		s.Line += s.Times()
	}
	if dropped > 0 {
		s.Line += fmt.Sprintf(" · %d messages dropped (bad signature, not the key the ambassador listed, or not this request's)", dropped)
	}
	return s
}
