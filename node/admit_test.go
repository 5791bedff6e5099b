package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// auditWatch collects the audit records of every node.
type auditWatch struct {
	mu  sync.Mutex
	got []node.Audit
}

func watchAudits(t *testing.T, c *mesh.Client) *auditWatch {
	t.Helper()
	w := &auditWatch{}
	sub, err := c.Conn().Subscribe("rn.*.evt.audit", func(m *nats.Msg) {
		var a node.Audit
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("audit %s: %v", m.Data, err)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, a)
		w.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := c.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// find waits for the record of command id and returns it.
func (w *auditWatch) find(t *testing.T, id string) node.Audit {
	t.Helper()
	var out node.Audit
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, a := range w.got {
			if a.ID == id {
				out = a
				return nil
			}
		}
		return fmt.Errorf("no audit record for %s among %d", id, len(w.got))
	})
	return out
}

// The audit record's from is the key whose signature the node verified:
// never what the body or an Rn-From header claims. A command refused
// before its signature verified is audited as from "unverified", with the
// key it claimed; a replay, dropped without an answer, is audited too.
func TestAuditNamesTheVerifiedSigner(t *testing.T) {
	s := testmesh.Start(t, 1)
	admin := s.Client(0)
	adminKey, _ := admin.KeyPair().PublicKey()
	op := s.User(0, "oscar", wire.RoleOperator)
	opKey := op.Signer().PublicKey()
	w := watchAudits(t, admin)
	nc := admin.Conn()
	body := func(id string) []byte {
		b, _ := json.Marshal(wire.Request{Verb: "ping", ID: id, From: adminKey})
		return b
	}

	// Signed by the operator, claiming the admin in the body.
	res, orig := signed(t, nc, op.Signer(), "rn.1.cmd.ping", body("by-op"), 5*time.Second)
	if res == nil || res.Status != wire.StatusOK {
		t.Fatalf("operator's ping: %+v", res)
	}
	if a := w.find(t, "by-op"); a.From != opKey || a.Claimed != "" || a.Status != wire.StatusOK || a.Count != 1 {
		t.Fatalf("operator's ping audited as %+v, want from %s", a, opKey)
	}
	// Its replay: dropped, and audited for the key that signed it.
	if res := send(t, nc, orig, time.Second); res != nil {
		t.Fatalf("replay answered: %+v", res)
	}
	if a := w.find(t, "by-op"); a.From != opKey {
		t.Fatalf("first record changed: %+v", a)
	}
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, a := range w.got {
			if a.ID == "by-op" {
				n++
				if n == 2 && (a.From != opKey || a.Status != node.AuditDropped || a.Code != node.AuditReplay || a.Count != 1) {
					return fmt.Errorf("replay audited as %+v", a)
				}
			}
		}
		if n != 2 {
			return fmt.Errorf("%d records for by-op, want 2 (the ping and its replay)", n)
		}
		return nil
	})

	// Unsigned, claiming the admin in the body.
	res, _ = signed(t, nc, nil, "rn.1.cmd.ping", body("unsigned"), 5*time.Second)
	denied(t, "unsigned", res, "unsigned")
	if a := w.find(t, "unsigned"); a.From != node.AuditUnverified || a.Claimed != "" || a.Status != wire.StatusDenied || a.Code != wire.CodeDenied {
		t.Fatalf("unsigned ping audited as %+v", a)
	}

	// Signed by a stranger under the admin's Rn-From: a bad signature.
	stranger, _ := nkeys.CreateUser()
	strangerKey, _ := stranger.PublicKey()
	ss, err := mesh.NewSigner(stranger, filepath.Join(t.TempDir(), "s"), 0)
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: "rn.1.cmd.ping", Data: body("forged")}
	if err := ss.SignMsg(m); err != nil {
		t.Fatal(err)
	}
	m.Header.Set(wire.HdrFrom, adminKey)
	denied(t, "forged", send(t, nc, m, 5*time.Second), "signature")
	if a := w.find(t, "forged"); a.From != node.AuditUnverified || a.Claimed != adminKey || a.Status != wire.StatusDenied {
		t.Fatalf("forged ping audited as %+v, want unverified claiming %s", a, adminKey)
	}

	// Signed by the stranger as itself: an unknown key.
	res, _ = signed(t, nc, ss, "rn.1.cmd.ping", body("stranger"), 5*time.Second)
	denied(t, "unknown key", res, "not a user or node")
	if a := w.find(t, "stranger"); a.From != node.AuditUnverified || a.Claimed != strangerKey {
		t.Fatalf("stranger's ping audited as %+v, want unverified claiming %s", a, strangerKey)
	}
	pingOK(t, admin, 1)
}

// A key no node knows, signed properly: every node answers denied at once
// (long before the gather's timeout), naming the key, and audits it as
// unverified with the key it claimed.
func TestUnknownKeyIsDeniedAtOnceByEveryNode(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	admin := s.Client(0)
	w := watchAudits(t, admin)
	stranger, _ := nkeys.CreateUser()
	strangerKey, _ := stranger.PublicKey()
	ss, err := mesh.NewSigner(stranger, filepath.Join(t.TempDir(), "s"), 0)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 10 * time.Second
	start := time.Now()
	res, err := strangerGather(t, admin, ss, timeout)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.Total != 3 || res.Summary.Denied != 3 || took > timeout/2 {
		t.Fatalf("after %v: %s %+v", took, res.Summary.Line, res.Results)
	}
	for _, r := range res.Results {
		if r.Code != wire.CodeDenied || !strings.Contains(r.Error, strangerKey) {
			t.Fatalf("node %s: %+v", r.Chevron, r)
		}
	}
	t.Logf("unknown key: %s in %v", res.Summary.Line, took.Round(time.Millisecond))
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, a := range w.got {
			if a.Claimed == strangerKey {
				if a.From != node.AuditUnverified || a.Status != wire.StatusDenied || a.Verb != "ping" {
					return fmt.Errorf("audited as %+v", a)
				}
				n++
			}
		}
		if n != 3 {
			return fmt.Errorf("%d audit records of the stranger's ping, want 3", n)
		}
		return nil
	})
}

// Tiers as the catalogue says: a dangerous command (exec of a program not
// on --exec-allow) needs tier 3 — an admin — and a quorum approval. An
// operator (tier 2) is denied even with a valid approval, and is told so
// instead of being asked for one; operators may still approve. An admin is
// asked for an approval, and runs the command once it has one.
func TestDangerousCommandNeedsTierThreeAndApproval(t *testing.T) {
	s := testmesh.Start(t, 1)
	admin := s.Client(0)
	adminKey, _ := admin.KeyPair().PublicKey()
	op := s.User(0, "oscar", wire.RoleOperator)
	obs := s.User(0, "olga", wire.RoleObserver)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ap, err := admin.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args := json.RawMessage(`{"argv":["echo","dangerous"]}`)
	run := func(c *mesh.Client, approval string) mesh.NodeResult {
		t.Helper()
		res, err := c.Gather(ctx, mesh.GatherRequest{Selector: "1", Verb: "exec", Args: args, Approval: approval, Timeout: 10 * time.Second}, nil)
		if err != nil || len(res.Results) != 1 {
			t.Fatalf("gather: %+v %v", res, err)
		}
		return res.Results[0]
	}
	approved := func(requester, approver *mesh.Client) string {
		t.Helper()
		a, err := ap.Request(ctx, requester.KeyPair(), "exec", args, 1, time.Minute, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ap.Approve(ctx, approver.KeyPair(), a.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		return a.ID
	}

	// The operator: refused for its tier, with or without an approval.
	if r := run(op, ""); r.Status != wire.StatusDenied || r.Code != wire.CodeDenied || !strings.Contains(r.Error, "needs trust tier 3 (an admin)") {
		t.Fatalf("operator without an approval: %+v", r)
	}
	if r := run(op, approved(op, admin)); r.Status != wire.StatusDenied || r.Code != wire.CodeDenied ||
		!strings.Contains(r.Error, "needs trust tier 3 (an admin)") || !strings.Contains(r.Error, "(operator) has tier 2") {
		t.Fatalf("operator with an admin's approval: %+v", r)
	}
	// An observer may not publish exec at all; sent through the admin's
	// connection, the node refuses it for its tier too.
	exec, _ := json.Marshal(wire.Request{Verb: "exec", Args: args, ID: "obs"})
	if r, _ := signed(t, admin.Conn(), obs.Signer(), "rn.1.cmd.exec", exec, 5*time.Second); r == nil || r.Status != wire.StatusDenied ||
		!strings.Contains(r.Error.Msg, "(observer) has tier 1") {
		t.Fatalf("observer: %+v", r)
	}
	// The admin: asked for an approval, then runs it with an operator's.
	if r := run(admin, ""); r.Status != wire.StatusDenied || r.Code != wire.CodeApprovalRequired {
		t.Fatalf("admin without an approval: %+v", r)
	}
	if r := run(admin, approved(admin, op)); r.Status != wire.StatusOK || !strings.Contains(r.Text, "dangerous") {
		t.Fatalf("admin with an operator's approval: %+v (admin %s)", r, adminKey)
	}
}

// strangerGather sends `ping` to every node signed by ss, a key no node
// knows, through admin's connection (which may publish anything; the
// nodes' replies come back to it). The member list comes from the admin's
// verified query: the nodes answer no query from a key they do not know.
func strangerGather(t *testing.T, admin *mesh.Client, ss *mesh.Signer, timeout time.Duration) (mesh.GatherResult, error) {
	t.Helper()
	set, err := admin.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sel, err := subjects.ParseSelector("all")
	if err != nil {
		t.Fatal(err)
	}
	sc := mesh.NewClient(admin.Conn()).WithSigner(ss).WithVerify()
	return sc.GatherSet(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: timeout}, sel, set, nil)
}
