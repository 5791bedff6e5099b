package intents

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// DefaultStepTimeout is how long Run waits for a step's nodes.
const DefaultStepTimeout = 10 * time.Second

// DefaultTopN is how many values a gauge step's summary lists per gauge.
const DefaultTopN = 3

// maxNotable bounds the detail lines of one step's summary.
const maxNotable = 20

// maxListed is how many nodes a step's summary names one per line; a step
// over more nodes groups the ones whose verdict is good and names
// maxGroupNamed of them.
const (
	maxListed     = 10
	maxGroupNamed = 5
)

// Step statuses in a Result.
const (
	StepOK      = "ok"      // every node answered ok
	StepFailed  = "failed"  // it ran, and some node did not answer ok
	StepSkipped = "skipped" // its set of nodes was empty; Reason says why
	StepPlanned = "planned" // a dry run: nothing was sent
)

// Kinds of StepEvent.
const (
	EventStart = "start" // the step's nodes are known; Targets lists them
	EventNode  = "node"  // one node's result settled
	EventDone  = "done"  // the step finished (or was skipped); Result is set
)

// ErrApprovalPending is wrapped by an Approve hook's error when it recorded
// an approval request and did not wait for it: the step's nodes stay
// denied, the step fails with the error's text as its Reason, and the steps
// after it are skipped. Run returns no error for it.
var ErrApprovalPending = errors.New("approval pending")

// ErrRun is wrapped by Run's errors that stop a plan midway (the registry
// cannot be read, a publish fails); node failures are not errors.
var ErrRun = errors.New("plan run stopped")

// RunOptions configure Run. The zero value runs the plan for real with
// DefaultStepTimeout per step.
type RunOptions struct {
	Timeout time.Duration // per step (per batch); 0: DefaultStepTimeout
	Batch   int           // send to this many nodes at a time; 0: all at once
	From    string        // the requester's display name in requests
	TopN    int           // gauge values listed per gauge; 0: DefaultTopN
	// DryRun validates the plan and reports what each step would do
	// without reading the registry or sending anything; the client may be
	// nil.
	DryRun bool
	// Approve, if not nil, is called after a step's gather when some of
	// its nodes denied the command for want of an approval
	// (mesh.ApprovalRequired): its result replaces the step's gather. An
	// error wrapping ErrApprovalPending stops the plan there (see
	// ErrApprovalPending); any other error stops Run with ErrRun.
	Approve func(ctx context.Context, req mesh.GatherRequest, res mesh.GatherResult) (mesh.GatherResult, error)
}

// StepEvent reports a running plan's progress. Calls are serialized.
type StepEvent struct {
	Step    string           // the step's id
	Kind    string           // EventStart, EventNode or EventDone
	Targets []string         // EventStart: the chevrons the step goes to
	Node    *mesh.NodeResult // EventNode
	Result  *StepResult      // EventDone
}

// Result is what a plan did.
type Result struct {
	Plan    Plan         `json:"plan"`
	DryRun  bool         `json:"dry_run,omitempty"`
	Steps   []StepResult `json:"steps"`   // in run order
	Summary string       `json:"summary"` // every step's summary, one after another
}

// StepResult is what one step did.
type StepResult struct {
	ID       string            `json:"id"`
	Selector string            `json:"selector"`
	Verb     string            `json:"verb"`
	Status   string            `json:"status"`           // StepOK, StepFailed, StepSkipped or StepPlanned
	Reason   string            `json:"reason,omitempty"` // why it was skipped, or why it did not run (an approval pending)
	Targets  []string          `json:"targets,omitempty"`
	Gather   mesh.GatherResult `json:"gather"`
	Findings []NodeFindings    `json:"findings,omitempty"` // scan: the nodes with findings
	Top      []TopValue        `json:"top,omitempty"`      // gauge: the highest values
	Verdicts []Verdict         `json:"verdicts,omitempty"` // one per node of Gather, in its order
	// Summary is a first line such as "s1 scan on caps=ai: 3 nodes, 2 ok,
	// 1 error, 1 with findings", then indented lines: the top gauge
	// values, then each node with its verdict ("rn3 (3.12.7.3): clean"),
	// or for a step over more than 10 nodes the good ones grouped ("97
	// clean: rn1, rn2, …") and the others one per line; a node's scan
	// findings follow it, one per line.
	Summary string `json:"summary"`
}

// NodeFindings are one node's scan findings.
type NodeFindings struct {
	Chevron  string            `json:"chevron"`
	Name     string            `json:"name"`
	Findings []command.Finding `json:"findings"`
}

// TopValue is one node's value of one gauge, among the highest of a step.
type TopValue struct {
	Gauge   string            `json:"gauge"` // cpu.busy_pct, mem.used_pct, …
	Chevron string            `json:"chevron"`
	Name    string            `json:"name"`
	Value   float64           `json:"value"`
	Unit    string            `json:"unit,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Run validates p and runs its steps in p.Order(): each step resolves its
// selector against the live registry (c.Nodes and mesh.Resolve), keeps the
// nodes its From picks out of the earlier step's results, orders them by
// load and applies Limit, and gathers with mesh GatherSet. A step whose set
// ends empty is skipped with the reason, which is not an error. progress,
// if not nil, sees each step start, each node settle and each step end.
// On an error the Result holds the steps done so far.
func Run(ctx context.Context, c *mesh.Client, cat *command.Catalogue, p Plan, opts RunOptions, progress func(StepEvent)) (Result, error) {
	res := Result{Plan: p, DryRun: opts.DryRun}
	if cat == nil {
		return res, fmt.Errorf("%w: no catalogue", ErrRun)
	}
	if err := p.Validate(cat); err != nil {
		return res, err
	}
	if opts.Timeout < 0 || opts.Batch < 0 || opts.TopN < 0 {
		return res, fmt.Errorf("%w: negative option (timeout %v, batch %d, top %d)", ErrRun, opts.Timeout, opts.Batch, opts.TopN)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultStepTimeout
	}
	if opts.TopN == 0 {
		opts.TopN = DefaultTopN
	}
	if progress == nil {
		progress = func(StepEvent) {}
	}
	if !opts.DryRun && c == nil {
		return res, fmt.Errorf("%w: no mesh client", ErrRun)
	}
	order, err := p.Order()
	if err != nil {
		return res, err
	}
	done := map[string]*StepResult{}
	finish := func() {
		lines := make([]string, len(res.Steps))
		for i, s := range res.Steps {
			lines[i] = s.Summary
		}
		res.Summary = strings.Join(lines, "\n")
	}
	stopped := "" // why the steps left are not run
	for _, i := range order {
		s := p.Steps[i]
		var sr StepResult
		switch {
		case stopped != "":
			sr = StepResult{ID: s.ID, Selector: s.Selector, Verb: s.Verb, Status: StepSkipped, Reason: stopped,
				Gather: mesh.GatherResult{Selector: s.Selector, Verb: s.Verb}}
			sr.Summary = fmt.Sprintf("%s %s on %s: skipped: %s", s.ID, verbLabel(s.Verb, s.Args), s.Selector, stopped)
		case opts.DryRun:
			sr = plannedStep(s)
		default:
			if err := ctx.Err(); err != nil {
				finish()
				return res, err
			}
			sr, err = runStep(ctx, c, s, done, opts, progress)
			if errors.Is(err, ErrApprovalPending) {
				stopped = fmt.Sprintf("%s waits for an approval", s.ID)
				err = nil
			}
			if err != nil {
				finish()
				return res, fmt.Errorf("%w: step %s: %w", ErrRun, s.ID, err)
			}
		}
		res.Steps = append(res.Steps, sr)
		done[s.ID] = &res.Steps[len(res.Steps)-1]
		progress(StepEvent{Step: s.ID, Kind: EventDone, Result: &sr})
	}
	finish()
	return res, nil
}

// plannedStep describes a step of a dry run.
func plannedStep(s Step) StepResult {
	sr := StepResult{ID: s.ID, Selector: s.Selector, Verb: s.Verb, Status: StepPlanned}
	var mods []string
	if s.From != nil {
		w := s.From.Which
		if s.From.N > 0 {
			w += " " + strconv.Itoa(s.From.N)
		}
		mods = append(mods, fmt.Sprintf("only the %s nodes of %s", w, s.From.Step))
	}
	switch s.Order {
	case OrderLoadDesc:
		mods = append(mods, "busiest first")
	case OrderLoadAsc:
		mods = append(mods, "idlest first")
	}
	if s.Limit > 0 {
		mods = append(mods, "at most "+countWord(s.Limit, "node", "nodes"))
	}
	line := fmt.Sprintf("%s %s on %s: would run (dry run, nothing sent)", s.ID, verbLabel(s.Verb, s.Args), s.Selector)
	if len(mods) > 0 {
		line += "; " + strings.Join(mods, ", ")
	}
	sr.Summary = line
	return sr
}

// runStep resolves, narrows and gathers one step.
func runStep(ctx context.Context, c *mesh.Client, s Step, done map[string]*StepResult, opts RunOptions, progress func(StepEvent)) (StepResult, error) {
	sr := StepResult{ID: s.ID, Selector: s.Selector, Verb: s.Verb}
	sel, err := subjects.ParseSelector(s.Selector)
	if err != nil {
		return sr, err // Validate parsed it already
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return sr, fmt.Errorf("registry: %w", err)
	}
	set := mesh.Resolve(sel, members)
	matched := len(set)
	skip := func(reason string) (StepResult, error) {
		sr.Status, sr.Reason = StepSkipped, reason
		sr.Gather = mesh.GatherResult{Selector: s.Selector, Verb: s.Verb}
		sr.Summary = fmt.Sprintf("%s %s on %s: skipped: %s", s.ID, verbLabel(s.Verb, s.Args), s.Selector, reason)
		return sr, nil
	}
	if matched == 0 {
		return skip(fmt.Sprintf("no nodes matched %s among the %d in the registry", s.Selector, len(members)))
	}
	if s.From != nil {
		prev := done[s.From.Step]
		if prev == nil || prev.Status == StepSkipped {
			return skip(fmt.Sprintf("%s was skipped, so it picked no nodes", s.From.Step))
		}
		picked := pickNodes(prev.Gather.Results, s.From)
		if len(picked) == 0 {
			return skip(fmt.Sprintf("no %s nodes among the %d results of %s", s.From.Which, len(prev.Gather.Results), s.From.Step))
		}
		set = slices.DeleteFunc(set, func(m wire.Member) bool { return !picked[m.Chevron] })
		if len(set) == 0 {
			return skip(fmt.Sprintf("none of the %d %s nodes of %s matches %s now",
				len(picked), s.From.Which, s.From.Step, s.Selector))
		}
	}
	switch s.Order {
	case OrderLoadDesc:
		slices.SortStableFunc(set, func(a, b wire.Member) int { return cmp.Compare(b.Load, a.Load) })
	case OrderLoadAsc:
		slices.SortStableFunc(set, func(a, b wire.Member) int { return cmp.Compare(a.Load, b.Load) })
	}
	if s.Limit > 0 && len(set) > s.Limit {
		set = set[:s.Limit]
	}
	for _, m := range set {
		sr.Targets = append(sr.Targets, m.Chevron)
	}
	progress(StepEvent{Step: s.ID, Kind: EventStart, Targets: slices.Clone(sr.Targets)})
	req := mesh.GatherRequest{Selector: s.Selector, Verb: s.Verb, Args: s.Args, Timeout: opts.Timeout,
		Batch: opts.Batch, From: opts.From}
	if len(set) != matched {
		// The set was narrowed: GatherSet must send to each node, not once
		// to the selector's prefix, which would reach the others too. A
		// Limit rules out that one publish.
		req.Limit = len(set)
	}
	g, err := c.GatherSet(ctx, req, sel, set, func(r mesh.NodeResult) {
		progress(StepEvent{Step: s.ID, Kind: EventNode, Node: &r})
	})
	if err != nil {
		return sr, err
	}
	var pending error
	if opts.Approve != nil && len(mesh.ApprovalRequired(g)) > 0 {
		ag, err := opts.Approve(ctx, req, g)
		switch {
		case errors.Is(err, ErrApprovalPending):
			pending = err
		case err != nil:
			return sr, fmt.Errorf("approval: %w", err)
		}
		g = ag
	}
	sr.Gather = g
	sr.Status = StepOK
	if !g.OK() {
		sr.Status = StepFailed
	}
	Summarize(&sr, s.Args, opts.TopN, time.Now())
	if pending != nil {
		sr.Status = StepFailed
		sr.Reason = "not run: " + strings.Join(strings.Fields(pending.Error()), " ")
		sr.Summary += "\n    " + sr.Reason
	}
	return sr, pending
}

// pickNodes returns the chevrons an earlier step's results give p.
// Slowest and fastest rank the nodes that answered (ok, error or denied:
// those have a round trip); a node that never answered is "failed".
func pickNodes(results []mesh.NodeResult, p *Pick) map[string]bool {
	out := map[string]bool{}
	switch p.Which {
	case PickOK, PickFailed, PickAll:
		for _, r := range results {
			ok := r.Status == mesh.StatusOK
			if p.Which == PickAll || ok == (p.Which == PickOK) {
				out[r.Chevron] = true
			}
		}
	case PickSlowest, PickFastest:
		var answered []mesh.NodeResult
		for _, r := range results {
			switch r.Status {
			case mesh.StatusOK, mesh.StatusError, mesh.StatusDenied:
				answered = append(answered, r)
			}
		}
		slices.SortStableFunc(answered, func(a, b mesh.NodeResult) int {
			if p.Which == PickSlowest {
				return cmp.Compare(b.Ms, a.Ms)
			}
			return cmp.Compare(a.Ms, b.Ms)
		})
		for _, r := range answered[:min(p.N, len(answered))] {
			out[r.Chevron] = true
		}
	}
	return out
}

func nodeLabel(chevron, name string) string {
	if name == "" {
		return chevron
	}
	return name + " (" + chevron + ")"
}

// verbLabel names a step's action briefly: "gauge cpu", "exec systemctl
// restart nginx", "config set log.level".
func verbLabel(verb string, args json.RawMessage) string {
	var a struct {
		Metric string   `json:"metric"`
		Checks []string `json:"checks"`
		Argv   []string `json:"argv"`
		Op     string   `json:"op"`
		Key    string   `json:"key"`
		Name   string   `json:"name"`
		Path   string   `json:"path"`
	}
	_ = json.Unmarshal(args, &a)
	label := verb
	switch verb {
	case "gauge":
		label += " " + cmp.Or(a.Metric, "list")
	case "scan":
		if len(a.Checks) > 0 {
			label += " " + strings.Join(a.Checks, ",")
		}
	case "exec":
		label += " " + clip(strings.Join(a.Argv, " "))
	case "config":
		label += " " + a.Op + " " + clip(a.Key)
	case "file":
		label += " " + a.Op + " " + clip(a.Name) + " " + clip(a.Path)
	}
	return label
}

func countWord(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func runOneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}
