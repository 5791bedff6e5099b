package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/subjects"
)

// MaxRunSteps bounds the steps and local commands of a composition once its
// macros are expanded, so a few macros calling each other many times cannot
// grow into an unbounded run.
const MaxRunSteps = 1024

// DefaultMaxLocalOutput is how many bytes of a local command's stdout, and
// of its stderr, RunComposition keeps by default.
const DefaultMaxLocalOutput = 8 << 20

// ErrPlan is wrapped by every error RunComposition returns before it runs
// anything (beside *ComposeError and the macro errors, which it wraps as
// they are): an unknown verb, bad arguments, a selector that does not parse,
// a local program that is not found, a malformed Expr.
var ErrPlan = errors.New("composition cannot run")

// Step statuses in a RunResult.
const (
	StepOK      = "ok"      // every node answered ok; a local command exited 0
	StepFailed  = "failed"  // it ran, but some node was not ok or the local command exited nonzero
	StepError   = "error"   // it could not run: no node matched, a publish failed, the program did not start
	StepSkipped = "skipped" // not run: its input step produced nothing, or the run was canceled
)

// Step kinds in a RunResult.
const (
	KindGather = "gather" // a step: a verb gathered from nodes
	KindLocal  = "local"  // a local command, the right side of "|"
)

// RunOptions configure RunComposition. The zero value works: arguments are
// built with the built-in command catalogue and macros come from the
// client's rn_macros bucket.
type RunOptions struct {
	// Args turns a step's words into its verb's JSON arguments and rejects
	// unknown verbs and bad arguments; it is called for every step before
	// anything runs. Nil: the built-in catalogue's ArgsFromWords
	// (command.New with no baseline), which is what the nodes serve unless
	// they add verbs; a caller with its own catalogue passes its method.
	Args func(verb string, words []string) (json.RawMessage, error)
	// Macros returns a macro's text, or an error wrapping ErrMacroNotFound.
	// Nil: (*Macros).Text over the client's rn_macros, bound on the first
	// macro call. Each name is loaded once per run.
	Macros func(ctx context.Context, name string) (string, error)
	// Timeout, Batch, Limit and From are every step's GatherRequest fields.
	Timeout time.Duration
	Batch   int
	Limit   int
	From    string
	// Progress, if not nil, sees each node result as it settles, with the
	// index of its step in RunResult.Steps. Calls are serialized, also
	// across the branches of a fork.
	Progress func(step int, r NodeResult)
	// MaxLocalOutput is how many bytes of a local command's stdout and of
	// its stderr are kept (and piped on); 0 means DefaultMaxLocalOutput.
	MaxLocalOutput int
}

// RunResult is what a composition did.
type RunResult struct {
	Composition string       `json:"composition"` // the composition's canonical text, macros unexpanded
	OK          bool         `json:"ok"`          // every step's status is ok
	Steps       []StepResult `json:"steps"`       // every step and local command, in plan order
	Line        string       `json:"line"`        // "3 steps: 2 ok, 1 failed"
}

// StepResult is one step or local command of a run. Steps are in plan
// order: the expanded composition read left to right, so a pipe's left side
// comes before its right and a fork's branches in their order; Index is the
// position in that order.
type StepResult struct {
	Index int      `json:"index"`
	Kind  string   `json:"kind"`          // KindGather or KindLocal
	Step  string   `json:"step"`          // its canonical text: "rn1:status", "grep -c linux"
	Via   []string `json:"via,omitempty"` // the macros it was reached through, outermost first
	// Input says what the step was fed: "json" (the output of the step
	// before "->"), "text" (before "|"), or "" for nothing.
	Input  string        `json:"input,omitempty"`
	Status string        `json:"status"` // StepOK, StepFailed, StepError or StepSkipped
	Error  string        `json:"error,omitempty"`
	Ms     float64       `json:"ms"`
	Gather *GatherResult `json:"gather,omitempty"` // KindGather that ran
	Local  *LocalResult  `json:"local,omitempty"`  // KindLocal that started
}

// LocalResult is what a local command did.
type LocalResult struct {
	Argv          []string `json:"argv"`
	ExitCode      int      `json:"exit_code"` // -1 when a signal ended it
	Stdout        string   `json:"stdout"`
	Stderr        string   `json:"stderr"`
	StdoutDropped int64    `json:"stdout_dropped,omitempty"` // bytes beyond MaxLocalOutput, not kept
	StderrDropped int64    `json:"stderr_dropped,omitempty"`
}

// RunComposition runs a parsed composition through the client.
//
// First it plans, without sending anything: macro calls are expanded (each
// name loaded once; a macro reaching itself is an ErrMacroCycle naming the
// path, calls nested deeper than MaxMacroDepth an ErrMacroDepth, an unknown
// one ErrMacroNotFound; a macro's own parse error is its *ComposeError
// wrapped with its name), every selector is parsed, every step's arguments
// are built with opts.Args, and every local program is looked up in PATH.
// Any problem is returned as the error with a nil result, and nothing ran.
//
// Then it runs:
//   - a Step is one Gather; its output is the whole GatherResult, as JSON
//     for "->" and rendered by GatherText for "|";
//   - "a -> b" runs a, then b with a's JSON output as GatherRequest.Input
//     (for b a fork or a macro, every step it starts with gets it);
//   - "a | cmd" runs a, then cmd on this machine (argv, no shell) with a's
//     text on stdin; cmd's output is its stdout as text and its
//     LocalResult as JSON;
//   - a Fork runs its branches concurrently, each with the fork's input;
//     its output is the JSON array of the branches' outputs (null for a
//     branch that produced nothing) and their texts concatenated;
//   - a macro call runs the macro's composition in place.
//
// A step that fails does not stop the run: a step whose nodes were not all
// ok, or a local command exiting nonzero, still passes its output on. Only
// a step that produced nothing (no node matched, the program did not start)
// has the steps fed by it skipped. Whether everything went well is
// RunResult.OK; the error is then nil. If ctx ends, the steps not yet
// started are skipped and the partial result is returned with ctx's error.
func (c *Client) RunComposition(ctx context.Context, e Expr, opts RunOptions) (*RunResult, error) {
	pl := &planner{ctx: ctx, args: opts.Args, load: opts.Macros, texts: map[string]macroText{}}
	if pl.load == nil {
		var once sync.Once
		var m *Macros
		var bindErr error
		pl.load = func(ctx context.Context, name string) (string, error) {
			once.Do(func() { m, bindErr = c.Macros(ctx) })
			if bindErr != nil {
				return "", bindErr
			}
			return m.Text(ctx, name)
		}
	}
	if pl.args == nil {
		pl.args = func(verb string, words []string) (json.RawMessage, error) {
			if pl.cat == nil {
				cat, err := command.New(command.Options{ListenBaseline: []string{}})
				if err != nil {
					return nil, fmt.Errorf("command catalogue: %w", err)
				}
				pl.cat = cat
			}
			return pl.cat.ArgsFromWords(verb, words)
		}
	}
	root, err := pl.expand(e, nil)
	if err != nil {
		return nil, err
	}
	r := &runner{c: c, opts: opts, steps: pl.steps}
	if r.opts.MaxLocalOutput <= 0 {
		r.opts.MaxLocalOutput = DefaultMaxLocalOutput
	}
	r.run(ctx, root, nil)
	res := &RunResult{Composition: exprString(e), Steps: r.steps, OK: true}
	counts := map[string]int{}
	for _, s := range r.steps {
		counts[s.Status]++
		if s.Status != StepOK {
			res.OK = false
		}
	}
	parts := []string{fmt.Sprintf("%d ok", counts[StepOK])}
	for _, st := range []string{StepFailed, StepError, StepSkipped} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	noun := "steps"
	if len(r.steps) == 1 {
		noun = "step"
	}
	res.Line = fmt.Sprintf("%d %s: %s", len(r.steps), noun, strings.Join(parts, ", "))
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("composition stopped: %w", err)
	}
	return res, nil
}

// GatherText renders a gather as the text "|" feeds to a local command:
// for each node in the result's order, every line of its text prefixed with
// "chevron name: " (just "chevron: " when the name is unknown). A node whose
// text is empty shows its JSON output, compacted, as its one line, or its
// status when it has none; a node that was not ok adds a line
// "chevron name: status: error". So `all:ping | wc -l` counts the nodes and
// `all:info | grep linux` finds the nodes' lines.
func GatherText(res GatherResult) string {
	var b strings.Builder
	for _, r := range res.Results {
		prefix := r.Chevron
		if r.Name != "" {
			prefix += " " + r.Name
		}
		prefix += ": "
		switch text := strings.TrimRight(r.Text, "\n"); {
		case text != "":
			for line := range strings.SplitSeq(text, "\n") {
				b.WriteString(prefix)
				b.WriteString(line)
				b.WriteByte('\n')
			}
		case len(r.Output) > 0:
			var out bytes.Buffer
			if json.Compact(&out, r.Output) != nil {
				out.Reset()
				out.Write(bytes.ReplaceAll(r.Output, []byte("\n"), []byte(" ")))
			}
			b.WriteString(prefix)
			b.Write(out.Bytes())
			b.WriteByte('\n')
		case r.Status == StatusOK:
			b.WriteString(prefix + StatusOK + "\n")
		}
		if r.Status != StatusOK {
			msg := strings.ReplaceAll(r.Error, "\n", " ")
			if msg == "" {
				msg = r.Code
			}
			b.WriteString(prefix + r.Status + ": " + msg + "\n")
		}
	}
	return b.String()
}

// planKind is what a plan node does.
type planKind uint8

const (
	planStep planKind = iota + 1
	planLocal
	planFork
	planPipe
)

// plan is a composition with its macros expanded and its steps checked.
type plan struct {
	kind     planKind
	idx      int             // planStep, planLocal: index in the steps
	selector string          // planStep
	verb     string          // planStep
	args     json.RawMessage // planStep
	argv     []string        // planLocal
	kids     []*plan         // planFork: branches; planPipe: left, right
	pipe     PipeKind        // planPipe
}

// macroText is a loaded macro, parsed once per run.
type macroText struct {
	expr Expr
	err  error
}

// planner expands and checks a composition; it sends nothing.
type planner struct {
	ctx   context.Context
	args  func(verb string, words []string) (json.RawMessage, error)
	load  func(ctx context.Context, name string) (string, error)
	cat   *command.Catalogue // the default argument builder, made on first use
	texts map[string]macroText
	steps []StepResult // one per step and local, in plan order
}

// deref turns a pointer to an Expr type into its value; a nil pointer or a
// nil interface becomes nil.
func deref(e Expr) Expr {
	switch x := e.(type) {
	case *Step:
		if x != nil {
			return *x
		}
		return nil
	case *MacroRef:
		if x != nil {
			return *x
		}
		return nil
	case *Fork:
		if x != nil {
			return *x
		}
		return nil
	case *Pipe:
		if x != nil {
			return *x
		}
		return nil
	case *Local:
		if x != nil {
			return *x
		}
		return nil
	}
	return e
}

func (p *planner) addStep(kind, text string, via []string) (int, error) {
	if len(p.steps) >= MaxRunSteps {
		return 0, fmt.Errorf("%w: more than %d steps once macros are expanded", ErrPlan, MaxRunSteps)
	}
	i := len(p.steps)
	p.steps = append(p.steps, StepResult{Index: i, Kind: kind, Step: text, Via: slices.Clone(via)})
	return i, nil
}

// expand checks e and returns its plan; via is the stack of macros being
// expanded, outermost first.
func (p *planner) expand(e Expr, via []string) (*plan, error) {
	if err := p.ctx.Err(); err != nil {
		return nil, err
	}
	switch x := deref(e).(type) {
	case nil:
		return nil, fmt.Errorf("%w: empty expression%s", ErrPlan, inMacro(via))
	case Step:
		return p.step(x, via)
	case Local:
		return nil, fmt.Errorf("%w: local command %q%s outside a text pipe (\"| %s\")", ErrPlan, x.String(), inMacro(via), x.String())
	case Fork:
		if len(x.Branches) == 0 {
			return nil, fmt.Errorf("%w: empty fork%s", ErrPlan, inMacro(via))
		}
		f := &plan{kind: planFork}
		for _, b := range x.Branches {
			k, err := p.expand(b, via)
			if err != nil {
				return nil, err
			}
			f.kids = append(f.kids, k)
		}
		return f, nil
	case Pipe:
		left, err := p.expand(x.Left, via)
		if err != nil {
			return nil, err
		}
		var right *plan
		switch x.Kind {
		case PipeText:
			l, ok := deref(x.Right).(Local)
			if !ok {
				return nil, fmt.Errorf("%w: the right side of '|' must be a local command, not %q%s", ErrPlan, exprString(x.Right), inMacro(via))
			}
			right, err = p.local(l, via)
		case PipeJSON:
			right, err = p.expand(x.Right, via)
		default:
			return nil, fmt.Errorf("%w: pipe of unknown kind %d%s", ErrPlan, x.Kind, inMacro(via))
		}
		if err != nil {
			return nil, err
		}
		return &plan{kind: planPipe, pipe: x.Kind, kids: []*plan{left, right}}, nil
	case MacroRef:
		return p.macro(x, via)
	default:
		return nil, fmt.Errorf("%w: unknown expression type %T%s", ErrPlan, e, inMacro(via))
	}
}

// inMacro names the macro a problem is in, for error messages.
func inMacro(via []string) string {
	if len(via) == 0 {
		return ""
	}
	return " in " + macroPath(via)
}

func (p *planner) step(s Step, via []string) (*plan, error) {
	text := s.String()
	if _, err := subjects.ParseSelector(s.Selector); err != nil {
		return nil, fmt.Errorf("%w: step %q%s: %w", ErrPlan, text, inMacro(via), err)
	}
	if err := subjects.ValidToken(s.Verb); err != nil {
		return nil, fmt.Errorf("%w: step %q%s: verb: %w", ErrPlan, text, inMacro(via), err)
	}
	args, err := p.args(s.Verb, s.Args)
	if err != nil {
		return nil, fmt.Errorf("%w: step %q%s: %w", ErrPlan, text, inMacro(via), err)
	}
	i, err := p.addStep(KindGather, text, via)
	if err != nil {
		return nil, err
	}
	return &plan{kind: planStep, idx: i, selector: s.Selector, verb: s.Verb, args: args}, nil
}

func (p *planner) local(l Local, via []string) (*plan, error) {
	text := l.String()
	if len(l.Argv) == 0 || l.Argv[0] == "" {
		return nil, fmt.Errorf("%w: local command%s: no program named", ErrPlan, inMacro(via))
	}
	for _, a := range l.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("%w: local command %q%s: NUL byte in an argument", ErrPlan, text, inMacro(via))
		}
	}
	if _, err := exec.LookPath(l.Argv[0]); err != nil {
		return nil, fmt.Errorf("%w: local command %q%s: %w", ErrPlan, text, inMacro(via), err)
	}
	i, err := p.addStep(KindLocal, text, via)
	if err != nil {
		return nil, err
	}
	return &plan{kind: planLocal, idx: i, argv: slices.Clone(l.Argv)}, nil
}

func (p *planner) macro(m MacroRef, via []string) (*plan, error) {
	if err := ValidMacroName(m.Name); err != nil {
		return nil, fmt.Errorf("%w%s", err, inMacro(via))
	}
	if slices.Contains(via, m.Name) {
		return nil, cycleError(via, m.Name)
	}
	if len(via) >= MaxMacroDepth {
		return nil, fmt.Errorf("%w: @%s is called at depth %d, limit %d: %s", ErrMacroDepth, m.Name, len(via)+1,
			MaxMacroDepth, macroPath(append(slices.Clone(via), m.Name)))
	}
	mt, ok := p.texts[m.Name]
	if !ok {
		text, err := p.load(p.ctx, m.Name)
		switch {
		case err != nil && errors.Is(err, ErrMacroNotFound):
			mt.err = fmt.Errorf("%w: @%s", ErrMacroNotFound, m.Name)
		case err != nil:
			mt.err = fmt.Errorf("macro @%s: load: %w", m.Name, err)
		default:
			if mt.expr, err = ParseComposition(text); err != nil {
				mt.err = fmt.Errorf("macro @%s: %w", m.Name, err)
			}
		}
		p.texts[m.Name] = mt
	}
	if mt.err != nil {
		if len(via) > 0 {
			return nil, fmt.Errorf("%w (called from %s)", mt.err, macroPath(via))
		}
		return nil, mt.err
	}
	return p.expand(mt.expr, append(slices.Clone(via), m.Name))
}

// flow is what an expression passes on to the one after its pipe.
type flow struct {
	produced bool // false: nothing to pass on (the steps fed by it are skipped)
	json     json.RawMessage
	text     string
}

// runner executes a plan. Each step's goroutine writes only its own element
// of steps; pmu serializes Progress.
type runner struct {
	c     *Client
	opts  RunOptions
	steps []StepResult
	pmu   sync.Mutex
}

// run runs p with input (JSON from "->", nil for none) and returns its output.
func (r *runner) run(ctx context.Context, p *plan, input json.RawMessage) flow {
	switch p.kind {
	case planStep:
		return r.gather(ctx, p, input)
	case planFork:
		outs := make([]flow, len(p.kids))
		var wg sync.WaitGroup
		for i, k := range p.kids {
			wg.Go(func() { outs[i] = r.run(ctx, k, input) })
		}
		wg.Wait()
		var js bytes.Buffer
		var text strings.Builder
		out := flow{}
		js.WriteByte('[')
		for i, o := range outs {
			if i > 0 {
				js.WriteByte(',')
			}
			if !o.produced {
				js.WriteString("null")
				continue
			}
			out.produced = true
			js.Write(o.json)
			text.WriteString(o.text)
			if o.text != "" && !strings.HasSuffix(o.text, "\n") {
				text.WriteByte('\n')
			}
		}
		js.WriteByte(']')
		out.json, out.text = js.Bytes(), text.String()
		return out
	case planPipe:
		left := r.run(ctx, p.kids[0], input)
		if !left.produced {
			r.skip(p.kids[1], "its input step produced no output")
			return flow{}
		}
		if p.pipe == PipeText {
			return r.local(ctx, p.kids[1], left.text)
		}
		return r.run(ctx, p.kids[1], left.json)
	case planLocal:
		// The planner puts a local only on the right of "|".
		return r.local(ctx, p, "")
	}
	return flow{}
}

// skip marks every step of p as skipped.
func (r *runner) skip(p *plan, why string) {
	switch p.kind {
	case planStep, planLocal:
		r.steps[p.idx].Status, r.steps[p.idx].Error = StepSkipped, why
	default:
		for _, k := range p.kids {
			r.skip(k, why)
		}
	}
}

func (r *runner) gather(ctx context.Context, p *plan, input json.RawMessage) flow {
	sr := &r.steps[p.idx]
	if input != nil {
		sr.Input = "json"
	}
	if err := ctx.Err(); err != nil {
		sr.Status, sr.Error = StepSkipped, err.Error()
		return flow{}
	}
	// The request must fit the nodes' max_payload with the rest of its body.
	if limit := r.c.nc.MaxPayload() - 64<<10 - int64(len(p.args)); input != nil && int64(len(input)) > limit {
		sr.Status = StepError
		sr.Error = fmt.Sprintf("input of %d bytes (the previous step's output) is over the %d bytes a request can carry", len(input), max(limit, 0))
		return flow{}
	}
	var progress func(NodeResult)
	if r.opts.Progress != nil {
		progress = func(nr NodeResult) {
			r.pmu.Lock()
			defer r.pmu.Unlock()
			r.opts.Progress(p.idx, nr)
		}
	}
	start := time.Now()
	res, err := r.c.Gather(ctx, GatherRequest{Selector: p.selector, Verb: p.verb, Args: p.args, Input: input,
		Timeout: r.opts.Timeout, Batch: r.opts.Batch, Limit: r.opts.Limit, From: r.opts.From}, progress)
	sr.Ms = msSince(start)
	if err != nil {
		sr.Status, sr.Error = StepError, err.Error()
		return flow{}
	}
	sr.Gather = &res
	sr.Status = StepOK
	if !res.OK() {
		sr.Status = StepFailed
	}
	js, err := json.Marshal(res)
	if err != nil {
		// Output values are raw JSON the nodes sent; one that is not valid
		// JSON makes the whole result unencodable.
		sr.Status, sr.Error = StepFailed, fmt.Sprintf("result does not encode as JSON: %v", err)
		return flow{produced: true, text: GatherText(res), json: json.RawMessage("null")}
	}
	return flow{produced: true, json: js, text: GatherText(res)}
}

func (r *runner) local(ctx context.Context, p *plan, stdin string) flow {
	sr := &r.steps[p.idx]
	sr.Input = "text"
	if err := ctx.Err(); err != nil {
		sr.Status, sr.Error = StepSkipped, err.Error()
		return flow{}
	}
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	stdout, stderr := &command.CapWriter{Limit: r.opts.MaxLocalOutput}, &command.CapWriter{Limit: r.opts.MaxLocalOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A child that keeps the output pipes open after the command exited
	// costs it the rest of its output, not the run.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	sr.Ms = msSince(start)
	lr := &LocalResult{Argv: slices.Clone(p.argv), ExitCode: -1, Stdout: stdout.Kept(), Stderr: stderr.Kept(),
		StdoutDropped: stdout.Dropped(), StderrDropped: stderr.Dropped()}
	if cmd.ProcessState != nil {
		lr.ExitCode = cmd.ProcessState.ExitCode()
	}
	var ee *exec.ExitError
	switch {
	case cmd.ProcessState == nil:
		sr.Status, sr.Error = StepError, fmt.Sprintf("local command %q: %v", p.argv[0], err)
		return flow{}
	case ctx.Err() != nil && err != nil:
		sr.Status, sr.Error = StepFailed, fmt.Sprintf("local command %q stopped: %v", p.argv[0], ctx.Err())
	case err == nil || errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay):
		sr.Status = StepOK
		if lr.ExitCode != 0 {
			sr.Status = StepFailed
			sr.Error = fmt.Sprintf("local command %q exited %d", p.argv[0], lr.ExitCode)
			if lr.ExitCode < 0 {
				sr.Error = fmt.Sprintf("local command %q ended by %v", p.argv[0], cmd.ProcessState)
			}
		}
	default:
		sr.Status, sr.Error = StepFailed, fmt.Sprintf("local command %q: %v", p.argv[0], err)
	}
	sr.Local = lr
	js, _ := json.Marshal(lr) // strings and numbers only: cannot fail
	return flow{produced: true, json: js, text: lr.Stdout}
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }
