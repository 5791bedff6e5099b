package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Bounds on what an API call may ask of the mesh.
const (
	defaultRunTimeout = 10 * time.Second
	maxRunTimeout     = 5 * time.Minute
	maxSelectorLen    = 1024
	maxAskText        = 2000
	queryTimeout      = 10 * time.Second
	// ndjsonType is the media type of streamed answers.
	ndjsonType = "application/x-ndjson"
)

// meshError turns an error from the mesh into an API error.
func meshError(err error) *apiError {
	var we *wire.Error
	var amb *intents.AmbiguousError
	switch {
	case errors.As(err, &amb):
		ae := errorf(http.StatusUnprocessableEntity, CodeAmbiguous, "%v", err)
		ae.Readings = amb.Readings
		return ae
	case errors.Is(err, intents.ErrSentenceRefused):
		return errorf(http.StatusUnprocessableEntity, CodeRefused, "%v", err)
	case errors.Is(err, intents.ErrNotUnderstood):
		return errorf(http.StatusUnprocessableEntity, CodeNotUnderstood, "%v", err)
	case errors.Is(err, intents.ErrBadSentence):
		return errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, CodeTimeout, "%v", err)
	case errors.Is(err, mesh.ErrNoMatch):
		return errorf(http.StatusUnprocessableEntity, CodeNoMatch, "%v", err)
	case errors.Is(err, subjects.ErrSelector), errors.Is(err, subjects.ErrToken), errors.Is(err, subjects.ErrChevron),
		errors.Is(err, intents.ErrPlan), errors.Is(err, command.ErrBadArgs), errors.Is(err, command.ErrUnknownVerb):
		return errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	case errors.As(err, &we) && we.Code == wire.CodeDenied:
		return errorf(http.StatusForbidden, CodeDenied, "%v", err)
	case errors.As(err, &we) && we.Code == wire.CodeBadRequest:
		return errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	return errorf(http.StatusBadGateway, CodeUpstream, "%v", err)
}

// meView is GET /api/me.
type meView struct {
	User    string    `json:"user"`
	Role    string    `json:"role"`
	Node    string    `json:"node"`
	Chevron string    `json:"chevron"`
	Expires time.Time `json:"expires"`
	Via     string    `json:"via"`
}

func (g *Gateway) apiMe(w http.ResponseWriter, _ *http.Request, p *Principal) {
	writeJSON(w, http.StatusOK, meView{User: p.User, Role: p.Role, Node: g.opts.Node.Pubkey(),
		Chevron: g.opts.Node.Chevron().String(), Expires: p.Expires, Via: p.Via})
}

func queryCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), queryTimeout)
}

func (g *Gateway) apiNodes(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx, cancel := queryCtx(r)
	defer cancel()
	ms, err := p.Client.Nodes(ctx)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	if ms == nil {
		ms = []wire.Member{}
	}
	writeJSON(w, http.StatusOK, ms)
}

func (g *Gateway) apiStatus(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx, cancel := queryCtx(r)
	defer cancel()
	st, err := p.Client.Status(ctx)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) apiAlerts(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx, cancel := queryCtx(r)
	defer cancel()
	ms, err := p.Client.Nodes(ctx)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	v, err := p.Client.Alerts(ctx, ms, 3*time.Second)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (g *Gateway) apiApprovals(w http.ResponseWriter, r *http.Request, p *Principal) {
	all := false
	switch v := r.URL.Query().Get("all"); v {
	case "", "0", "false":
	case "1", "true":
		all = true
	default:
		writeError(w, errorf(http.StatusBadRequest, CodeBadRequest, "all=%q: want 1 or 0", v))
		return
	}
	ctx, cancel := queryCtx(r)
	defer cancel()
	views, skipped, err := p.Client.ApprovalViews(ctx, all, g.now())
	for _, e := range skipped {
		g.log.Warn("approval record skipped", "err", e)
	}
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	writeJSON(w, http.StatusOK, views)
}

func (g *Gateway) apiCommands(w http.ResponseWriter, _ *http.Request, _ *Principal) {
	writeJSON(w, http.StatusOK, g.cat.List())
}

// runRequest is POST /api/run's body.
type runRequest struct {
	Selector string          `json:"selector"`
	Verb     string          `json:"verb"`
	Args     json.RawMessage `json:"args,omitempty"`
	Words    []string        `json:"words,omitempty"`
	Timeout  string          `json:"timeout,omitempty"`
	Batch    int             `json:"batch,omitempty"`
	Limit    int             `json:"limit,omitempty"`
}

// parseTimeout reads an optional duration bounded by maxRunTimeout.
func parseTimeout(s string) (time.Duration, *apiError) {
	if s == "" {
		return defaultRunTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxRunTimeout {
		return 0, errorf(http.StatusBadRequest, CodeBadRequest, "timeout %q: want a duration above 0 and at most %v", s, maxRunTimeout)
	}
	return d, nil
}

// gatherRequest checks a run request against the catalogue.
func (g *Gateway) gatherRequest(rr runRequest, p *Principal) (mesh.GatherRequest, *apiError) {
	bad := func(format string, args ...any) (mesh.GatherRequest, *apiError) {
		return mesh.GatherRequest{}, errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
	}
	if rr.Selector == "" || len(rr.Selector) > maxSelectorLen {
		return bad("selector of %d bytes: want 1 to %d", len(rr.Selector), maxSelectorLen)
	}
	if _, err := subjects.ParseSelector(rr.Selector); err != nil {
		return bad("selector %q: %v", rr.Selector, err)
	}
	if _, ok := g.cat.Lookup(rr.Verb); !ok {
		return bad("unknown verb %q (GET /api/commands lists them)", rr.Verb)
	}
	if len(rr.Args) > 0 && len(rr.Words) > 0 {
		return bad("give args or words, not both")
	}
	if rr.Batch < 0 || rr.Limit < 0 || rr.Batch > 100000 || rr.Limit > 100000 {
		return bad("batch %d / limit %d: want 0 to 100000", rr.Batch, rr.Limit)
	}
	args := rr.Args
	if len(rr.Words) > 0 {
		var err error
		if args, err = g.cat.ArgsFromWords(rr.Verb, rr.Words); err != nil {
			return bad("%s words %q: %v", rr.Verb, rr.Words, err)
		}
	}
	if err := g.cat.Validate(rr.Verb, args); err != nil {
		return bad("%v", err)
	}
	timeout, aerr := parseTimeout(rr.Timeout)
	if aerr != nil {
		return mesh.GatherRequest{}, aerr
	}
	return mesh.GatherRequest{Selector: rr.Selector, Verb: rr.Verb, Args: args, Timeout: timeout, Batch: rr.Batch,
		Limit: rr.Limit, From: "gateway " + shortKey(p.User)}, nil
}

func shortKey(k string) string {
	if len(k) > 10 {
		return k[:10]
	}
	return k
}

// wantsNDJSON reports whether the client asked for a streamed answer.
func wantsNDJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), ndjsonType)
}

// ndjson writes one JSON object per line, flushed, from any goroutine.
type ndjson struct {
	mu sync.Mutex
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startNDJSON(w http.ResponseWriter) *ndjson {
	w.Header().Set("Content-Type", ndjsonType)
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &ndjson{w: w, rc: http.NewResponseController(w)}
}

func (n *ndjson) line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"type": "error", "error": err.Error(), "code": CodeInternal})
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, _ = n.w.Write(append(b, '\n'))
	_ = n.rc.Flush()
}

func (n *ndjson) fail(err error) {
	ae := meshError(err)
	n.line(map[string]string{"type": "error", "error": ae.Msg, "code": ae.Code})
}

func (g *Gateway) apiRun(w http.ResponseWriter, r *http.Request, p *Principal) {
	var rr runRequest
	if aerr := decodeBody(w, r, &rr); aerr != nil {
		writeError(w, aerr)
		return
	}
	req, aerr := g.gatherRequest(rr, p)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx := r.Context()
	if !wantsNDJSON(r) {
		res, err := p.Client.Gather(ctx, req, nil)
		if err != nil {
			writeError(w, meshError(err))
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	// Errors found before anything is sent keep their status: resolve
	// first, then stream.
	sel, _ := subjects.ParseSelector(req.Selector)
	members, err := p.Client.Nodes(ctx)
	if err != nil {
		writeError(w, meshError(err))
		return
	}
	set := mesh.Resolve(sel, members)
	if len(set) == 0 {
		writeError(w, errorf(http.StatusUnprocessableEntity, CodeNoMatch, "%v %q among %d nodes", mesh.ErrNoMatch, req.Selector, len(members)))
		return
	}
	out := startNDJSON(w)
	res, err := p.Client.GatherSet(ctx, req, sel, set, func(nr mesh.NodeResult) {
		out.line(map[string]any{"type": "result", "result": nr})
	})
	if err != nil {
		out.fail(err)
		return
	}
	out.line(map[string]any{"type": "done", "gather": res})
}

// askRequest is POST /api/ask's body.
type askRequest struct {
	Text    string        `json:"text"`
	Confirm bool          `json:"confirm"`
	Timeout string        `json:"timeout,omitempty"`
	Plan    *intents.Plan `json:"plan,omitempty"` // this plan (one shown, or a reading picked) instead of planning the text
}

// askPlanView is /api/ask's dry-run answer: `ask --dry-run --json` and the
// plan as text and its mutating steps.
type askPlanView struct {
	intents.Result
	Tree     string   `json:"tree"`
	Mutating []string `json:"mutating"`
}

func (g *Gateway) apiAsk(w http.ResponseWriter, r *http.Request, p *Principal) {
	var ar askRequest
	if aerr := decodeBody(w, r, &ar); aerr != nil {
		writeError(w, aerr)
		return
	}
	if (ar.Plan == nil && strings.TrimSpace(ar.Text) == "") || len(ar.Text) > maxAskText {
		writeError(w, errorf(http.StatusBadRequest, CodeBadRequest, "text of %d bytes: want 1 to %d", len(ar.Text), maxAskText))
		return
	}
	timeout, aerr := parseTimeout(ar.Timeout)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx := r.Context()
	var plan intents.Plan
	if ar.Plan != nil {
		plan = *ar.Plan
		if err := plan.Validate(g.cat); err != nil {
			writeError(w, errorf(http.StatusBadRequest, CodeBadRequest, "plan: %v", err))
			return
		}
	} else {
		qctx, cancel := context.WithTimeout(ctx, time.Minute)
		members, err := p.Client.Nodes(qctx)
		if err == nil {
			plan, err = intents.PlanSentence(qctx, ar.Text, g.cat, members, intents.ChooseAuto, g.opts.Getenv)
		}
		cancel()
		if err != nil {
			writeError(w, meshError(err))
			return
		}
	}
	_, mutating := plan.Mutating(g.cat)
	if mutating == nil {
		mutating = []string{}
	}
	if !ar.Confirm {
		writeJSON(w, http.StatusOK, askPlanView{Result: intents.Result{Plan: plan, DryRun: true}, Tree: plan.Tree(g.cat), Mutating: mutating})
		return
	}
	opts := intents.RunOptions{Timeout: timeout, From: "gateway " + shortKey(p.User)}
	if !wantsNDJSON(r) {
		res, err := intents.Run(ctx, p.Client, g.cat, plan, opts, nil)
		if err != nil {
			writeError(w, meshError(err))
			return
		}
		writeJSON(w, http.StatusOK, res)
		return
	}
	out := startNDJSON(w)
	out.line(map[string]any{"type": "plan", "plan": plan, "tree": plan.Tree(g.cat), "mutating": mutating})
	res, err := intents.Run(ctx, p.Client, g.cat, plan, opts, func(e intents.StepEvent) {
		switch e.Kind {
		case intents.EventStart:
			out.line(map[string]any{"type": "start", "step": e.Step, "targets": e.Targets})
		case intents.EventNode:
			out.line(map[string]any{"type": "node", "step": e.Step, "result": e.Node})
		case intents.EventDone:
			out.line(map[string]any{"type": "step", "step": e.Step, "result": e.Result})
		}
	})
	if err != nil {
		out.fail(err)
		return
	}
	out.line(map[string]any{"type": "done", "ask": res})
}
