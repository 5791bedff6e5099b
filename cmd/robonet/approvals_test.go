package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

func TestApprovalArgumentErrors(t *testing.T) {
	// Refused before any connection is tried.
	srv := []string{"--server", "nats://127.0.0.1:1", "--nkey", "/nonexistent"}
	for _, tc := range []struct {
		args []string
		want []string // in stderr
	}{
		{[]string{"approve"}, []string{"one argument", "got 0", "robonet approvals lists them"}},
		{[]string{"approve", "a", "b"}, []string{"one argument", "got 2"}},
		{[]string{"approve", "3F0C9A1E5B7D42C8A6E1F0B3D9C47A25"}, []string{"invalid approval id", "32 lower-case hex digits"}},
		{[]string{"approve", "3f0c"}, []string{"invalid approval id"}},
		{[]string{"approvals", "extra"}, []string{"unknown command"}},
		{[]string{"run", "all", "exec", "--approval-ttl", "0s", "--", "reboot"}, []string{"--approval-ttl 0s", "at most 24h0m0s"}},
		{[]string{"run", "all", "exec", "--approval-ttl", "25h", "--", "reboot"}, []string{"--approval-ttl 25h0m0s"}},
		{[]string{"run", "all", "exec", "--approval-ttl", "soon", "--", "reboot"}, []string{"invalid argument", "approval-ttl"}},
	} {
		out, errOut, code := robonet(t, append(tc.args, srv...)...)
		if code != 1 || out != "" {
			t.Errorf("%q: exit %d, stdout %q", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
		if strings.Contains(errOut, "connect") {
			t.Errorf("%q: tried to connect: %q", tc.args, errOut)
		}
	}
}

func newUser(t *testing.T) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestApprovalsAndApproveAgainstANode(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath()}
	c := s.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap, err := c.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	opKP, err := mesh.ReadSeed(nd.OperatorSeedPath())
	if err != nil {
		t.Fatal(err)
	}
	requester := newUser(t)

	out, errOut, code := robonet(t, append([]string{"approvals"}, conn...)...)
	if code != 0 || out != "no pending approvals\n" {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	a, err := ap.Request(ctx, requester, "exec", json.RawMessage(`{"argv":["reboot"]}`), 1, 10*time.Minute, time.Now(),
		mesh.WithSelector("all"), mesh.WithFrom("carol"))
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = robonet(t, append([]string{"approvals"}, conn...)...)
	if code != 0 || !strings.Contains(out, "ID ") || !strings.Contains(out, a.ID+"  exec  {\"argv\":[\"reboot\"]}  all") ||
		!strings.Contains(out, "carol (") || !strings.Contains(out, "0/1") || !regexp.MustCompile(`in (9m\d+s|10m0s)\n`).MatchString(out) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	out, errOut, code = robonet(t, append([]string{"approve", a.ID}, conn...)...)
	if code != 0 || out != a.ID+": 1 of 1 approvals; satisfied\n" {
		t.Fatalf("approve: exit %d\n%s\n%s", code, out, errOut)
	}
	// Again with the same key: counts once, says so, exit 0.
	out, errOut, code = robonet(t, append([]string{"approve", a.ID}, conn...)...)
	if code != 0 || out != a.ID+": 1 of 1 approvals; satisfied\n" || !strings.Contains(errOut, "already approved by this key") ||
		!strings.Contains(errOut, "counts once") {
		t.Fatalf("approve again: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = robonet(t, append([]string{"approvals", "--json"}, conn...)...)
	var views []mesh.ApprovalView
	var args bytes.Buffer
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil || len(views) != 1 || views[0].Count != 1 || !views[0].Satisfied ||
		len(views[0].Approvers) != 1 || json.Compact(&args, views[0].Args) != nil || args.String() != `{"argv":["reboot"]}` || views[0].From != "carol" {
		t.Fatalf("approvals --json: exit %d\n%s\n%s", code, out, errOut)
	}

	// Refusals: own request, expired, unknown id.
	own, err := ap.Request(ctx, opKP, "exec", nil, 1, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	old, err := ap.Request(ctx, requester, "exec", nil, 1, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ id, want string }{
		{own.ID, "requester cannot approve its own request"},
		{old.ID, "approval expired at"},
		{"0123456789abcdef0123456789abcdef", "no such approval: 0123456789abcdef0123456789abcdef"},
	} {
		out, errOut, code = robonet(t, append([]string{"approve", tc.id}, conn...)...)
		if code != 1 || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("approve %s: exit %d\n%s\n%s", tc.id, code, out, errOut)
		}
	}
	// --all shows the expired one; --json of approve.
	out, _, code = robonet(t, append([]string{"approvals", "--all"}, conn...)...)
	if code != 0 || !strings.Contains(out, old.ID) || !strings.Contains(out, "expired 59m") {
		t.Fatalf("approvals --all: exit %d\n%s", code, out)
	}
	other := newUser(t)
	b, err := ap.Request(ctx, other, "exec", nil, 2, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code = robonet(t, append([]string{"approve", b.ID, "--json"}, conn...)...)
	var v mesh.ApprovalView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.ID != b.ID || v.Count != 1 || v.Need != 2 || v.Satisfied {
		t.Fatalf("approve --json: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = robonet(t, append([]string{"approve", b.ID, "--nkey", "/nonexistent"}, conn[:2]...)...)
	if code != 1 || out != "" || !strings.Contains(errOut, "seed /nonexistent") {
		t.Fatalf("approve without a key: exit %d\n%s\n%s", code, out, errOut)
	}
}

// syncBuffer is a bytes.Buffer safe to write and read concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// run's approval flow, against a stand-in node (chevron 9) that asks for an
// approval and runs the command once it gets one that matches.
func TestRunWaitsForApprovalAndResends(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	c := s.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap, err := c.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in signs its replies (HCTH) as a node does; it is in no
	// registry, so any valid signature is accepted.
	signer, err := mesh.NewSigner(newUser(t), filepath.Join(t.TempDir(), "stand-in.chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	sub, err := c.Conn().Subscribe("rn.9.cmd.exec", func(m *nats.Msg) {
		var req wire.Request
		_ = json.Unmarshal(m.Data, &req)
		id := m.Header.Get(wire.HdrApproval)
		mu.Lock()
		got = append(got, id)
		mu.Unlock()
		res := wire.Result{ID: req.ID, Chevron: "9", Name: "n9", Status: wire.StatusDenied,
			Error: &wire.Error{Code: wire.CodeApprovalRequired, Msg: "exec needs an approval"}}
		if id != "" {
			if a, _, err := ap.Get(ctx, id); err == nil && a.Check(time.Now()) == nil && a.Verb == req.Verb {
				res = wire.Result{ID: req.ID, Chevron: "9", Name: "n9", Status: wire.StatusOK, Text: "rebooting"}
			}
		}
		b, _ := json.Marshal(res)
		reply := &nats.Msg{Subject: m.Reply, Data: b}
		if signer.SignMsg(reply) == nil {
			_ = c.Conn().PublishMsg(reply)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	g := &globals{nkey: nd.OperatorSeedPath()}
	req := mesh.GatherRequest{Selector: "9", Verb: "exec", Args: json.RawMessage(`{"argv":["reboot"]}`), Timeout: 5 * time.Second, From: "alice"}
	first, err := c.GatherSet(ctx, req, subjects.Selector{}, []wire.Member{{Chevron: "9", Name: "n9"}}, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Approved by another operator while run waits.
	var stderr syncBuffer
	approver := newUser(t)
	line := regexp.MustCompile(`^approval ([0-9a-f]{32}): exec needs 1 approval\(s\); approve with: robonet approve ([0-9a-f]{32})\n`)
	approved := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			if m := line.FindStringSubmatch(stderr.String()); m != nil {
				if m[1] != m[2] {
					approved <- fmt.Errorf("ids differ: %q", m[0])
					return
				}
				_, err := ap.Approve(ctx, approver, m[1], time.Now())
				approved <- err
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		approved <- ctx.Err()
	}()
	res, err := approveAndResend(ctx, &stderr, g, c, req, first, time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	if err := <-approved; err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Results) != 1 || res.Results[0].Text != "rebooting" {
		t.Fatalf("result %+v\n%s", res, stderr.String())
	}
	mu.Lock()
	if len(got) != 2 || got[0] != "" || got[1] == "" {
		t.Fatalf("stand-in got approvals %q", got)
	}
	mu.Unlock()

	// Expired before anyone approved: the node stays denied, and run says why.
	stderr = syncBuffer{}
	first, err = c.GatherSet(ctx, req, subjects.Selector{}, []wire.Member{{Chevron: "9", Name: "n9"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err = approveAndResend(ctx, &stderr, g, c, req, first, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || res.Results[0].Code != wire.CodeApprovalRequired || !strings.Contains(res.Results[0].Error, "expired)") ||
		!strings.Contains(stderr.String(), "expired with 0 of 1 approvals: exec did not run on 1 node(s)") {
		t.Fatalf("after expiry: %+v\n%s", res.Results, stderr.String())
	}

	// Nothing to approve: nothing asked, nothing printed.
	stderr = syncBuffer{}
	okRes := mesh.GatherResult{Results: []mesh.NodeResult{{Chevron: "1", Status: mesh.StatusOK}}}
	if res, err := approveAndResend(ctx, &stderr, g, c, req, okRes, time.Minute); err != nil || len(res.Results) != 1 || stderr.String() != "" {
		t.Fatalf("no approval needed: %+v, %v, %q", res, err, stderr.String())
	}
}

// The whole flow against a real node: exec of a program not on the node's
// --exec-allow list is dangerous; run waits for an approval, an operator
// approves, run sends again and the node runs it once.
func TestRunDangerousCommandEndToEnd(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	c := s.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// bob, an operator, approves.
	bob := newUser(t)
	bobPub, _ := bob.PublicKey()
	bobSeed, _ := bob.Seed()
	bobFile := filepath.Join(t.TempDir(), "bob.nk")
	if err := os.WriteFile(bobFile, append(bobSeed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := c.Identities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.AddUser(ctx, "bob", wire.RoleOperator, bobPub, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	// The node knows bob once it lets him connect.
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		bc, err := mesh.Connect(ctx, mesh.Options{Server: nd.ClientURL(), SeedFile: bobFile})
		if err != nil {
			return err
		}
		bc.Close()
		return nil
	})
	ap, err := c.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var stdout, stderr syncBuffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs([]string{"run", "1", "exec", "--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(),
		"--approval-ttl", "1m", "--timeout", "10s", "--", "echo", "approved"})
	exited := make(chan error, 1)
	go func() { exited <- root.ExecuteContext(ctx) }()

	line := regexp.MustCompile(`approval ([0-9a-f]{32}): exec needs 1 approval\(s\); approve with: robonet approve ([0-9a-f]{32})\n`)
	var id string
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		m := line.FindStringSubmatch(stderr.String())
		if m == nil {
			return fmt.Errorf("no approval line in %q", stderr.String())
		}
		id = m[1]
		return nil
	})
	if _, err := ap.Approve(ctx, bob, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("run: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("run did not end\n%s", stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "approved") || !strings.Contains(out, "1 ok of 1") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
	}

	// The node runs an approval once: sent again with it, it refuses. (A
	// new client: the key's chain moved on in the CLI's block, so the first
	// client's sequence numbers are now stale to the node.)
	res, err := s.Client(0).Gather(ctx, mesh.GatherRequest{Selector: "1", Verb: "exec", Args: json.RawMessage(`{"argv":["echo","approved"]}`),
		Approval: id, Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := res.Results[0]; r.Status != wire.StatusDenied || !strings.Contains(r.Error, "already used") {
		t.Fatalf("second use: %+v", r)
	}
}
