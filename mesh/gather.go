package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Per-node statuses of a gather.
const (
	StatusOK      = wire.StatusOK
	StatusError   = wire.StatusError
	StatusDenied  = wire.StatusDenied
	StatusTimeout = "timeout" // expected, did not answer in time
	StatusOffline = "offline" // in the set but not live in the registry: not sent to
)

// MaxReply is the largest command reply a client accepts (the nodes'
// max_payload).
const MaxReply = 8 << 20

// ErrNoMatch is returned when a selector matches no node; the message names
// the selector and what it was matched against.
var ErrNoMatch = errors.New("no nodes matched")

// GatherRequest is one command for the nodes a selector names.
type GatherRequest struct {
	Selector string          // node reference: chevron prefix, name, all, or filters
	Verb     string          // a catalogue verb
	Args     json.RawMessage // the verb's JSON arguments
	Input    json.RawMessage // structured input from an earlier step (compositions)
	Timeout  time.Duration   // how long to wait for each batch; default 10 s
	Batch    int             // send to this many nodes at a time; 0: all at once
	Limit    int             // at most this many nodes (in chevron order); 0: no cap
	From     string          // the requester's display name
	Approval string          // rn_approvals id for a dangerous command (header Rn-Approval)
}

// NodeResult is one node's part of a gather.
type NodeResult struct {
	Chevron    string          `json:"chevron"`
	Name       string          `json:"name"`
	Status     string          `json:"status"`
	Ms         float64         `json:"ms"` // round trip seen by the client
	Output     json.RawMessage `json:"output,omitempty"`
	Text       string          `json:"text,omitempty"`
	Error      string          `json:"error,omitempty"`
	Code       string          `json:"code,omitempty"`
	Unexpected bool            `json:"unexpected,omitempty"` // answered a prefix publish without being in the expected set
}

// Summary counts a gather's outcome.
type Summary struct {
	Total   int `json:"total"`
	OK      int `json:"ok"`
	Error   int `json:"error"`
	Timeout int `json:"timeout"`
	Offline int `json:"offline"`
	Denied  int `json:"denied"`
	// Dropped counts replies that did not count: a bad signature, a key
	// other than the one the verified registry gives the chevron they name.
	Dropped int     `json:"dropped"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Line    string  `json:"line"`
}

// GatherResult is every expected node's result, in chevron order, and the summary.
type GatherResult struct {
	Selector string       `json:"selector"`
	Verb     string       `json:"verb"`
	Results  []NodeResult `json:"results"`
	Summary  Summary      `json:"summary"`
}

// OK reports whether every node answered ok.
func (r GatherResult) OK() bool { return r.Summary.OK == r.Summary.Total }

// Resolve returns the registry members a selector names, in chevron order.
func Resolve(sel subjects.Selector, members []wire.Member) []wire.Member {
	var out []wire.Member
	for _, m := range members {
		c, err := subjects.Parse(m.Chevron)
		if err != nil {
			continue
		}
		// Trust is the tier the answering node gives the member as the swarm
		// judges it (wire.Member.Tier), so trust>=N selects on it.
		t := subjects.Target{Chevron: c, Name: m.Name, Caps: m.Caps, Tags: m.Tags, OS: m.OS, Load: m.Load, Trust: m.Tier}
		if sel.Match(t) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return subjects.CompareText(out[i].Chevron, out[j].Chevron) < 0 })
	return out
}

func noMatch(sel string, members []wire.Member) error {
	live, caps, names := 0, map[string]bool{}, []string{}
	for _, m := range members {
		if m.State != wire.StateOffline {
			live++
		}
		for _, c := range m.Caps {
			caps[c] = true
		}
		if len(names) < 8 {
			names = append(names, m.Chevron+" "+m.Name)
		}
	}
	var cl []string
	for c := range caps {
		cl = append(cl, c)
	}
	sort.Strings(cl)
	return fmt.Errorf("%w %q among %d nodes (%d live; nodes: %s; caps: %s)", ErrNoMatch, sel, len(members), live,
		strings.Join(names, ", "), strings.Join(cl, ","))
}

// Gather resolves req.Selector against the live registry of the node the
// client is connected to, sends the command (once to the prefix subject when
// the set is a whole prefix, else to each node), and waits until every
// expected node answered or the batch's timeout passed. progress, if not
// nil, sees each result as it is settled.
func (c *Client) Gather(ctx context.Context, req GatherRequest, progress func(NodeResult)) (GatherResult, error) {
	res := GatherResult{Selector: req.Selector, Verb: req.Verb}
	sel, err := subjects.ParseSelector(req.Selector)
	if err != nil {
		return res, err
	}
	if err := subjects.ValidToken(req.Verb); err != nil {
		return res, fmt.Errorf("verb: %w", err)
	}
	if req.Timeout <= 0 {
		req.Timeout = 10 * time.Second
	}
	if req.Batch < 0 || req.Limit < 0 {
		return res, fmt.Errorf("--batch %d / --limit %d: must not be negative", req.Batch, req.Limit)
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return res, err
	}
	set := Resolve(sel, members)
	if len(set) == 0 {
		return res, noMatch(req.Selector, members)
	}
	return c.GatherSet(ctx, req, sel, set, progress)
}

// GatherSet sends req to an already resolved set (what Gather does after
// asking the registry); sel decides whether one prefix publish reaches the
// whole set. Programs that keep their own view of the swarm call it directly.
// With verification on, a reply for a member counts only when signed by the
// member's Pubkey (any valid signature when the set gives none), and a
// reply naming a chevron outside the set only when signed by the key the
// verified registry gives that chevron; the rest are counted in
// Summary.Dropped.
func (c *Client) GatherSet(ctx context.Context, req GatherRequest, sel subjects.Selector, set []wire.Member, progress func(NodeResult)) (GatherResult, error) {
	res := GatherResult{Selector: req.Selector, Verb: req.Verb}
	if req.Timeout <= 0 {
		req.Timeout = 10 * time.Second
	}
	if req.Limit > 0 && len(set) > req.Limit {
		set = set[:req.Limit]
	}
	results := map[string]*NodeResult{}
	var order []string
	var send []wire.Member
	for _, m := range set {
		r := &NodeResult{Chevron: m.Chevron, Name: m.Name, Status: StatusTimeout}
		results[m.Chevron] = r
		order = append(order, m.Chevron)
		if m.State == wire.StateOffline {
			r.Status, r.Error = StatusOffline, "not live in the registry"
			if progress != nil {
				progress(*r)
			}
			continue
		}
		send = append(send, m)
	}

	if c.signer != nil {
		if err := c.signer.Fresh(); err != nil {
			return res, err
		}
	}
	body, err := json.Marshal(wire.Request{Verb: req.Verb, Args: req.Args, ID: nuid.Next(), From: req.From,
		TimeoutMs: req.Timeout.Milliseconds(), Input: req.Input})
	if err != nil {
		return res, err
	}
	inbox := c.nc.NewInbox()
	ch := make(chan *nats.Msg, len(send)+64)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return res, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	// chevron → the key its replies must be signed with. A member given
	// without one (a program's own view, a stand-in) is the caller's word:
	// any valid signature counts for it.
	keys := make(map[string]string, len(set))
	for _, m := range set {
		keys[m.Chevron] = m.Pubkey
	}
	in, stopVerify := c.verifyReplies(ctx, ch, len(send))
	defer stopVerify()

	prefix, whole := sel.Prefix()
	oneShot := whole && req.Limit == 0 && (req.Batch == 0 || req.Batch >= len(send)) && len(send) == len(set)
	batch := len(send)
	if req.Batch > 0 && req.Batch < batch {
		batch = req.Batch
	}
	sent := map[string]time.Time{}
	outstanding := map[string]bool{} // expected nodes of the current batch not yet settled
	dropped := 0
	var offList []offListReply // off-list replies waiting for the registry's word
	record := func(wr wire.Result, ms float64) {
		r, ok := results[wr.Chevron]
		if !ok {
			// A node under the prefix the registry view did not list: it
			// ran the command, so it is reported.
			r = &NodeResult{Chevron: wr.Chevron, Name: wr.Name, Unexpected: true}
			results[wr.Chevron] = r
			order = append(order, wr.Chevron)
		} else if r.Status != StatusTimeout {
			return // a duplicate
		}
		delete(outstanding, wr.Chevron)
		r.Status = wr.Status
		r.Output, r.Text = wr.Output, wr.Text
		if wr.Error != nil {
			r.Error, r.Code = wr.Error.Msg, wr.Error.Code
		}
		r.Ms = ms
		if progress != nil {
			progress(*r)
		}
	}
	settle := func(a arrived) {
		m := a.msg
		if len(m.Data) > MaxReply {
			return
		}
		var wr wire.Result
		if json.Unmarshal(m.Data, &wr) != nil || wr.Chevron == "" {
			return
		}
		want, listed := keys[wr.Chevron]
		if a.err == nil && c.verifier != nil && want != "" && a.from != want {
			a.err = fmt.Errorf("reply for %s signed by %s, but %s registered key %q", wr.Chevron, a.from, wr.Chevron, want)
		}
		if a.err != nil {
			// A reply whose signature fails cannot be told from a forgery:
			// it settles nothing, so the node ends as timeout unless its
			// genuine reply arrives.
			c.badReplies.Add(1)
			dropped++
			return
		}
		var ms float64
		if t, ok := sent[wr.Chevron]; ok {
			ms = float64(time.Since(t).Microseconds()) / 1000
		} else if t, ok := sent[""]; ok {
			ms = float64(time.Since(t).Microseconds()) / 1000
		}
		if !listed && c.verifier != nil {
			// Off the list: any valid signature is not enough. It counts
			// only when signed by the key the verified registry gives the
			// chevron it names, checked once the batches are done.
			if len(offList) < maxOffList {
				offList = append(offList, offListReply{wr: wr, from: a.from, ms: ms})
			} else {
				c.badReplies.Add(1)
				dropped++
			}
			return
		}
		record(wr, ms)
	}
	for start := 0; start < len(send); start += batch {
		part := send[start:min(start+batch, len(send))]
		for _, m := range part {
			if results[m.Chevron].Status == StatusTimeout {
				outstanding[m.Chevron] = true
			}
		}
		if oneShot {
			subj, err := subjects.Cmd(prefix, req.Verb)
			if err != nil {
				return res, err
			}
			sent[""] = time.Now()
			msg, err := c.command(subj, inbox, body, req)
			if err != nil {
				return res, err
			}
			if err := c.nc.PublishMsg(msg); err != nil {
				return res, fmt.Errorf("publish %s: %w", subj, err)
			}
		} else {
			for _, m := range part {
				cv, err := subjects.Parse(m.Chevron)
				if err != nil {
					continue
				}
				subj, err := subjects.Cmd(cv, req.Verb)
				if err != nil {
					return res, err
				}
				sent[m.Chevron] = time.Now()
				msg, err := c.command(subj, inbox, body, req)
				if err != nil {
					return res, err
				}
				if err := c.nc.PublishMsg(msg); err != nil {
					return res, fmt.Errorf("publish %s: %w", subj, err)
				}
			}
		}
		if err := c.nc.Flush(); err != nil {
			return res, fmt.Errorf("flush: %w", err)
		}
		deadline := time.NewTimer(req.Timeout)
	collect:
		for len(outstanding) > 0 {
			select {
			case a := <-in:
				settle(a)
			case <-deadline.C:
				break collect
			case <-ctx.Done():
				deadline.Stop()
				return res, ctx.Err()
			}
		}
		deadline.Stop()
		clear(outstanding)
		// Answers already queued (e.g. unexpected nodes) are taken too.
		for drained := false; !drained; {
			select {
			case a := <-in:
				settle(a)
			default:
				drained = true
			}
		}
		if progress != nil {
			for _, m := range part {
				if r := results[m.Chevron]; r.Status == StatusTimeout {
					r.Error = fmt.Sprintf("no answer within %v", req.Timeout)
					progress(*r)
				}
			}
		}
	}
	if len(offList) > 0 {
		reg := map[string]string{}
		if err := c.registryKeys(ctx, reg); err != nil {
			return res, fmt.Errorf("check %d off-list replies: %w", len(offList), err)
		}
		for _, o := range offList {
			if want := reg[o.wr.Chevron]; want == "" || o.from != want {
				c.badReplies.Add(1)
				dropped++
				continue
			}
			record(o.wr, o.ms)
		}
	}
	for _, chev := range order {
		r := results[chev]
		if r.Status == StatusTimeout && r.Error == "" {
			r.Error = fmt.Sprintf("no answer within %v", req.Timeout)
		}
		res.Results = append(res.Results, *r)
	}
	sortByChevron(res.Results)
	res.Summary = Summarize(res.Results)
	if dropped > 0 {
		res.Summary.Dropped = dropped
		res.Summary.Line += fmt.Sprintf(" · %d replies dropped (bad signature, or not the registered key of the node they name)", dropped)
	}
	return res, nil
}

// maxOffList bounds the off-list replies one gather keeps for checking.
const maxOffList = 4096

// offListReply is a verified reply naming a chevron outside the expected
// set, with the round trip it took.
type offListReply struct {
	wr   wire.Result
	from string
	ms   float64
}

// registryKeys fills keys (chevron → registered key) from the verified
// registry of the node the client is connected to.
func (c *Client) registryKeys(ctx context.Context, keys map[string]string) error {
	members, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		keys[m.Chevron] = m.Pubkey
	}
	return nil
}

// sortByChevron orders results by chevron, parsing each once.
func sortByChevron(rs []NodeResult) {
	keys := make(map[string]subjects.Chevron, len(rs))
	for _, r := range rs {
		keys[r.Chevron], _ = subjects.Parse(r.Chevron)
	}
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := keys[rs[i].Chevron], keys[rs[j].Chevron]
		if a.IsZero() || b.IsZero() {
			return rs[i].Chevron < rs[j].Chevron
		}
		return a.Compare(b) < 0
	})
}

// Summarize counts results by status, with the round trips' p50 and p99
// over the nodes that answered; Line says it for people.
func Summarize(rs []NodeResult) Summary {
	s := Summary{Total: len(rs)}
	var ms []float64
	for _, r := range rs {
		switch r.Status {
		case StatusOK:
			s.OK++
		case StatusError:
			s.Error++
		case StatusTimeout:
			s.Timeout++
		case StatusOffline:
			s.Offline++
		case StatusDenied:
			s.Denied++
		}
		if r.Status == StatusOK || r.Status == StatusError || r.Status == StatusDenied {
			ms = append(ms, r.Ms)
		}
	}
	sort.Float64s(ms)
	s.P50, s.P99 = percentile(ms, 0.50), percentile(ms, 0.99)
	s.Line = s.Counts()
	if len(ms) > 0 {
		s.Line += s.Times()
	}
	return s
}

// Counts says the counts: "3 ok, 1 timeout of 4".
func (s Summary) Counts() string {
	parts := []string{fmt.Sprintf("%d ok", s.OK)}
	for _, p := range []struct {
		n    int
		name string
	}{{s.Error, "error"}, {s.Denied, "denied"}, {s.Timeout, "timeout"}, {s.Offline, "offline"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.name))
		}
	}
	return fmt.Sprintf("%s of %d", strings.Join(parts, ", "), s.Total)
}

// Times says the round trips: " · p50 1.2 ms p99 3.4 ms".
func (s Summary) Times() string {
	return fmt.Sprintf(" · p50 %s p99 %s", fmtMs(s.P50), fmtMs(s.P99))
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func fmtMs(ms float64) string {
	if ms < 10 {
		return fmt.Sprintf("%.1f ms", ms)
	}
	return fmt.Sprintf("%.0f ms", ms)
}

// command builds the message for one publish of req, signed when the
// client has a signer.
func (c *Client) command(subj, inbox string, body []byte, req GatherRequest) (*nats.Msg, error) {
	m := &nats.Msg{Subject: subj, Reply: inbox, Data: body}
	if req.Approval != "" {
		m.Header = nats.Header{wire.HdrApproval: []string{req.Approval}}
	}
	if c.signer != nil {
		if err := c.signer.SignMsg(m); err != nil {
			return nil, fmt.Errorf("sign %s: %w", subj, err)
		}
	}
	return m, nil
}

// arrived is a reply after its signature check: from is its Rn-From, err
// why it does not verify.
type arrived struct {
	msg  *nats.Msg
	from string
	err  error
}

// verifyReplies checks replies' HCTH signatures as they arrive, on up to
// GOMAXPROCS goroutines, so verifying overlaps with waiting: verifying a
// thousand replies one after another would cost ~45 ms of one core. Without
// a verifier replies pass through unchecked. The goroutines end with ctx or
// when stop is called (stop waits for them).
func (c *Client) verifyReplies(ctx context.Context, ch <-chan *nats.Msg, expected int) (<-chan arrived, func()) {
	out := make(chan arrived, expected+64)
	workers := 1
	if c.verifier != nil {
		workers = min(runtime.GOMAXPROCS(0), max(expected/8, 1))
	}
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	end := func() { once.Do(func() { close(done) }) }
	stopAfter := context.AfterFunc(ctx, end)
	stop := func() {
		stopAfter()
		end()
		wg.Wait()
	}
	wg.Add(workers)
	for i := 0; i < workers; i++ {
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				case m := <-ch:
					a := arrived{msg: m}
					if c.verifier != nil {
						a.from, a.err = c.verifyReply(m)
					}
					select {
					case out <- a:
					case <-done:
						return
					}
				}
			}
		}()
	}
	return out, stop
}

// verifyReply checks one reply's signature and returns its signer.
func (c *Client) verifyReply(m *nats.Msg) (string, error) {
	h, err := ParseSigned(m)
	if err != nil {
		return "", err
	}
	if err := c.verifier.Verify(h, m.Subject, m.Data); err != nil {
		return h.From, err
	}
	return h.From, nil
}

// BadReplies counts replies dropped because their signature did not verify
// or was not the answering node's registered key.
func (c *Client) BadReplies() uint64 { return c.badReplies.Load() }
