//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The chaos recorder's history and the checker that judges it. The
// checker is pure: it takes a history and returns the violations, so it is
// tested on small hand-made histories (chaos_check_test.go) without root.

// history is everything a chaos run saw. Nodes are named by their name in
// views and faults and by their chevron in commands and audits (Chevrons
// maps one to the other).
type history struct {
	mu sync.Mutex // guards every field while the run records

	Began    time.Time         `json:"began"`
	Chevrons map[string]string `json:"chevrons"` // node name → chevron
	Bounds   checkBounds       `json:"bounds"`

	Sent    []sentCmd    `json:"sent"`
	Replies []replyRec   `json:"replies"`
	Views   []viewRec    `json:"views"`
	Faults  []faultRec   `json:"faults"`
	Live    []chaosAudit `json:"live_audits"`   // seen live, by watcher
	Watched []watchSpan  `json:"watched"`       // when each watcher could see records live
	Stored  []chaosAudit `json:"stored_audits"` // read from the durable stream at the end
	Notes   []string     `json:"notes,omitempty"`
	Stream  string       `json:"stream,omitempty"` // the stream the stored audits came from
	Figures []figureRec  `json:"figures,omitempty"`
}

// checkBounds are the checker's tolerances, with why in chaosBounds.
type checkBounds struct {
	// Missing is how long a live, connected node may be missing (offline
	// or not listed) from another live node's view: the failure
	// detector's OfflineAfter plus slack.
	Missing time.Duration `json:"missing"`
	// Heal is how long after a fault is undone every node must agree
	// again.
	Heal time.Duration `json:"heal"`
}

// sentCmd is one command a load client sent.
type sentCmd struct {
	ID     string    `json:"id"`
	Client string    `json:"client"`
	At     time.Time `json:"at"`
	Target string    `json:"target"` // the subject
	Err    string    `json:"err,omitempty"`
	Via    string    `json:"via,omitempty"` // the address of the node the client was connected to
}

// replyRec is one reply a load client received.
type replyRec struct {
	ID      string    `json:"id"`
	Client  string    `json:"client"`
	Chevron string    `json:"chevron"`
	Status  string    `json:"status"`
	Code    string    `json:"code,omitempty"`
	Msg     string    `json:"msg,omitempty"`
	At      time.Time `json:"at"`
}

// viewRec is one node's own view, observed through the CLI within
// [Start, End].
type viewRec struct {
	Node       string            `json:"node"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Err        string            `json:"err,omitempty"`
	Leader     string            `json:"leader,omitempty"` // the lease holder's chevron (status)
	Token      uint64            `json:"token,omitempty"`
	Claims     bool              `json:"claims,omitempty"` // it claims the lease itself
	States     map[string]string `json:"states,omitempty"` // node name → state
	Survives   *bool             `json:"survives_loss,omitempty"`
	MetaLeader string            `json:"meta_leader,omitempty"`
}

// faultRec is one fault: injected at At on Node, undone at Undone, and
// the swarm agreeing again (healed) at Healed. A zero Undone or Healed
// means it never was.
type faultRec struct {
	Kind   string    `json:"kind"`
	Node   string    `json:"node"`
	At     time.Time `json:"at"`
	Undone time.Time `json:"undone,omitzero"`
	Healed time.Time `json:"healed,omitzero"`
	// Others are more nodes the fault impairs (none for the faults so
	// far: each hits one node).
	Others []string `json:"others,omitempty"`
}

// watchSpan is a stretch of time in which a watcher was connected and
// subscribed: it saw every audit record published then.
type watchSpan struct {
	Watcher string    `json:"watcher"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// chaosAudit is one audit record: published by the node at Chevron for
// command ID, seen by Watcher (live) or at stream sequence Seq (stored).
// MsgID is its Nats-Msg-Id: copies of one record (a publish retried until
// the stream acked it) share it.
type chaosAudit struct {
	ID      string    `json:"id"`
	MsgID   string    `json:"msg_id,omitempty"`
	Chevron string    `json:"chevron"`
	Status  string    `json:"status"`
	Watcher string    `json:"watcher,omitempty"`
	Seq     uint64    `json:"seq,omitempty"`
	At      time.Time `json:"at"`
}

// figureRec is a figure the run measured, kept with the history.
type figureRec struct {
	What string        `json:"what"`
	D    time.Duration `json:"d"`
}

func (h *history) addView(v viewRec) {
	h.mu.Lock()
	h.Views = append(h.Views, v)
	h.mu.Unlock()
}

// fault records a fault injected now on node and returns its index.
func (h *history) fault(kind, node string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Faults = append(h.Faults, faultRec{Kind: kind, Node: node, At: time.Now()})
	return len(h.Faults) - 1
}

func (h *history) undone(i int) {
	h.mu.Lock()
	h.Faults[i].Undone = time.Now()
	h.mu.Unlock()
}

func (h *history) healed(i int, at time.Time) {
	h.mu.Lock()
	h.Faults[i].Healed = at
	h.mu.Unlock()
}

func (h *history) note(format string, args ...any) {
	h.mu.Lock()
	h.Notes = append(h.Notes, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// write saves the history as JSON.
func (h *history) write(path string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// violation is one broken promise, with the evidence.
type violation struct {
	Check string    // lost, duplicate, two-leaders, token, missing, heal
	At    time.Time // when it was seen (for ordering: the first is named)
	Msg   string
}

func (v violation) String() string { return v.Check + ": " + v.Msg }

// check judges a history. It returns every violation, earliest first.
func check(h *history) []violation {
	var out []violation
	out = append(out, checkCommands(h)...)
	out = append(out, checkLeaders(h)...)
	out = append(out, checkTokens(h)...)
	out = append(out, checkMissing(h)...)
	out = append(out, checkHeals(h)...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// idNode is one command on one node.
type idNode struct{ id, chev string }

// auditCounts counts a node's audit records per command: live records per
// watcher (each watcher sees every record once, and copies of one record,
// a publish retried, share its Nats-Msg-Id and count once), the maximum
// over watchers; stored records once each. A record seen live and stored
// counts once: the result is the larger of the two counts.
func auditCounts(h *history) map[idNode]int {
	type copyKey struct{ watcher, msgID string }
	seen := map[copyKey]bool{}
	live := map[string]map[idNode]int{}
	for _, a := range h.Live {
		if a.ID == "" {
			continue
		}
		if a.MsgID != "" {
			k := copyKey{a.Watcher, a.MsgID}
			if seen[k] {
				continue
			}
			seen[k] = true
		}
		if live[a.Watcher] == nil {
			live[a.Watcher] = map[idNode]int{}
		}
		live[a.Watcher][idNode{a.ID, a.Chevron}]++
	}
	out := map[idNode]int{}
	for _, m := range live {
		for k, n := range m {
			out[k] = max(out[k], n)
		}
	}
	stored := map[idNode]int{}
	for _, a := range h.Stored {
		if a.ID != "" {
			stored[idNode{a.ID, a.Chevron}]++
		}
	}
	for k, n := range stored {
		out[k] = max(out[k], n)
	}
	return out
}

// liveWindow is the stretch around a reply in which a watcher must have
// been connected for the record's absence from the live view to count:
// the record is published as the command finishes, around its reply, and
// may be late under load.
const (
	liveBefore = time.Second
	liveAfter  = 5 * time.Second
)

// watchedAt reports whether some watcher was connected throughout
// [at-liveBefore, at+liveAfter].
func watchedAt(h *history, at time.Time) bool {
	for _, w := range h.Watched {
		if !w.From.After(at.Add(-liveBefore)) && !w.To.Before(at.Add(liveAfter)) {
			return true
		}
	}
	return false
}

// checkCommands: every (command, node) answered ok has that node's audit
// record, and none has more than one. When the durable stream was read,
// a record in neither it nor the live view is lost; without it, only the
// replies some watcher was connected around count (unverifiable tells how
// many did not).
func checkCommands(h *history) []violation {
	var out []violation
	audits := auditCounts(h)
	okAt := map[idNode]time.Time{}
	for _, r := range h.Replies {
		if r.Status == "ok" {
			k := idNode{r.ID, r.Chevron}
			if _, seen := okAt[k]; !seen {
				okAt[k] = r.At
			}
		}
	}
	for k, at := range okAt {
		if audits[k] == 0 && (h.Stream != "" || watchedAt(h, at)) {
			out = append(out, violation{"lost", at, fmt.Sprintf(
				"command %s answered ok by chevron %s at %s, but no audit record of that node (live or stored)",
				k.id, k.chev, rel(h, at))})
		}
	}
	firstAudit := map[idNode]time.Time{}
	for _, a := range append(slices.Clone(h.Live), h.Stored...) {
		k := idNode{a.ID, a.Chevron}
		if t, ok := firstAudit[k]; !ok || a.At.Before(t) {
			firstAudit[k] = a.At
		}
	}
	for k, n := range audits {
		if n > 1 {
			out = append(out, violation{"duplicate", firstAudit[k], fmt.Sprintf(
				"command %s has %d audit records of chevron %s: it ran more than once", k.id, n, k.chev)})
		}
	}
	// Two replies from one node to one command: it ran twice.
	replies := map[idNode]int{}
	for _, r := range h.Replies {
		replies[idNode{r.ID, r.Chevron}]++
	}
	for k, n := range replies {
		if n > 1 {
			out = append(out, violation{"duplicate", okAt[k], fmt.Sprintf(
				"command %s got %d replies from chevron %s", k.id, n, k.chev)})
		}
	}
	return out
}

// claimRec is one observed self-claim of the lease.
type claimRec struct {
	node       string
	token      uint64
	start, end time.Time
}

// checkLeaders: never two nodes acting as leader at once. A claim is
// observed within [start, end]; the lease hands over only after the old
// holder stopped (LeaseGive after its last acknowledged renewal, before the
// key's TTL frees it), so a node claiming the lease under an older token
// in an observation that began after another node's claim under a newer
// token had ended acted as leader beside its successor, and two nodes
// claiming one token is two holders of one lease.
func checkLeaders(h *history) []violation {
	var out []violation
	var claims []claimRec
	for _, v := range h.Views {
		if v.Err == "" && v.Claims {
			claims = append(claims, claimRec{v.Node, v.Token, v.Start, v.End})
		}
	}
	sort.Slice(claims, func(i, j int) bool { return claims[i].start.Before(claims[j].start) })
	holder := map[uint64]claimRec{}
	for _, c := range claims {
		if o, ok := holder[c.token]; ok && o.node != c.node {
			out = append(out, violation{"two-leaders", c.start, fmt.Sprintf(
				"%s and %s both claim the lease with token %d (%s, %s)", o.node, c.node, c.token,
				rel(h, o.start), rel(h, c.start))})
			continue
		}
		if _, ok := holder[c.token]; !ok {
			holder[c.token] = c
		}
	}
	// Claims by start (a) and by end (b): every b that ended before a
	// began is folded into the highest token each node claimed so far.
	byEnd := slices.Clone(claims)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].end.Before(byEnd[j].end) })
	best := map[string]claimRec{} // node → its highest-token claim ended so far
	j := 0
	for _, a := range claims {
		for ; j < len(byEnd) && byEnd[j].end.Before(a.start); j++ {
			b := byEnd[j]
			if o, ok := best[b.node]; !ok || b.token > o.token {
				best[b.node] = b
			}
		}
		for node, b := range best {
			if node != a.node && b.token > a.token {
				out = append(out, violation{"two-leaders", a.start, fmt.Sprintf(
					"%s claims the lease with token %d at %s–%s, after %s claimed token %d at %s–%s",
					a.node, a.token, rel(h, a.start), rel(h, a.end), b.node, b.token, rel(h, b.start), rel(h, b.end))})
				break
			}
		}
	}
	return out
}

// checkTokens: the fencing token a node shows never goes down, and one
// token always names one holder.
func checkTokens(h *history) []violation {
	var out []violation
	views := slices.Clone(h.Views)
	sort.SliceStable(views, func(i, j int) bool { return views[i].Start.Before(views[j].Start) })
	last := map[string]viewRec{}
	holderOf := map[uint64]string{}
	wentDown := map[string]bool{} // nodes reported: the first time tells
	for _, v := range views {
		if v.Err != "" || v.Token == 0 {
			continue
		}
		if p, ok := last[v.Node]; ok && v.Token < p.Token && p.End.Before(v.Start) && !wentDown[v.Node] {
			wentDown[v.Node] = true
			out = append(out, violation{"token", v.Start, fmt.Sprintf(
				"%s showed token %d at %s, then %d at %s: fencing tokens went down",
				v.Node, p.Token, rel(h, p.End), v.Token, rel(h, v.Start))})
		}
		if p, ok := last[v.Node]; !ok || v.Token >= p.Token {
			last[v.Node] = v
		}
		if v.Leader != "" {
			if o, ok := holderOf[v.Token]; ok && o != v.Leader {
				out = append(out, violation{"token", v.Start, fmt.Sprintf(
					"token %d names holder %s in %s's view at %s, earlier holder %s", v.Token, v.Leader, v.Node, rel(h, v.Start), o)})
			} else if !ok {
				holderOf[v.Token] = v.Leader
			}
		}
	}
	return out
}

// impaired reports whether a fault touched node at any time in [from, to]:
// from its injection until the swarm agreed again after it was undone
// (never, if it never healed).
func impaired(h *history, node string, from, to time.Time) bool {
	for _, f := range h.Faults {
		if f.Node != node && !slices.Contains(f.Others, node) {
			continue
		}
		end := f.Healed
		if end.IsZero() {
			end = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
		}
		if !f.At.After(to) && !end.Before(from) {
			return true
		}
	}
	return false
}

// checkMissing: a node that no fault touched is never shown offline (or
// left out) by another node no fault touched, once it has been untouched
// for Bounds.Missing: an offline mark means no heartbeat for OfflineAfter,
// so one such view of a node that was up and connected all along is a
// false detection, not a slow one.
func checkMissing(h *history) []violation {
	var out []violation
	reported := map[[2]string]bool{}
	for _, v := range h.Views {
		if v.Err != "" || len(v.States) == 0 {
			continue
		}
		if impaired(h, v.Node, v.Start.Add(-h.Bounds.Missing), v.End) {
			continue
		}
		for name := range h.Chevrons {
			if name == v.Node || impaired(h, name, v.Start.Add(-h.Bounds.Missing), v.End) {
				continue
			}
			st, listed := v.States[name]
			if listed && st != offline {
				continue
			}
			if !v.Start.After(h.Began.Add(h.Bounds.Missing)) {
				continue
			}
			k := [2]string{v.Node, name}
			if reported[k] {
				continue
			}
			reported[k] = true
			what := "shows it offline"
			if !listed {
				what = "does not list it"
			}
			out = append(out, violation{"missing", v.Start, fmt.Sprintf(
				"%s %s at %s–%s, though no fault touched either for %s before",
				v.Node, name+" "+what, rel(h, v.Start), rel(h, v.End), h.Bounds.Missing)})
		}
	}
	return out
}

// checkHeals: every fault was undone and the swarm agreed again within
// Bounds.Heal of that.
func checkHeals(h *history) []violation {
	var out []violation
	for _, f := range h.Faults {
		switch {
		case f.Undone.IsZero():
			out = append(out, violation{"heal", f.At, fmt.Sprintf("%s of %s at %s was never undone", f.Kind, f.Node, rel(h, f.At))})
		case f.Healed.IsZero():
			out = append(out, violation{"heal", f.Undone, fmt.Sprintf(
				"%s of %s undone at %s: the nodes never agreed again", f.Kind, f.Node, rel(h, f.Undone))})
		case f.Healed.Sub(f.Undone) > h.Bounds.Heal:
			out = append(out, violation{"heal", f.Healed, fmt.Sprintf(
				"%s of %s undone at %s: the nodes agreed again only after %s (bound %s)", f.Kind, f.Node,
				rel(h, f.Undone), f.Healed.Sub(f.Undone).Round(time.Millisecond), h.Bounds.Heal)})
		}
	}
	return out
}

// unverifiable counts the (command, node) pairs answered ok that have no
// audit record but that no watcher could have seen live, with no durable
// stream read: the checker cannot tell them lost.
func unverifiable(h *history) int {
	if h.Stream != "" {
		return 0
	}
	audits := auditCounts(h)
	n := 0
	seen := map[idNode]bool{}
	for _, r := range h.Replies {
		k := idNode{r.ID, r.Chevron}
		if r.Status != "ok" || seen[k] {
			continue
		}
		seen[k] = true
		if audits[k] == 0 && !watchedAt(h, r.At) {
			n++
		}
	}
	return n
}

// rel renders t as an offset from the run's start.
func rel(h *history, t time.Time) string {
	return fmt.Sprintf("+%.3fs", t.Sub(h.Began).Seconds())
}

// cmdSummary counts a history's commands for the report.
type cmdSummary struct {
	sent, pubErrors, okReplies, errReplies int
	errByCode                              map[string]int
}

func summarize(h *history) cmdSummary {
	s := cmdSummary{errByCode: map[string]int{}}
	for _, c := range h.Sent {
		s.sent++
		if c.Err != "" {
			s.pubErrors++
		}
	}
	for _, r := range h.Replies {
		if r.Status == "ok" {
			s.okReplies++
			continue
		}
		s.errReplies++
		s.errByCode[strings.Trim(r.Status+"/"+r.Code, "/")]++
	}
	return s
}
