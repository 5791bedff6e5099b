package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ask end to end on a real node: the headline sentence runs; --dry-run
// --json shows the plan and sends nothing; a mutating plan without a
// terminal and without --yes is refused; nonsense is not understood.
func TestAsk(t *testing.T) {
	t.Setenv("ROBONET_LLM_URL", "")
	t.Setenv("ROBONET_LLM_MODEL", "")
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.Caps = []string{"ai"} })
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	ask := func(args ...string) (string, string, error) {
		return rncli(t, append(append([]string{"ask"}, args...), base...)...)
	}

	out, stderr, err := ask("scan AI nodes for anomalies")
	if (err != nil && !strings.Contains(err.Error(), "step")) || !strings.Contains(out, "[s1] caps=ai scan") || !strings.Contains(out, "s1 scan on caps=ai: 1 node") {
		t.Fatalf("ask scan: %v\n%s\n%s", err, out, stderr)
	}
	out, _, err = ask("ping everything, then get cpu from the ones that answered slowly", "--dry-run", "--json")
	var res intents.Result
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.DryRun || len(res.Plan.Steps) != 2 || res.Plan.Steps[1].From == nil {
		t.Fatalf("dry run: %v %s", err, out)
	}
	start := time.Now()
	if _, _, err := ask("restart nginx on all nodes"); err == nil || !strings.Contains(err.Error(), "--yes") {
		t.Fatalf("mutating without --yes: %v", err)
	}
	t.Logf("refused in %v", time.Since(start))
	if _, _, err := ask("make me a sandwich"); err == nil || !strings.Contains(err.Error(), "did not understand") {
		t.Fatalf("nonsense: %v", err)
	}
	// Unsure, without a terminal: exit 1 naming the readings; nothing runs.
	if _, _, err := ask("nginx on all nodes"); err == nil || !strings.Contains(err.Error(), "it could mean 1) exec systemctl is-active nginx on all (dangerous)") {
		t.Fatalf("ambiguous: %v", err)
	}
	if _, _, err := ask("ping all; rm -rf /"); err == nil {
		t.Fatal("a sentence smuggling shell was planned")
	}
	if _, _, err := ask("ping all", "--planner", "magic"); err == nil || !strings.Contains(err.Error(), "--planner") {
		t.Fatalf("bad --planner: %v", err)
	}
}

// The headline: `robonet ask "scan AI nodes for anomalies"` on a swarm where
// one ai node has an injected anomaly (its CPU pinned after a normal
// baseline): the summary names that node and the Sentinels' finding.
func TestAskFindsTheAnomalousAINode(t *testing.T) {
	t.Setenv("ROBONET_LLM_URL", "")
	var pinned atomic.Bool
	s := testmesh.Start(t, 3, func(i int, o *node.Options) {
		o.Caps = []string{"ai"}
		o.Timing.Heartbeat = 100 * time.Millisecond
		o.Sentinel = sentinel.Config{Window: 300 * time.Millisecond, WarmUp: 8, History: 40, QuarantineAfter: 3,
			Quiet: time.Minute, Heartbeat: 100 * time.Millisecond}
		o.Gauges = func() (float64, float64, float64) {
			if i == 2 && pinned.Load() {
				return 1, 0.4, 0.3
			}
			return 0.2, 0.4, 0.3
		}
	})
	s.WaitAlive(20 * time.Second)
	victim := s.Node(2)
	testmesh.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for _, f := range s.Node(0).SentinelView(victim.Chevron().String()) {
			if f.Signal == sentinel.CPU && !strings.Contains(f.Detail, "warming") {
				return nil
			}
		}
		return errors.New("baseline not warm")
	})
	pinned.Store(true)
	nd := s.Node(0)
	base := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}
	testmesh.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		out, _, _ := rncli(t, append([]string{"ask", "scan AI nodes for anomalies"}, base...)...)
		i := strings.Index(out, victim.Name()+" ("+victim.Chevron().String()+")")
		if i < 0 || !strings.Contains(out[i:], "sentinel") || !strings.Contains(out[i:], "cpu") {
			return fmt.Errorf("summary does not name %s with a sentinel cpu finding:\n%s", victim.Name(), out)
		}
		// Every node scanned is named with its verdict, not only the
		// one with findings.
		for _, nd := range s.Live() {
			if !regexp.MustCompile(`(?m)^    ` + regexp.QuoteMeta(nd.Name()+" ("+nd.Chevron().String()+"): ") + `(clean|\d+ findings?)`).MatchString(out) {
				return fmt.Errorf("summary does not give %s a verdict:\n%s", nd.Name(), out)
			}
		}
		return nil
	})
	out, _, err := rncli(t, append([]string{"alerts"}, base...)...)
	if err != nil || !strings.Contains(out, victim.Chevron().String()) || !strings.Contains(out, "cpu") {
		t.Fatalf("alerts: %v\n%s", err, out)
	}
}

// openPty returns the terminal end of a new pseudo-terminal, a function
// that types a line into it, and what the terminal shows (echo included).
func openPty(t *testing.T) (*os.File, func(string), *syncBuffer) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	var shown syncBuffer
	drained := make(chan struct{})
	go func() { _, _ = io.Copy(&shown, ptmx); close(drained) }()
	t.Cleanup(func() {
		tty.Close()
		ptmx.Close()
		<-drained
	})
	return tty, func(line string) {
		if _, err := ptmx.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}, &shown
}

func TestPickReadingOnATerminal(t *testing.T) {
	cat, err := localCatalogue()
	if err != nil {
		t.Fatal(err)
	}
	amb := &intents.AmbiguousError{Sentence: "check the ai boxes", Reason: "the two best readings are close (0.46, 0.41)",
		Readings: []intents.Reading{
			{Plan: intents.Plan{Steps: []intents.Step{{ID: "s1", Selector: "caps=ai", Verb: "scan"}}}, Confidence: 0.46, Label: "scan caps=ai (read)"},
			{Plan: intents.Plan{Steps: []intents.Step{{ID: "s1", Selector: "caps=ai", Verb: "ping"}}}, Confidence: 0.41, Label: "ping caps=ai"},
			{Plan: intents.Plan{Steps: []intents.Step{{ID: "s1", Selector: "caps=ai", Verb: "exec",
				Args: json.RawMessage(`{"argv":["reboot"]}`)}}}, Confidence: 0.2, Label: "exec reboot on caps=ai"},
		}}
	tty, typeLine, _ := openPty(t)
	if !isTerminal(tty) || isTerminal(strings.NewReader("1\n")) {
		t.Fatal("isTerminal is wrong about a pty or a string")
	}
	for _, tc := range []struct {
		typed string
		verb  string // "": refused
	}{{"2\n", "ping"}, {"1\n", "scan"}, {"\n", ""}, {"4\n", ""}, {"two\n", ""}} {
		var errw bytes.Buffer
		typeLine(tc.typed)
		plan, err := pickReading(tty, isTerminal(tty), &errw, amb, cat)
		want := []string{"\"check the ai boxes\" can be read more than one way (the two best readings are close (0.46, 0.41)):",
			"  1) scan caps=ai  (read, 0.46)\n", "  2) ping caps=ai  (read, 0.41)\n", "  3) exec reboot on caps=ai  (dangerous, 0.20)\n",
			"which one? [1-3"}
		for _, w := range want {
			if !strings.Contains(errw.String(), w) {
				t.Errorf("%q: prompt lacks %q:\n%s", tc.typed, w, errw.String())
			}
		}
		switch {
		case tc.verb == "" && (err == nil || !strings.Contains(err.Error(), "not run")):
			t.Errorf("%q: %v, want not run", tc.typed, err)
		case tc.verb != "" && (err != nil || len(plan.Steps) != 1 || plan.Steps[0].Verb != tc.verb):
			t.Errorf("%q: %+v, %v; want %s", tc.typed, plan, err, tc.verb)
		}
	}
	// Without a terminal: the error as it is, nothing asked.
	var errw bytes.Buffer
	_, err = pickReading(strings.NewReader("1\n"), false, &errw, amb, cat)
	var got *intents.AmbiguousError
	if !errors.As(err, &got) || got != amb || errw.Len() != 0 {
		t.Errorf("no terminal: %v, %q", err, errw.String())
	}
}

// askSwarm is one node and the flags that reach it, with bob, an operator
// who can approve.
func askSwarm(t *testing.T) (*testmesh.Swarm, []string, nkeys.KeyPair) {
	t.Helper()
	t.Setenv("ROBONET_LLM_URL", "")
	t.Setenv("ROBONET_LLM_MODEL", "")
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	c := s.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob := newUser(t)
	bobPub, _ := bob.PublicKey()
	ids, err := c.Identities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.AddUser(ctx, "bob", wire.RoleOperator, bobPub, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	return s, []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--data", nd.DataDir()}, bob
}

// askApprovalLine is the line ask prints on stderr for a new approval.
var askApprovalLine = regexp.MustCompile(`approval ([0-9a-f]{32}): exec needs 1 approval\(s\); approve with: robonet approve ([0-9a-f]{32})\r?\n`)

// checkNodeRan fails unless ask's --json result shows the node answering
// the exec step with something other than a refusal for want of an
// approval (systemctl may well fail here: no systemd, no nginx).
func checkNodeRan(t *testing.T, out, stderr string) {
	t.Helper()
	var res intents.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Steps) != 1 || len(res.Steps[0].Gather.Results) != 1 {
		t.Fatalf("result: %v\n%s\n%s", err, out, stderr)
	}
	r := res.Steps[0].Gather.Results[0]
	v := res.Steps[0].Verdicts
	if r.Status == mesh.StatusDenied || r.Code == wire.CodeApprovalRequired || len(v) != 1 || v[0].Verdict == "denied" {
		t.Fatalf("the node still refused: %+v, verdicts %+v\n%s", r, v, stderr)
	}
	t.Logf("the node answered %s (%s): %s", r.Status, v[0].Verdict, v[0].Detail)
}

// A dangerous step of ask goes through run's approval flow: ask waits,
// showing a progress line on its terminal, another operator approves, ask
// sends the step again with the approval and the node runs it.
func TestAskWaitsForApproval(t *testing.T) {
	s, base, bob := askSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap, err := s.Client(0).Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tty, _, stderr := openPty(t)
	var stdout syncBuffer
	root := newRoot(&stdout, tty)
	root.SetArgs(append([]string{"ask", "restart nginx on all nodes", "--yes", "--json", "--approval-ttl", "1m"}, base...))
	exited := make(chan error, 1)
	go func() { exited <- root.ExecuteContext(ctx) }()
	var id string
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		m := askApprovalLine.FindStringSubmatch(stderr.String())
		if m == nil {
			return fmt.Errorf("no approval line in %q", stderr.String())
		}
		id = m[1]
		return nil
	})
	if !strings.Contains(stderr.String(), "step s1 needs approval by 1 operator(s) unless the nodes allow the program\r\n") {
		t.Errorf("no warning before the run:\n%q", stderr.String())
	}
	progress := regexp.MustCompile(`\rwaiting for approval ` + id + `: 0 of 1 approvals, (59|[0-5]\d)s left \(robonet approve ` + id + `\)\x1b\[K`)
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !progress.MatchString(stderr.String()) {
			return fmt.Errorf("no progress line in %q", stderr.String())
		}
		return nil
	})
	if _, err := ap.Approve(ctx, bob, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee exitError
		if err != nil && (!errors.As(err, &ee) || ee.code != 2) {
			t.Fatalf("ask: %v\n%s", err, stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("ask did not end\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "approval "+id+": 1 of 1 approvals; sending exec to 1 node(s)") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	checkNodeRan(t, stdout.String(), stderr.String())
}

// On a terminal a mutating plan asks first: "n" runs nothing, "y" runs it.
// With --no-wait the dangerous step records its approval and stops (exit
// 2, the approval pending); asked again with --approval once approved, it
// runs.
func TestAskConfirmsOnATerminalAndNoWait(t *testing.T) {
	s, base, bob := askSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap, err := s.Client(0).Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tty, typeLine, _ := openPty(t)
	ask := func(typed string, args ...string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		root := newRoot(&stdout, &stderr)
		root.SetIn(tty)
		root.SetArgs(append(append([]string{"ask", "restart nginx on all nodes"}, args...), base...))
		if typed != "" {
			typeLine(typed)
		}
		err := root.ExecuteContext(ctx)
		return stdout.String(), stderr.String(), err
	}
	pending := func() []trust.Approval {
		as, err := ap.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return as
	}

	out, stderr, err := ask("n\n", "--no-wait")
	if err == nil || err.Error() != "not run" || !strings.Contains(stderr, "steps s1 change things. Run the plan? [y/N]") ||
		strings.Contains(out, "s1 exec") || len(pending()) != 0 {
		t.Fatalf("n: %v\n%s\n%s", err, out, stderr)
	}

	out, stderr, err = ask("y\n", "--no-wait")
	var ee exitError
	m := askApprovalLine.FindStringSubmatch(stderr)
	if !errors.As(err, &ee) || ee.code != 2 || m == nil {
		t.Fatalf("y --no-wait: %v\n%s\n%s", err, out, stderr)
	}
	id := m[1]
	if want := "not run: approval pending: exec did not run on 1 node(s); approve with: robonet approve " + id +
		"; then run it with: robonet ask 'restart nginx on all nodes' --yes --approval " + id; !strings.Contains(out, want) {
		t.Fatalf("--no-wait summary lacks %q:\n%s", want, out)
	}
	if as := pending(); len(as) != 1 || as[0].ID != id || as[0].Count() != 0 {
		t.Fatalf("pending approvals: %+v", as)
	}
	listed, _, code := robonet(t, append([]string{"approvals"}, base...)...)
	if code != 0 || !strings.Contains(listed, id) || !strings.Contains(listed, "0/1") {
		t.Fatalf("approvals: exit %d\n%s", code, listed)
	}

	if _, err := ap.Approve(ctx, bob, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = ask("", "--yes", "--json", "--approval", id)
	if err != nil && (!errors.As(err, &ee) || ee.code != 2) {
		t.Fatalf("--approval: %v\n%s", err, stderr)
	}
	checkNodeRan(t, out, stderr)
	if _, _, err := ask("", "--yes", "--approval", "0123456789abcdef0123456789abcdef"); err == nil || !strings.Contains(err.Error(), "--approval 0123456789abcdef0123456789abcdef") {
		t.Fatalf("unknown --approval: %v", err)
	}
}

// Bad approval flags are refused before any connection is tried.
func TestAskApprovalFlagErrors(t *testing.T) {
	srv := []string{"--server", "nats://127.0.0.1:1", "--nkey", "/nonexistent"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--approval-ttl", "0s"}, "--approval-ttl 0s"},
		{[]string{"--approval-ttl", "25h"}, "at most 24h0m0s"},
		{[]string{"--approval", "3F0C"}, "--approval: invalid approval id"},
		{[]string{"--no-wait", "--approval", "0123456789abcdef0123456789abcdef"}, "nothing to record"},
	} {
		out, errOut, code := robonet(t, append(append([]string{"ask", "restart nginx on all nodes"}, tc.args...), srv...)...)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "connect") {
			t.Errorf("%q: exit %d\n%s\n%s", tc.args, code, out, errOut)
		}
	}
}

// The real planner, unsure of a sentence, offers its readings on a
// terminal; the one picked goes on as any plan (a mutating one is
// confirmed: "n" runs nothing). A refusal names what is missing.
func TestAskOffersReadingsOnATerminal(t *testing.T) {
	s, base, _ := askSwarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tty, typeLine, _ := openPty(t)
	ask := func(sentence, typed string) (string, string, error) {
		var stdout, stderr bytes.Buffer
		root := newRoot(&stdout, &stderr)
		root.SetIn(tty)
		root.SetArgs(append([]string{"ask", sentence}, base...))
		if typed != "" {
			typeLine(typed)
		}
		err := root.ExecuteContext(ctx)
		return stdout.String(), stderr.String(), err
	}
	out, stderr, err := ask("nginx on all nodes", "1\nn\n")
	if err == nil || err.Error() != "not run" || !strings.Contains(stderr, "can be read more than one way") ||
		!strings.Contains(stderr, "  1) exec systemctl is-active nginx on all  (dangerous, ") ||
		!strings.Contains(out, "exec {\"argv\":[\"systemctl\",\"is-active\",\"nginx\"]}") || !strings.Contains(stderr, "Run the plan? [y/N]") {
		t.Fatalf("pick 1 then no: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr)
	}
	if _, stderr, err := ask("nginx on all nodes", "\n"); err == nil || !strings.Contains(err.Error(), "not run: no reading") {
		t.Fatalf("no pick: %v\n%s", err, stderr)
	}
	_ = s
	if _, _, err := ask("scan the gpu nodes for anomalies", ""); err == nil ||
		!strings.Contains(err.Error(), "no node declares capability gpu") || !strings.Contains(err.Error(), "--caps gpu") {
		t.Fatalf("refusal: %v", err)
	}
}
