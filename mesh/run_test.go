package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// runSwarm is the swarm the composition tests share: starting one costs
// seconds on a small machine. Nodes 3.12.1 and 3.12.2 are under 3.12,
// 3.13.1 alone under 3.13; every node allows exec of cat.
type runSwarm struct {
	s  *testmesh.Swarm
	c0 *mesh.Client // through node 0
	c2 *mesh.Client // through node 2
}

func startRunSwarm(t *testing.T) *runSwarm {
	t.Helper()
	s := testmesh.Start(t, 3,
		testmesh.WithChevrons("3.12.1", "3.12.2", "3.13.1"),
		func(i int, o *node.Options) { o.ExecAllow = []string{"cat"} })
	s.WaitAlive(60 * time.Second)
	// Writes to the buckets are steady once they are replicated on 3.
	testmesh.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
		if r := s.Node(0).Status().Replicas; r != 3 {
			return fmt.Errorf("replicas = %d", r)
		}
		return nil
	})
	return &runSwarm{s: s, c0: s.Client(0), c2: s.Client(2)}
}

func run(t *testing.T, c *mesh.Client, text string, opts mesh.RunOptions) *mesh.RunResult {
	t.Helper()
	e, err := mesh.ParseComposition(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.RunComposition(ctx, e, opts)
	if err != nil {
		t.Fatalf("run %q: %v", text, err)
	}
	if len(res.Steps) == 0 {
		t.Fatalf("run %q: no steps", text)
	}
	return res
}

// runErr runs text and returns the planning error it must fail with.
func runErr(t *testing.T, c *mesh.Client, text string, opts mesh.RunOptions) error {
	t.Helper()
	e, err := mesh.ParseComposition(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.RunComposition(ctx, e, opts)
	if err == nil {
		t.Fatalf("run %q: no error (%s)", text, res.Line)
	}
	if res != nil {
		t.Fatalf("run %q failed with %v but returned a result: it ran something", text, err)
	}
	return err
}

func stepLine(res *mesh.RunResult) string {
	var b strings.Builder
	b.WriteString(res.Line)
	for _, s := range res.Steps {
		fmt.Fprintf(&b, "\n  %d %s %s: %s %s", s.Index, s.Kind, s.Step, s.Status, s.Error)
		if s.Gather != nil {
			b.WriteString(" [" + s.Gather.Summary.Line + "]")
		}
	}
	return b.String()
}

// execStdout returns the stdout exec reported on the only node of a step.
func execStdout(t *testing.T, s mesh.StepResult) string {
	t.Helper()
	if s.Gather == nil || len(s.Gather.Results) != 1 {
		t.Fatalf("step %s: want one node's result, got %+v", s.Step, s.Gather)
	}
	nr := s.Gather.Results[0]
	if nr.Status != mesh.StatusOK {
		t.Fatalf("step %s on %s: %s %s", s.Step, nr.Chevron, nr.Status, nr.Error)
	}
	var er command.ExecReply
	if err := json.Unmarshal(nr.Output, &er); err != nil {
		t.Fatalf("step %s: exec output %s: %v", s.Step, nr.Output, err)
	}
	return er.Stdout
}

func TestRunComposition(t *testing.T) {
	rs := startRunSwarm(t)
	c := rs.c0

	t.Run("JSONPipeFeedsTheGatherToTheNextStep", func(t *testing.T) {
		res := run(t, c, "3.12.1:ping hello -> 3.13.1:exec -- cat", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 2 {
			t.Fatalf("%s", stepLine(res))
		}
		if res.Steps[0].Input != "" || res.Steps[1].Input != "json" {
			t.Fatalf("inputs %q, %q", res.Steps[0].Input, res.Steps[1].Input)
		}
		var got mesh.GatherResult
		out := execStdout(t, res.Steps[1])
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("cat printed %q: %v", out, err)
		}
		if got.Verb != "ping" || got.Summary.Total != 1 || len(got.Results) != 1 ||
			got.Results[0].Chevron != "3.12.1" || got.Results[0].Text != "pong hello" {
			t.Fatalf("input that arrived: %+v", got)
		}
	})

	t.Run("TextPipeIntoLocalCommands", func(t *testing.T) {
		res := run(t, c, "3.12:ping | wc -l", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 2 || res.Steps[1].Kind != mesh.KindLocal || res.Steps[1].Input != "text" {
			t.Fatalf("%s", stepLine(res))
		}
		if got := strings.TrimSpace(res.Steps[1].Local.Stdout); got != "2" {
			t.Fatalf("wc -l printed %q, want 2", got)
		}
		res = run(t, c, "all:ping | grep -c '3.13.1 '", mesh.RunOptions{})
		if got := strings.TrimSpace(res.Steps[1].Local.Stdout); !res.OK || got != "1" {
			t.Fatalf("grep -c printed %q\n%s", got, stepLine(res))
		}
		// Text pipes chain: grep's output is wc's input.
		res = run(t, c, "all:ping hi | grep 'pong hi' | grep 3.12 | wc -l", mesh.RunOptions{})
		if got := strings.TrimSpace(res.Steps[3].Local.Stdout); !res.OK || len(res.Steps) != 4 || got != "2" {
			t.Fatalf("wc -l printed %q\n%s", got, stepLine(res))
		}
		// A local command's exit code is reported and makes the run not ok.
		res = run(t, c, "all:ping | grep -c nomatch", mesh.RunOptions{})
		l := res.Steps[1]
		if res.OK || l.Status != mesh.StepFailed || l.Local == nil || l.Local.ExitCode != 1 ||
			strings.TrimSpace(l.Local.Stdout) != "0" || !strings.Contains(l.Error, "exited 1") {
			t.Fatalf("%s\n%+v", stepLine(res), l.Local)
		}
	})

	t.Run("ForkGathersEveryBranch", func(t *testing.T) {
		res := run(t, c, "[3.12:ping, 3.13:ping]", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 2 || res.Steps[0].Gather.Summary.Total != 2 || res.Steps[1].Gather.Summary.Total != 1 {
			t.Fatalf("%s", stepLine(res))
		}
		// A fork's JSON output is the array of its branches' outputs.
		res = run(t, c, "[3.12.1:ping a, 3.13.1:ping b] -> 3.12.2:exec cat", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 3 {
			t.Fatalf("%s", stepLine(res))
		}
		var got []mesh.GatherResult
		if err := json.Unmarshal([]byte(execStdout(t, res.Steps[2])), &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Results[0].Text != "pong a" || got[1].Results[0].Chevron != "3.13.1" {
			t.Fatalf("fork output: %+v", got)
		}
		// Every branch of a fork after "->" gets the input.
		res = run(t, c, "3.13.1:ping in -> [3.12.1:exec cat, 3.12.2:exec cat]", mesh.RunOptions{})
		for _, s := range res.Steps[1:] {
			if out := execStdout(t, s); !strings.Contains(out, "pong in") || s.Input != "json" {
				t.Fatalf("branch %s got %q", s.Step, out)
			}
		}
	})

	t.Run("ProgressSeesEveryNode", func(t *testing.T) {
		var mu sync.Mutex
		seen := map[string]int{}
		run(t, c, "[all:ping, 3.12:ping]", mesh.RunOptions{Progress: func(step int, r mesh.NodeResult) {
			mu.Lock()
			seen[fmt.Sprint(step, r.Chevron)]++
			mu.Unlock()
		}})
		if len(seen) != 5 {
			t.Fatalf("progress saw %v", seen)
		}
	})

	t.Run("AFailingStepDoesNotStopTheRun", func(t *testing.T) {
		// exec of rm is not allowed: every node denies it; the next step runs.
		res := run(t, c, "all:exec -- rm /nonexistent -> 3.12.1:ping", mesh.RunOptions{})
		if res.OK || res.Steps[0].Status != mesh.StepFailed || res.Steps[0].Gather.Summary.Denied != 3 ||
			res.Steps[1].Status != mesh.StepOK {
			t.Fatalf("%s", stepLine(res))
		}
		// A step that reached no node: what it feeds is skipped, a fork's
		// other branch is not.
		res = run(t, c, "[9:ping -> all:ping | wc -l, 3.13:ping]", mesh.RunOptions{})
		want := []string{mesh.StepError, mesh.StepSkipped, mesh.StepSkipped, mesh.StepOK}
		for i, s := range res.Steps {
			if i >= len(want) || s.Status != want[i] {
				t.Fatalf("want statuses %v\n%s", want, stepLine(res))
			}
		}
		if res.OK || !strings.Contains(res.Steps[0].Error, "no nodes matched") || res.Line != "4 steps: 1 ok, 1 error, 2 skipped" {
			t.Fatalf("%s", stepLine(res))
		}
	})

	t.Run("PlanningErrorsRunNothing", func(t *testing.T) {
		marker := filepath.Join(t.TempDir(), "ran")
		for _, tc := range []struct {
			text string
			want string
		}{
			{"all:frob", "frob"},
			{"all:gauge gpu", "gpu"},
			{"all:ping | no-such-program-rn", "no-such-program-rn"},
			{"'3..1':ping", "3..1"},
		} {
			err := runErr(t, c, "all:ping | touch "+marker+" -> "+tc.text, mesh.RunOptions{})
			if !errors.Is(err, mesh.ErrPlan) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: %v", tc.text, err)
			}
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a step ran before the plan was refused: %v", err)
		}
	})

	t.Run("ArgsBuilderIsPluggable", func(t *testing.T) {
		var calls []string
		res := run(t, c, "3.12.1:ping -> 3.13.1:ping", mesh.RunOptions{Args: func(verb string, words []string) (json.RawMessage, error) {
			calls = append(calls, verb)
			return json.RawMessage(`{"echo":"from-builder"}`), nil
		}})
		if len(calls) != 2 || res.Steps[1].Gather.Results[0].Text != "pong from-builder" {
			t.Fatalf("calls %v\n%s", calls, stepLine(res))
		}
	})

	t.Run("MacrosAcrossNodes", func(t *testing.T) {
		ctx := context.Background()
		m0, err := rs.c0.Macros(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := rs.c2.Macros(ctx)
		if err != nil {
			t.Fatal(err)
		}
		set, err := m0.Set(ctx, "health", "all:ping -> 3.12:ping checked")
		if err != nil || set.Revision == 0 {
			t.Fatalf("set health: %+v %v", set, err)
		}
		if _, err := m0.Set(ctx, "outer", "[@health, 3.13.1:ping] | wc -l"); err != nil {
			t.Fatalf("set outer: %v", err)
		}
		list, err := m2.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]mesh.MacroInfo{}
		for _, mi := range list {
			byName[mi.Name] = mi
		}
		if h := byName["health"]; h.Text != "all:ping -> 3.12:ping checked" || h.Revision != set.Revision || h.Updated.IsZero() {
			t.Fatalf("list through node 2: %+v", list)
		}

		// Run through node 2 with the default loader (its rn_macros).
		res := run(t, rs.c2, "@health", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 2 || res.Steps[1].Gather.Summary.Total != 2 ||
			strings.Join(res.Steps[0].Via, ",") != "health" || res.Composition != "@health" {
			t.Fatalf("%s", stepLine(res))
		}
		// A macro calling a macro.
		res = run(t, rs.c2, "@outer", mesh.RunOptions{})
		if !res.OK || len(res.Steps) != 4 || strings.Join(res.Steps[0].Via, ",") != "outer,health" ||
			strings.Join(res.Steps[2].Via, ",") != "outer" {
			t.Fatalf("%s", stepLine(res))
		}
		// health's output is its last step's (2 nodes), the fork adds 1.
		if got := strings.TrimSpace(res.Steps[3].Local.Stdout); got != "3" {
			t.Fatalf("wc -l of the fork = %q\n%s", got, res.Steps[3].Local.Stdout)
		}

		// Read your writes: a macro just set through node 0 is there, at
		// that revision, through node 2 at once (reads go to the stream
		// leader, not to a replica that may lag).
		for i := range 20 {
			name := fmt.Sprintf("rw%d", i)
			set, err := m0.Set(ctx, name, fmt.Sprintf("all:ping %d", i))
			if err != nil {
				t.Fatal(err)
			}
			got, err := m2.Get(ctx, name)
			if err != nil || got.Revision != set.Revision {
				t.Fatalf("get %s right after set: %+v %v (set %d)", name, got, err, set.Revision)
			}
			if err := m2.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := m0.Get(ctx, name); !errors.Is(err, mesh.ErrMacroNotFound) {
				t.Fatalf("get %s right after delete: %v", name, err)
			}
		}

		// Updating, deleting.
		upd, err := m2.Set(ctx, "health", "all:ping")
		if err != nil || upd.Revision <= set.Revision {
			t.Fatalf("update: %+v %v", upd, err)
		}
		if got, err := m0.Get(ctx, "health"); err != nil || got.Text != "all:ping" || got.Revision != upd.Revision {
			t.Fatalf("get after update: %+v %v", got, err)
		}
		if err := m0.Delete(ctx, "outer"); err != nil {
			t.Fatal(err)
		}
		if _, err := m2.Get(ctx, "outer"); !errors.Is(err, mesh.ErrMacroNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
		if err := m2.Delete(ctx, "outer"); !errors.Is(err, mesh.ErrMacroNotFound) || !strings.Contains(err.Error(), "@outer") {
			t.Fatalf("delete twice: %v", err)
		}
		if list, err := m0.List(ctx); err != nil || len(list) != 1 || list[0].Name != "health" {
			t.Fatalf("list after delete: %+v %v", list, err)
		}
	})

	t.Run("MacroErrors", func(t *testing.T) {
		ctx := context.Background()
		m, err := c.Macros(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"", "9lives", "has space", "dot.ted", strings.Repeat("a", 65)} {
			if _, err := m.Set(ctx, name, "all:ping"); !errors.Is(err, mesh.ErrMacroName) {
				t.Fatalf("set %q: %v", name, err)
			}
		}
		var ce *mesh.ComposeError
		if _, err := m.Set(ctx, "broken", "all:ping ->"); !errors.As(err, &ce) || !strings.Contains(err.Error(), "@broken") {
			t.Fatalf("set broken: %v", err)
		}

		// Cycles are refused at set time, naming the path.
		if _, err := m.Set(ctx, "self", "all:ping -> @self"); !errors.Is(err, mesh.ErrMacroCycle) ||
			!strings.Contains(err.Error(), "@self -> @self") {
			t.Fatalf("set self: %v", err)
		}
		if _, err := m.Set(ctx, "ca", "[@cb, all:ping]"); err != nil { // cb does not exist yet: allowed
			t.Fatal(err)
		}
		if _, err := m.Set(ctx, "cb", "all:ping | wc -l"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Set(ctx, "cb", "3.12:ping -> @ca"); !errors.Is(err, mesh.ErrMacroCycle) ||
			!strings.Contains(err.Error(), "@cb -> @ca -> @cb") {
			t.Fatalf("set cb closing a cycle: %v", err)
		}
		if got, _ := m.Get(ctx, "cb"); got.Text != "all:ping | wc -l" {
			t.Fatalf("a refused set changed cb to %q", got.Text)
		}

		// A cycle written around Set (as two racing Sets could) is refused
		// at run time before anything runs.
		js, err := jetstream.New(c.Conn())
		if err != nil {
			t.Fatal(err)
		}
		kv, err := js.KeyValue(ctx, mesh.MacroBucket)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range map[string]string{"rx": "all:ping -> @ry", "ry": "[3.13:ping, @rz]", "rz": "@rx", "bad": "all:"} {
			if _, err := kv.PutString(ctx, k, v); err != nil {
				t.Fatal(err)
			}
		}
		marker := filepath.Join(t.TempDir(), "ran")
		err = runErr(t, rs.c2, "all:ping | touch "+marker+" -> @rx", mesh.RunOptions{})
		if !errors.Is(err, mesh.ErrMacroCycle) || !strings.Contains(err.Error(), "@rx -> @ry -> @rz -> @rx") {
			t.Fatalf("run cycle: %v", err)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a step ran before the cycle was refused: %v", err)
		}
		// A stored macro that does not parse: its ComposeError, named.
		if err := runErr(t, c, "@bad", mesh.RunOptions{}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "@bad") {
			t.Fatalf("run bad: %v", err)
		}

		// Unknown macros, directly and from a macro.
		if err := runErr(t, c, "@nosuch", mesh.RunOptions{}); !errors.Is(err, mesh.ErrMacroNotFound) || !strings.Contains(err.Error(), "@nosuch") {
			t.Fatalf("run nosuch: %v", err)
		}
		if _, err := m.Set(ctx, "callsmissing", "[all:ping, @missing]"); err != nil {
			t.Fatal(err)
		}
		err = runErr(t, c, "@callsmissing", mesh.RunOptions{})
		if !errors.Is(err, mesh.ErrMacroNotFound) || !strings.Contains(err.Error(), "@missing") ||
			!strings.Contains(err.Error(), "called from @callsmissing") {
			t.Fatalf("run callsmissing: %v", err)
		}
	})

	t.Run("MacroDepthLimit", func(t *testing.T) {
		ctx := context.Background()
		m, err := c.Macros(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// d1 -> d2 -> … -> d17: sixteen levels are allowed, seventeen not.
		name := func(i int) string { return fmt.Sprintf("d%d", i) }
		if _, err := m.Set(ctx, name(17), "3.13.1:ping"); err != nil {
			t.Fatal(err)
		}
		for i := 16; i >= 2; i-- {
			if _, err := m.Set(ctx, name(i), "@"+name(i+1)); err != nil {
				t.Fatalf("set %s: %v", name(i), err)
			}
		}
		if res := run(t, c, "@d2", mesh.RunOptions{}); !res.OK || len(res.Steps[0].Via) != 16 {
			t.Fatalf("%s via %v", stepLine(res), res.Steps[0].Via)
		}
		if _, err := m.Set(ctx, name(1), "@d2"); !errors.Is(err, mesh.ErrMacroDepth) || !strings.Contains(err.Error(), "@d1 -> @d2") {
			t.Fatalf("set d1: %v", err)
		}
		// The same at run time, with a loader of our own.
		load := func(_ context.Context, n string) (string, error) {
			if n == "d1" {
				return "@d2", nil
			}
			return m.Text(ctx, n)
		}
		if err := runErr(t, c, "@d1", mesh.RunOptions{Macros: load}); !errors.Is(err, mesh.ErrMacroDepth) ||
			!strings.Contains(err.Error(), "@d17") {
			t.Fatalf("run d1: %v", err)
		}
	})

	t.Run("ManySharedCallsAreBounded", func(t *testing.T) {
		// Each level calls the next one 16 times: 16^4 steps if expanded.
		texts := map[string]string{"l4": "3.13.1:ping"}
		for i := 3; i >= 0; i-- {
			refs := strings.Repeat(fmt.Sprintf("@l%d, ", i+1), 15) + fmt.Sprintf("@l%d", i+1)
			texts[fmt.Sprintf("l%d", i)] = "[" + refs + "]"
		}
		load := func(_ context.Context, n string) (string, error) {
			if t, ok := texts[n]; ok {
				return t, nil
			}
			return "", mesh.ErrMacroNotFound
		}
		if err := runErr(t, c, "@l0", mesh.RunOptions{Macros: load}); !errors.Is(err, mesh.ErrPlan) ||
			!strings.Contains(err.Error(), fmt.Sprint(mesh.MaxRunSteps)) {
			t.Fatalf("run l0: %v", err)
		}
	})

	t.Run("CanceledRunSkipsTheRest", func(t *testing.T) {
		e, err := mesh.ParseComposition("3.13.1:gauge cpu interval=2s -> all:ping")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		res, err := c.RunComposition(ctx, e, mesh.RunOptions{Timeout: 20 * time.Second})
		if !errors.Is(err, context.DeadlineExceeded) || res == nil || res.OK || res.Steps[1].Status != mesh.StepSkipped {
			t.Fatalf("%v %+v", err, res)
		}
	})
}

func TestGatherText(t *testing.T) {
	res := mesh.GatherResult{Results: []mesh.NodeResult{
		{Chevron: "1", Name: "rn1", Status: "ok", Text: "os linux\nkernel 6.1\n"},
		{Chevron: "2", Name: "rn2", Status: "ok", Output: json.RawMessage("{\n \"a\": 1\n}")},
		{Chevron: "3", Name: "rn3", Status: "timeout", Error: "no answer within 1s"},
		{Chevron: "4", Status: "error", Text: "partial", Error: "exec: killed\nafter 1s", Code: "timeout"},
		{Chevron: "5", Name: "rn5", Status: "ok"},
		{Chevron: "6", Name: "rn6", Status: "denied", Code: "denied"},
	}}
	want := "1 rn1: os linux\n1 rn1: kernel 6.1\n" +
		"2 rn2: {\"a\":1}\n" +
		"3 rn3: timeout: no answer within 1s\n" +
		"4: partial\n4: error: exec: killed after 1s\n" +
		"5 rn5: ok\n" +
		"6 rn6: denied: denied\n"
	if got := mesh.GatherText(res); got != want {
		t.Fatalf("GatherText =\n%s\nwant\n%s", got, want)
	}
}

func TestRunCompositionRefusesMalformedExprs(t *testing.T) {
	s := testmesh.Start(t, 1)
	c := s.Client(0)
	for _, tc := range []struct {
		name string
		e    mesh.Expr
	}{
		{"nil", nil},
		{"nil pointer", (*mesh.Step)(nil)},
		{"local alone", mesh.Local{Argv: []string{"true"}}},
		{"empty fork", mesh.Fork{}},
		{"text pipe into a step", mesh.Pipe{Left: mesh.Step{Selector: "all", Verb: "ping"}, Right: mesh.Step{Selector: "all", Verb: "ping"}, Kind: mesh.PipeText}},
		{"json pipe into a local", mesh.Pipe{Left: mesh.Step{Selector: "all", Verb: "ping"}, Right: mesh.Local{Argv: []string{"true"}}, Kind: mesh.PipeJSON}},
		{"pipe of no kind", mesh.Pipe{Left: mesh.Step{Selector: "all", Verb: "ping"}, Right: mesh.Step{Selector: "all", Verb: "ping"}}},
		{"empty argv", mesh.Pipe{Left: mesh.Step{Selector: "all", Verb: "ping"}, Right: mesh.Local{}, Kind: mesh.PipeText}},
		{"bad macro name", mesh.MacroRef{Name: "a.b"}},
		{"bad verb", mesh.Step{Selector: "all", Verb: "a.b"}},
	} {
		res, err := c.RunComposition(context.Background(), tc.e, mesh.RunOptions{})
		if err == nil || res != nil {
			t.Errorf("%s: %v %+v", tc.name, err, res)
		}
	}
	// Pointers to the Expr types are accepted like the values.
	res, err := c.RunComposition(context.Background(), &mesh.Pipe{Left: &mesh.Step{Selector: "all", Verb: "ping"},
		Right: &mesh.Local{Argv: []string{"cat"}}, Kind: mesh.PipeText}, mesh.RunOptions{Timeout: 20 * time.Second})
	if err != nil || !res.OK || res.Steps[1].Local.Stdout != "1 rn1: pong\n" {
		t.Fatalf("%v %+v", err, res)
	}
}
