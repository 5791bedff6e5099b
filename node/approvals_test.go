package node

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// startJetStream runs a bare embedded nats-server with JetStream and the
// buckets the gate reads, and returns a connection's JetStream.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{BucketApprovals, BucketConfig} {
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

type gateKeys struct {
	requester, op, admin, op2, observer, node, stranger nkeys.KeyPair
}

func (k gateKeys) pub(kp nkeys.KeyPair) string {
	p, _ := kp.PublicKey()
	return p
}

func newGateKeys(t *testing.T) gateKeys {
	t.Helper()
	mk := func() nkeys.KeyPair {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	return gateKeys{requester: mk(), op: mk(), admin: mk(), op2: mk(), observer: mk(), node: mk(), stranger: mk()}
}

// received is req as a node decodes it from what a client sends.
func received(t *testing.T, verb, args string) wire.Request {
	t.Helper()
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	body, err := json.Marshal(wire.Request{Verb: verb, Args: raw, ID: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var req wire.Request
	if err := wire.Decode(body, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestApprovalGateCheck(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ap, err := mesh.NewApprovals(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	k := newGateKeys(t)
	roles := map[string]string{k.pub(k.requester): "operator", k.pub(k.op): "operator", k.pub(k.admin): "admin",
		k.pub(k.op2): "operator", k.pub(k.observer): "observer", k.pub(k.node): "node"}
	roleOf := func(pub string) (string, bool) { r, ok := roles[pub]; return r, ok }
	var quorum atomic.Int64
	quorum.Store(1)
	gate := newApprovalGate(js, roleOf, func(context.Context) int { return int(quorum.Load()) })
	kv, err := js.KeyValue(ctx, BucketApprovals)
	if err != nil {
		t.Fatal(err)
	}

	const args = `{"argv": ["reboot", "<now>"]}`
	reqPub := k.pub(k.requester)
	now := time.Now()
	// approved requests an approval of exec args for need approvers and
	// has signers approve it.
	approved := func(need int, signers ...nkeys.KeyPair) trust.Approval {
		t.Helper()
		a, err := ap.Request(ctx, k.requester, "exec", json.RawMessage(args), need, 10*time.Minute, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range signers {
			if a, err = ap.Approve(ctx, s, a.ID, now); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	// forge rewrites a's record with sigs, signed by these keys.
	forge := func(a trust.Approval, signers ...nkeys.KeyPair) {
		t.Helper()
		r, _, err := ap.Record(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		r.Sigs = map[string][]byte{}
		for _, s := range signers {
			sig, err := r.Sign(s)
			if err != nil {
				t.Fatal(err)
			}
			r.Sigs[k.pub(s)] = sig
		}
		b, _ := json.Marshal(r)
		if _, err := kv.Put(ctx, a.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	exec := received(t, "exec", args)

	// Accepted: one operator of one needed; then once only.
	a := approved(1, k.op)
	if err := gate.Check(ctx, a.ID, exec, reqPub, now); err != nil {
		t.Fatalf("satisfied approval refused: %v", err)
	}
	if err := gate.Check(ctx, a.ID, exec, reqPub, now); !errors.Is(err, ErrApproval) || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use: %v", err)
	}
	// An admin and an operator of two needed.
	if err := gate.Check(ctx, approved(2, k.admin, k.op2).ID, exec, reqPub, now); err != nil {
		t.Fatalf("two approvers refused: %v", err)
	}

	for _, tc := range []struct {
		name      string
		id        func() string
		req       wire.Request
		requester string
		now       time.Time
		quorum    int
		want      string
		wantErr   error
	}{
		{name: "wrong verb", id: func() string { return approved(1, k.op).ID }, req: received(t, "reboot", args), want: "approves verb exec"},
		{name: "wrong args", id: func() string { return approved(1, k.op).ID }, req: received(t, "exec", `{"argv":["reboot","-f"]}`), want: "other arguments"},
		{name: "no args", id: func() string { return approved(1, k.op).ID }, req: received(t, "exec", ""), want: "other arguments"},
		{name: "another requester", id: func() string { return approved(1, k.op).ID }, requester: k.pub(k.op2), want: "requested by"},
		{name: "expired", id: func() string { return approved(1, k.op).ID }, now: now.Add(10 * time.Minute), wantErr: trust.ErrApprovalExpired},
		{name: "insufficient", id: func() string { return approved(2, k.op).ID }, want: "1 of 2", wantErr: trust.ErrQuorum},
		{name: "quorum above need", id: func() string { return approved(1, k.op).ID }, quorum: 2, want: "1 of 2", wantErr: trust.ErrQuorum},
		{name: "observer approver", id: func() string { return approved(1, k.observer).ID }, want: "0 of 1", wantErr: trust.ErrQuorum},
		{name: "node approver", id: func() string { return approved(1, k.node).ID }, want: "0 of 1", wantErr: trust.ErrQuorum},
		{name: "unknown approver", id: func() string { return approved(1, k.stranger).ID }, want: "0 of 1", wantErr: trust.ErrQuorum},
		{name: "requester approving own", id: func() string {
			a := approved(1)
			forge(a, k.requester)
			return a.ID
		}, want: "0 of 1", wantErr: trust.ErrQuorum},
		{name: "signature over another record", id: func() string {
			a := approved(1)
			other := approved(1)
			r, _, _ := ap.Record(ctx, other.ID)
			sig, _ := r.Sign(k.op)
			rec, _, _ := ap.Record(ctx, a.ID)
			rec.Sigs = map[string][]byte{k.pub(k.op): sig}
			b, _ := json.Marshal(rec)
			if _, err := kv.Put(ctx, a.ID, b); err != nil {
				t.Fatal(err)
			}
			return a.ID
		}, want: "0 of 1", wantErr: trust.ErrQuorum},
		{name: "args rewritten in the record", id: func() string {
			a := approved(1, k.op)
			rec, _, _ := ap.Record(ctx, a.ID)
			rec.Args = json.RawMessage(`{"argv":["rm","-rf","/"]}`)
			b, _ := json.Marshal(rec)
			if _, err := kv.Put(ctx, a.ID, b); err != nil {
				t.Fatal(err)
			}
			return a.ID
		}, want: "args do not match", wantErr: mesh.ErrApprovalRecord},
		{name: "unknown id", id: func() string { return "00000000000000000000000000000000" }, want: "not in rn_approvals"},
		{name: "malformed id", id: func() string { return "../x" }, wantErr: mesh.ErrApprovalID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			quorum.Store(int64(max(tc.quorum, 1)))
			defer quorum.Store(1)
			req, requester, at := tc.req, tc.requester, tc.now
			if req.Verb == "" {
				req = exec
			}
			if requester == "" {
				requester = reqPub
			}
			if at.IsZero() {
				at = now
			}
			err := gate.Check(ctx, tc.id(), req, requester, at)
			t.Log(err)
			if !errors.Is(err, ErrApproval) || !strings.Contains(err.Error(), tc.want) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Check = %v; want ErrApproval, %v, %q", err, tc.wantErr, tc.want)
			}
		})
	}
}

// Concurrent uses of one approval on one node: exactly one runs.
func TestApprovalGateRunsOncePerNode(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ap, err := mesh.NewApprovals(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	k := newGateKeys(t)
	gate := newApprovalGate(js, func(string) (string, bool) { return "admin", true }, nil)
	now := time.Now()
	a, err := ap.Request(ctx, k.requester, "exec", nil, 1, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ap.Approve(ctx, k.op, a.ID, now); err != nil {
		t.Fatal(err)
	}
	req := received(t, "exec", "")
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if gate.Check(ctx, a.ID, req, k.pub(k.requester), now) == nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d of 8 concurrent uses ran, want 1", ok.Load())
	}
	// Once expired, the id is forgotten (and the approval refused as expired).
	later := a.Expires.Add(time.Second)
	if err := gate.Check(ctx, a.ID, req, k.pub(k.requester), later); !errors.Is(err, trust.ErrApprovalExpired) {
		t.Fatalf("after expiry: %v", err)
	}
	gate.markUsed("ffffffffffffffffffffffffffffffff", later.Add(time.Minute), later)
	gate.mu.Lock()
	_, kept := gate.used[a.ID]
	gate.mu.Unlock()
	if kept {
		t.Fatal("an expired id is still remembered")
	}
}

func TestQuorumFromConfigFailsClosed(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := quorumFromConfig(js)
	if got := q(ctx); got != mesh.DefaultQuorum {
		t.Fatalf("unset: %d", got)
	}
	kv, err := js.KeyValue(ctx, BucketConfig)
	if err != nil {
		t.Fatal(err)
	}
	for val, want := range map[string]int{"3": 3, "0": mesh.MaxQuorum, "many": mesh.MaxQuorum} {
		if _, err := kv.PutString(ctx, mesh.QuorumKey, val); err != nil {
			t.Fatal(err)
		}
		if got := q(ctx); got != want {
			t.Errorf("trust.quorum %q: %d, want %d", val, got, want)
		}
	}
}
