package intents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

func TestPickNodes(t *testing.T) {
	t.Parallel()
	rs := []mesh.NodeResult{
		{Chevron: "1", Status: mesh.StatusOK, Ms: 3},
		{Chevron: "2", Status: mesh.StatusOK, Ms: 9},
		{Chevron: "3", Status: mesh.StatusTimeout},
		{Chevron: "4", Status: mesh.StatusError, Ms: 12},
		{Chevron: "5", Status: mesh.StatusOffline},
		{Chevron: "6", Status: mesh.StatusOK, Ms: 1},
	}
	for _, tc := range []struct {
		pick Pick
		want []string
	}{
		{Pick{Which: PickOK}, []string{"1", "2", "6"}},
		{Pick{Which: PickFailed}, []string{"3", "4", "5"}},
		{Pick{Which: PickAll}, []string{"1", "2", "3", "4", "5", "6"}},
		// Only nodes that answered have a round trip to rank.
		{Pick{Which: PickSlowest, N: 2}, []string{"2", "4"}},
		{Pick{Which: PickFastest, N: 2}, []string{"1", "6"}},
		{Pick{Which: PickSlowest, N: 100}, []string{"1", "2", "4", "6"}},
	} {
		var got []string
		for c := range pickNodes(rs, &tc.pick) {
			got = append(got, c)
		}
		sort.Strings(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.pick, got, tc.want)
		}
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSummarizeScanNamesTheFindings(t *testing.T) {
	t.Parallel()
	clean := command.ScanReport{Findings: []command.Finding{}, Checked: []string{"disk"}}
	bad := command.ScanReport{Findings: []command.Finding{
		{Check: command.CheckDisk, Severity: command.SeverityCritical, Subject: "/", Message: "space 97.0% used on / (ext4, limit 90%)"},
		{Check: command.CheckZombies, Severity: command.SeverityInfo, Subject: "processes", Message: "2 zombie processes (pids 7, 9)"},
	}}
	sr := StepResult{ID: "s1", Selector: "caps=ai", Verb: "scan", Gather: mesh.GatherResult{Results: []mesh.NodeResult{
		{Chevron: "1", Name: "rn1", Status: mesh.StatusOK, Output: mustJSON(t, clean)},
		{Chevron: "2", Name: "rn2", Status: mesh.StatusOK, Output: mustJSON(t, bad)},
		{Chevron: "3", Name: "rn3", Status: mesh.StatusTimeout, Error: "no answer within 10s"},
	}, Summary: mesh.Summary{Total: 3, OK: 2, Timeout: 1}}}
	Summarize(&sr, nil, 0, time.Time{})
	want := strings.Join([]string{
		"s1 scan on caps=ai: 3 nodes, 2 ok, 1 timeout, 1 with findings",
		"    rn1 (1): clean",
		"    rn2 (2): 2 findings",
		"        critical disk: space 97.0% used on / (ext4, limit 90%)",
		"        info zombies: 2 zombie processes (pids 7, 9)",
		"    rn3 (3): timeout: no answer within 10s",
	}, "\n")
	if sr.Summary != want {
		t.Errorf("summary:\n%s\nwant:\n%s", sr.Summary, want)
	}
	if len(sr.Findings) != 1 || sr.Findings[0].Name != "rn2" || len(sr.Findings[0].Findings) != 2 {
		t.Errorf("findings = %+v", sr.Findings)
	}
}

func TestSummarizeGaugeRanksTheTopValues(t *testing.T) {
	t.Parallel()
	reply := func(gs ...command.Gauge) json.RawMessage {
		return mustJSON(t, command.GaugeReply{Metric: "disk", Gauges: gs})
	}
	disk := func(mount string, v float64) command.Gauge {
		return command.Gauge{Name: "disk.used_pct", Value: v, Unit: command.UnitPercent, Labels: map[string]string{"mount": mount}}
	}
	var results []mesh.NodeResult
	for i, pct := range []float64{40, 95, 70, 10} {
		results = append(results, mesh.NodeResult{Chevron: fmt.Sprint(i + 1), Name: fmt.Sprintf("rn%d", i+1), Status: mesh.StatusOK,
			Output: reply(disk("/", pct), disk("/boot", pct/2))})
	}
	// The busiest mount of each node counts; the top 3 are listed.
	sr := StepResult{ID: "s2", Selector: "all", Verb: "gauge", Gather: mesh.GatherResult{Results: results, Summary: mesh.Summary{Total: 4, OK: 4}}}
	Summarize(&sr, json.RawMessage(`{"metric":"disk"}`), 3, time.Time{})
	want := strings.Join([]string{
		"s2 gauge disk on all: 4 nodes, 4 ok",
		"    top disk.used_pct: rn2 (2) 95.0% (/), rn3 (3) 70.0% (/), rn1 (1) 40.0% (/)",
		"    rn1 (1): ok: disk.used_pct 40.0% (/)",
		"    rn2 (2): ok: disk.used_pct 95.0% (/)",
		"    rn3 (3): ok: disk.used_pct 70.0% (/)",
		"    rn4 (4): ok: disk.used_pct 10.0% (/)",
	}, "\n")
	if sr.Summary != want {
		t.Errorf("summary:\n%s\nwant:\n%s", sr.Summary, want)
	}
	// Network rates add up over interfaces.
	net := func(iface string, v float64) command.Gauge {
		return command.Gauge{Name: "net.rx_rate", Value: v, Unit: command.UnitBytesPerSec, Labels: map[string]string{"iface": iface}}
	}
	sr = StepResult{ID: "s1", Selector: "rn1", Verb: "gauge", Gather: mesh.GatherResult{Results: []mesh.NodeResult{
		{Chevron: "1", Name: "rn1", Status: mesh.StatusOK, Output: reply(net("eth0", 1024), net("eth1", 2048))},
	}}}
	Summarize(&sr, json.RawMessage(`{"metric":"net"}`), 3, time.Time{})
	if len(sr.Top) != 1 || sr.Top[0].Value != 3072 || !strings.Contains(sr.Summary, "rn1 (1) 3.0 KiB/s") {
		t.Errorf("net: %+v\n%s", sr.Top, sr.Summary)
	}
}

func TestSummarizeBoundsItsLines(t *testing.T) {
	t.Parallel()
	var results []mesh.NodeResult
	for i := range 50 {
		results = append(results, mesh.NodeResult{Chevron: fmt.Sprint(i + 1), Status: mesh.StatusError, Error: "boom\nsecond line"})
	}
	sr := StepResult{ID: "s1", Selector: "all", Verb: "ping", Gather: mesh.GatherResult{Results: results}}
	Summarize(&sr, nil, 0, time.Time{})
	lines := strings.Split(sr.Summary, "\n")
	if len(lines) != 1+maxNotable+1 || lines[0] != "s1 ping on all: 50 nodes, 0 ok, 50 error" ||
		lines[len(lines)-1] != "    … and 30 more" || lines[1] != "    1: error: boom second line" {
		t.Errorf("summary:\n%s", sr.Summary)
	}
}

func TestRunValidatesFirst(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	bad := Plan{Steps: []Step{{ID: "s1", Selector: "all", Verb: "launch"}}}
	if _, err := Run(context.Background(), nil, cat, bad, RunOptions{}, nil); !errors.Is(err, ErrPlan) {
		t.Errorf("invalid plan: %v, want ErrPlan", err)
	}
	good := Plan{Steps: []Step{{ID: "s1", Selector: "all", Verb: "ping"}}}
	if _, err := Run(context.Background(), nil, cat, good, RunOptions{}, nil); !errors.Is(err, ErrRun) {
		t.Errorf("no client: %v, want ErrRun", err)
	}
	if _, err := Run(context.Background(), nil, cat, good, RunOptions{Timeout: -time.Second, DryRun: true}, nil); !errors.Is(err, ErrRun) {
		t.Errorf("negative timeout: %v, want ErrRun", err)
	}
}

func TestRunDryRunWithoutAClient(t *testing.T) {
	t.Parallel()
	cat := ruleCatalogue(t)
	p, err := PlanRules("ping everything, then get cpu from the 2 busiest of the ones that answered slowly", cat, ExampleVocabulary())
	if err != nil {
		t.Fatal(err)
	}
	var events []StepEvent
	res, err := Run(context.Background(), nil, cat, p, RunOptions{DryRun: true}, func(e StepEvent) { events = append(events, e) })
	if err != nil {
		t.Fatal(err)
	}
	want := "s1 ping on all: would run (dry run, nothing sent)\n" +
		"s2 gauge cpu on all: would run (dry run, nothing sent); only the slowest 3 nodes of s1, busiest first, at most 2 nodes"
	if !res.DryRun || res.Summary != want {
		t.Errorf("summary:\n%s\nwant:\n%s", res.Summary, want)
	}
	for _, s := range res.Steps {
		if s.Status != StepPlanned || len(s.Gather.Results) != 0 {
			t.Errorf("step %s: %s, %d results", s.ID, s.Status, len(s.Gather.Results))
		}
	}
	if len(events) != 2 || events[0].Kind != EventDone || events[1].Result.ID != "s2" {
		t.Errorf("events: %+v", events)
	}
}

// runSwarm is a three-node swarm: rn1 declares ai, rn2 ai and gpu, rn3
// nothing.
func runSwarm(t *testing.T) (*testmesh.Swarm, *mesh.Client, Vocabulary) {
	t.Helper()
	s := testmesh.Start(t, 3, testmesh.WithCaps([]string{"ai"}, []string{"ai", "gpu"}, nil))
	s.WaitAlive(30 * time.Second)
	c := s.Client(0)
	var vocab Vocabulary
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		ms, err := c.Nodes(context.Background())
		if err != nil {
			return err
		}
		vocab = VocabularyFrom(ms)
		if len(ms) != 3 || !slices.Equal(vocab.Caps, []string{"ai", "gpu"}) {
			return fmt.Errorf("registry: %d members, caps %v", len(ms), vocab.Caps)
		}
		return nil
	})
	return s, c, vocab
}

// recorder keeps a run's progress events.
type recorder struct {
	mu     sync.Mutex
	events []StepEvent
}

func (r *recorder) add(e StepEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func runPlan(t *testing.T, c *mesh.Client, cat *command.Catalogue, sentence string, vocab Vocabulary, opts RunOptions) (Result, *recorder) {
	t.Helper()
	p, err := PlanRules(sentence, cat, vocab)
	if err != nil {
		t.Fatalf("plan %q: %v", sentence, err)
	}
	rec := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Run(ctx, c, cat, p, opts, rec.add)
	if err != nil {
		t.Fatalf("run %q: %v", sentence, err)
	}
	return res, rec
}

// Not parallel: the swarm's goroutines must be gone when it ends.
func TestRunOnRealNodes(t *testing.T) {
	t.Cleanup(func() { testmesh.CheckNoLeaks(t) })
	_, c, vocab := runSwarm(t)
	cat := ruleCatalogue(t)
	opts := RunOptions{Timeout: 10 * time.Second}

	t.Run("then", func(t *testing.T) {
		res, rec := runPlan(t, c, cat, "ping everything, then get cpu from the 2 slowest", vocab, opts)
		if len(res.Steps) != 2 {
			t.Fatalf("%d steps", len(res.Steps))
		}
		s1, s2 := res.Steps[0], res.Steps[1]
		if s1.Status != StepOK || s1.Gather.Summary.Total != 3 || s1.Gather.Summary.OK != 3 {
			t.Fatalf("s1: %s %s", s1.Status, s1.Gather.Summary.Line)
		}
		// s2 goes to exactly the two slowest answers of s1, each sent
		// to on its own (no prefix publish reaching the third node).
		ranked := slices.Clone(s1.Gather.Results)
		slices.SortStableFunc(ranked, func(a, b mesh.NodeResult) int {
			switch {
			case a.Ms > b.Ms:
				return -1
			case a.Ms < b.Ms:
				return 1
			}
			return 0
		})
		want := []string{ranked[0].Chevron, ranked[1].Chevron}
		var got []string
		for _, r := range s2.Gather.Results {
			got = append(got, r.Chevron)
			if r.Unexpected || r.Status != mesh.StatusOK {
				t.Errorf("s2 result %+v", r)
			}
		}
		sort.Strings(want)
		sort.Strings(got)
		if s2.Status != StepOK || !slices.Equal(got, want) {
			t.Fatalf("s2 went to %v, want the two slowest of s1 %v (s1: %+v)", got, want, s1.Gather.Results)
		}
		if len(s2.Top) != 2 || s2.Top[0].Gauge != "cpu.busy_pct" || s2.Top[0].Value < s2.Top[1].Value {
			t.Errorf("s2 top: %+v", s2.Top)
		}
		// Each step names each of its nodes with its verdict.
		lines := strings.Split(res.Summary, "\n")
		if len(lines) != 1+3+1+1+2 || lines[0] != "s1 ping on all: 3 nodes, 3 ok" || !strings.HasPrefix(lines[4], "s2 gauge cpu on all: 2 nodes, 2 ok") ||
			!strings.HasPrefix(lines[5], "    top cpu.busy_pct: ") {
			t.Errorf("summary:\n%s", res.Summary)
		}
		for i, v := range s1.Verdicts {
			r := s1.Gather.Results[i]
			if v.Chevron != r.Chevron || v.Verdict != "ok" || !strings.HasSuffix(v.Detail, " ms") ||
				!strings.HasPrefix(lines[1+i], "    "+r.Name+" ("+r.Chevron+"): ok: ") {
				t.Errorf("s1 verdict %d: %+v, line %q", i, v, lines[1+i])
			}
		}
		if len(s2.Verdicts) != 2 || !strings.HasPrefix(s2.Verdicts[0].Detail, "cpu.busy_pct ") {
			t.Errorf("s2 verdicts: %+v", s2.Verdicts)
		}
		// Progress: each step starts, its nodes settle, it ends, in order.
		var kinds []string
		for _, e := range rec.events {
			kinds = append(kinds, e.Step+":"+e.Kind)
		}
		wantKinds := []string{"s1:start", "s1:node", "s1:node", "s1:node", "s1:done", "s2:start", "s2:node", "s2:node", "s2:done"}
		if !slices.Equal(kinds, wantKinds) {
			t.Errorf("events %v, want %v", kinds, wantKinds)
		}
	})

	t.Run("scan", func(t *testing.T) {
		res, _ := runPlan(t, c, cat, "scan AI nodes for anomalies", vocab, RunOptions{Timeout: 30 * time.Second})
		s1 := res.Steps[0]
		if s1.Selector != "caps=ai" || s1.Gather.Summary.Total != 2 || s1.Status != StepOK {
			t.Fatalf("s1: %s on %s: %s %+v", s1.Status, s1.Selector, s1.Gather.Summary.Line, s1.Gather.Results)
		}
		// What the summary names is what the nodes reported.
		withFindings := 0
		for _, r := range s1.Gather.Results {
			var rep command.ScanReport
			if err := json.Unmarshal(r.Output, &rep); err != nil {
				t.Fatalf("%s: %v", r.Chevron, err)
			}
			if len(rep.Findings) == 0 {
				continue
			}
			withFindings++
			i := slices.IndexFunc(s1.Findings, func(nf NodeFindings) bool { return nf.Chevron == r.Chevron })
			if i < 0 || len(s1.Findings[i].Findings) != len(rep.Findings) {
				t.Errorf("%s: findings %+v, reported %+v", r.Chevron, s1.Findings, rep.Findings)
			}
			// One line per check and severity (README): its first finding,
			// and how many more there are ("(and 2 more)" for three new
			// listening ports on a busy host).
			type group struct{ sev, check string }
			first, count := map[group]string{}, map[group]int{}
			for _, f := range rep.Findings {
				g := group{string(f.Severity), f.Check}
				if _, ok := first[g]; !ok {
					first[g] = f.Message
				}
				count[g]++
			}
			for g, msg := range first {
				line := fmt.Sprintf("%s %s: %s", g.sev, g.check, msg)
				if count[g] > 1 {
					line += fmt.Sprintf(" (and %d more)", count[g]-1)
				}
				if !strings.Contains(res.Summary, line) {
					t.Errorf("summary does not name %s's findings as %q:\n%s", r.Chevron, line, res.Summary)
				}
			}
		}
		head := fmt.Sprintf("s1 scan on caps=ai: 2 nodes, 2 ok, %d with findings", withFindings)
		if len(s1.Findings) != withFindings || !strings.HasPrefix(res.Summary, head) {
			t.Errorf("summary:\n%s\nwant it to start %q", res.Summary, head)
		}
	})

	t.Run("skipped", func(t *testing.T) {
		res, _ := runPlan(t, c, cat, "ping the gpu nodes, then scan the ones that failed", vocab, opts)
		s2 := res.Steps[1]
		if res.Steps[0].Status != StepOK || s2.Status != StepSkipped || s2.Reason != "no failed nodes among the 1 results of s1" {
			t.Errorf("s2: %s %q", s2.Status, s2.Reason)
		}
		if !strings.Contains(res.Summary, "s2 scan on caps=gpu: skipped: no failed nodes") {
			t.Errorf("summary:\n%s", res.Summary)
		}
		p := Plan{Steps: []Step{{ID: "s1", Selector: "caps=none", Verb: "ping"},
			{ID: "s2", Selector: "all", Verb: "ping", DependsOn: []string{"s1"}, From: &Pick{Step: "s1", Which: PickAll}}}}
		r, err := Run(context.Background(), c, cat, p, opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Steps[0].Reason != "no nodes matched caps=none among the 3 in the registry" || r.Steps[1].Reason != "s1 was skipped, so it picked no nodes" {
			t.Errorf("reasons %q, %q", r.Steps[0].Reason, r.Steps[1].Reason)
		}
	})

	t.Run("busiest", func(t *testing.T) {
		res, _ := runPlan(t, c, cat, "ping the busiest ai node", vocab, opts)
		if s := res.Steps[0]; len(s.Targets) != 1 || s.Gather.Summary.Total != 1 || s.Gather.Results[0].Unexpected {
			t.Errorf("targets %v, results %+v", s.Targets, s.Gather.Results)
		}
	})
}

// A dry run sends no command: watched from another node, the first
// command seen after it is the one a real run sent next over the same
// connection (NATS keeps one connection's messages in order).
func TestRunDryRunSendsNothing(t *testing.T) {
	t.Cleanup(func() { testmesh.CheckNoLeaks(t) })
	s, c, vocab := runSwarm(t)
	cat := ruleCatalogue(t)
	watch := s.Client(1).Conn()
	cmds := make(chan *nats.Msg, 64)
	sub, err := watch.ChanSubscribe("rn.>", cmds)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := watch.Flush(); err != nil {
		t.Fatal(err)
	}
	res, _ := runPlan(t, c, cat, "restart nginx on the ai nodes, then scan them", vocab, RunOptions{DryRun: true})
	if res.Steps[0].Status != StepPlanned || len(res.Steps[0].Gather.Results) != 0 {
		t.Fatalf("dry run: %+v", res.Steps[0])
	}
	runPlan(t, c, cat, "ping rn3", vocab, RunOptions{Timeout: 5 * time.Second})
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-cmds:
			if !strings.Contains(m.Subject, ".cmd.") {
				continue // heartbeats and events
			}
			if strings.HasSuffix(m.Subject, ".cmd.ping") {
				return
			}
			t.Fatalf("the dry run sent %s", m.Subject)
		case <-deadline:
			t.Fatal("the ping after the dry run was never seen")
		}
	}
}

func TestVerdicts(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	now := started.Add(3*time.Hour + 12*time.Minute + 500*time.Millisecond)
	findings := command.ScanReport{Findings: []command.Finding{
		{Check: command.CheckDisk, Severity: command.SeverityWarning, Subject: "/", Message: "space 93.0% used on /"},
		{Check: command.CheckZombies, Severity: command.SeverityInfo, Message: "2 zombie processes"},
	}}
	cpu := command.GaugeReply{Metric: "cpu", Gauges: []command.Gauge{{Name: "cpu.busy_pct", Value: 12, Unit: command.UnitPercent}}}
	for _, tc := range []struct {
		name, verb string
		args       string
		r          mesh.NodeResult
		want       Verdict
	}{
		{"scan clean", "scan", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, command.ScanReport{Findings: []command.Finding{}})},
			Verdict{Verdict: "clean", Status: "ok"}},
		{"scan findings", "scan", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, findings)},
			Verdict{Verdict: "findings", Detail: "2 findings: warning disk: space 93.0% used on /; info zombies: 2 zombie processes", Status: "ok"}},
		{"ping", "ping", "", mesh.NodeResult{Status: mesh.StatusOK, Ms: 3.14, Text: "pong"},
			Verdict{Verdict: "ok", Detail: "3.1 ms", Status: "ok", Ms: 3}},
		{"slow ping", "ping", "", mesh.NodeResult{Status: mesh.StatusOK, Ms: 25.6}, Verdict{Verdict: "ok", Detail: "26 ms", Status: "ok", Ms: 26}},
		{"gauge", "gauge", `{"metric":"cpu"}`, mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, cpu)},
			Verdict{Verdict: "ok", Detail: "cpu.busy_pct 12.0%", Status: "ok"}},
		{"exec exit 0", "exec", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, command.ExecReply{Stdout: "\nactive\nmore\n"})},
			Verdict{Verdict: "exit 0", Detail: "active", Status: "ok"}},
		{"exec exit 3", "exec", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, command.ExecReply{ExitCode: 3, Stderr: "failing\n"})},
			Verdict{Verdict: "exit 3", Detail: "failing", Status: "ok"}},
		{"exec killed", "exec", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, command.ExecReply{ExitCode: -1, Signal: "KILL"})},
			Verdict{Verdict: "signal KILL", Status: "ok"}},
		{"exec timed out", "exec", "", mesh.NodeResult{Status: mesh.StatusOK, Output: mustJSON(t, command.ExecReply{ExitCode: -1, TimedOut: true})},
			Verdict{Verdict: "timed out", Status: "ok"}},
		{"status", "status", "", mesh.NodeResult{Chevron: "3", Status: mesh.StatusOK,
			Output: mustJSON(t, wire.Status{Chevron: "3", State: "alive", Leader: "3", Started: started})},
			Verdict{Chevron: "3", Verdict: "ok", Detail: "alive, up 3h12m0s, leader", Status: "ok"}},
		{"info", "info", "", mesh.NodeResult{Status: mesh.StatusOK, Text: "linux 6.1 amd64\n4 cpus\n"},
			Verdict{Verdict: "ok", Detail: "linux 6.1 amd64", Status: "ok"}},
		{"offline", "ping", "", mesh.NodeResult{Status: mesh.StatusOffline, Error: "not live in the registry"},
			Verdict{Verdict: "offline", Detail: "not live in the registry", Status: "offline"}},
		{"denied", "exec", "", mesh.NodeResult{Status: mesh.StatusDenied, Code: wire.CodeApprovalRequired, Ms: 2},
			Verdict{Verdict: "denied", Detail: wire.CodeApprovalRequired, Status: "denied", Ms: 2}},
		{"timeout", "scan", "", mesh.NodeResult{Status: mesh.StatusTimeout, Error: "no answer\nwithin 10s"},
			Verdict{Verdict: "timeout", Detail: "no answer within 10s", Status: "timeout"}},
	} {
		got := Verdicts(tc.verb, json.RawMessage(tc.args), []mesh.NodeResult{tc.r}, now)
		if diff := cmp.Diff([]Verdict{tc.want}, got); diff != "" {
			t.Errorf("%s: (-want +got)\n%s", tc.name, diff)
		}
	}
}

// A step over a few nodes names each; over many, it groups the good ones
// and names the others.
func TestSummarizeGroupsManyNodes(t *testing.T) {
	t.Parallel()
	clean := mustJSON(t, command.ScanReport{Findings: []command.Finding{}})
	bad := mustJSON(t, command.ScanReport{Findings: []command.Finding{
		{Check: command.CheckDisk, Severity: command.SeverityWarning, Message: "space 93.0% used on /"}}})
	results := func(n int) []mesh.NodeResult {
		var rs []mesh.NodeResult
		for i := range n {
			r := mesh.NodeResult{Chevron: fmt.Sprintf("3.%d", i+1), Name: fmt.Sprintf("rn%d", i+1), Status: mesh.StatusOK, Output: clean}
			switch i {
			case 1, n - 2:
				r.Output = bad
			case n - 1:
				r = mesh.NodeResult{Chevron: r.Chevron, Name: r.Name, Status: mesh.StatusOffline, Error: "not live"}
			}
			rs = append(rs, r)
		}
		return rs
	}
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{3, []string{
			"s1 scan on all: 3 nodes, 2 ok, 1 offline, 1 with findings",
			"    rn1 (3.1): clean",
			"    rn2 (3.2): 1 finding",
			"        warning disk: space 93.0% used on /",
			"    rn3 (3.3): offline: not live",
		}},
		{100, []string{
			"s1 scan on all: 100 nodes, 99 ok, 1 offline, 2 with findings",
			"    97 clean: rn1, rn3, rn4, rn5, rn6, …",
			"    rn2 (3.2): 1 finding",
			"        warning disk: space 93.0% used on /",
			"    rn99 (3.99): 1 finding",
			"        warning disk: space 93.0% used on /",
			"    rn100 (3.100): offline: not live",
		}},
	} {
		sr := StepResult{ID: "s1", Selector: "all", Verb: "scan", Gather: mesh.GatherResult{Results: results(tc.n)}}
		Summarize(&sr, nil, 0, time.Time{})
		if diff := cmp.Diff(strings.Join(tc.want, "\n"), sr.Summary); diff != "" {
			t.Errorf("%d nodes: (-want +got)\n%s", tc.n, diff)
		}
		if len(sr.Verdicts) != tc.n || sr.Verdicts[1].Verdict != "findings" || sr.Verdicts[tc.n-1].Verdict != "offline" {
			t.Errorf("%d nodes: verdicts %+v", tc.n, sr.Verdicts)
		}
	}
	// Pings of many nodes, all fine: one line for them all.
	var rs []mesh.NodeResult
	for i := range 12 {
		rs = append(rs, mesh.NodeResult{Chevron: fmt.Sprint(i + 1), Name: fmt.Sprintf("rn%d", i+1), Status: mesh.StatusOK, Ms: 1})
	}
	sr := StepResult{ID: "s1", Selector: "all", Verb: "ping", Gather: mesh.GatherResult{Results: rs}}
	Summarize(&sr, nil, 0, time.Time{})
	if want := "s1 ping on all: 12 nodes, 12 ok\n    12 ok: rn1, rn2, rn3, rn4, rn5, …"; sr.Summary != want {
		t.Errorf("pings:\n%s\nwant:\n%s", sr.Summary, want)
	}
}

// Run hands a step its nodes denied for want of an approval to
// RunOptions.Approve; what it returns is the step's gather. A pending
// approval fails the step and skips the rest, without an error.
func TestRunApproveHook(t *testing.T) {
	t.Cleanup(func() { testmesh.CheckNoLeaks(t) })
	s := testmesh.Start(t, 1)
	c := s.Client(0)
	cat := ruleCatalogue(t)
	p := Plan{Steps: []Step{
		{ID: "s1", Selector: "all", Verb: "exec", Args: json.RawMessage(`{"argv":["systemctl","restart","nginx"]}`)},
		{ID: "s2", Selector: "all", Verb: "ping", DependsOn: []string{"s1"}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var asked []mesh.GatherRequest
	opts := RunOptions{Timeout: 10 * time.Second, From: "test", Approve: func(_ context.Context, req mesh.GatherRequest, res mesh.GatherResult) (mesh.GatherResult, error) {
		asked = append(asked, req)
		if n := len(mesh.ApprovalRequired(res)); n != 1 {
			return res, fmt.Errorf("%d nodes need an approval, want 1", n)
		}
		out := res
		out.Results = []mesh.NodeResult{{Chevron: res.Results[0].Chevron, Name: res.Results[0].Name, Status: mesh.StatusOK,
			Output: mustJSON(t, command.ExecReply{Stdout: "restarted"})}}
		out.Summary = mesh.Summarize(out.Results)
		return out, nil
	}}
	res, err := Run(ctx, c, cat, p, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0].Verb != "exec" || asked[0].Selector != "all" || asked[0].From != "test" ||
		res.Steps[0].Status != StepOK || res.Steps[0].Verdicts[0].Verdict != "exit 0" || res.Steps[1].Status != StepOK {
		t.Fatalf("asked %+v\n%s", asked, res.Summary)
	}

	opts.Approve = func(_ context.Context, _ mesh.GatherRequest, res mesh.GatherResult) (mesh.GatherResult, error) {
		return res, fmt.Errorf("approval 0123: %w", ErrApprovalPending)
	}
	res, err = Run(ctx, c, cat, p, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	s1, s2 := res.Steps[0], res.Steps[1]
	if s1.Status != StepFailed || s1.Reason != "not run: approval 0123: approval pending" || s1.Verdicts[0].Verdict != "denied" ||
		s2.Status != StepSkipped || s2.Reason != "s1 waits for an approval" || !strings.Contains(res.Summary, "    not run: approval 0123") {
		t.Fatalf("pending: %+v\n%s", res.Steps, res.Summary)
	}

	opts.Approve = func(_ context.Context, _ mesh.GatherRequest, res mesh.GatherResult) (mesh.GatherResult, error) {
		return res, errors.New("no key")
	}
	if _, err := Run(ctx, c, cat, p, opts, nil); !errors.Is(err, ErrRun) || !strings.Contains(err.Error(), "no key") {
		t.Fatalf("hook error: %v", err)
	}
}
