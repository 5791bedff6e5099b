package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// approvalEnv is one node with its rn_approvals bound through a client.
type approvalEnv struct {
	c  *mesh.Client
	ap *mesh.Approvals
	kv jetstream.KeyValue // rn_approvals, for writing records by hand
	js jetstream.JetStream
}

func startApprovals(t *testing.T) approvalEnv {
	t.Helper()
	s := testmesh.Start(t, 1)
	c := s.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ap, err := c.Approvals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(c.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, mesh.ApprovalBucket)
	if err != nil {
		t.Fatal(err)
	}
	return approvalEnv{c: c, ap: ap, kv: kv, js: js}
}

func userKey(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, pub
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestApprovalRequestListApprove(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	req, reqPub := userKey(t)
	alice, alicePub := userKey(t)
	bob, _ := userKey(t)

	args := json.RawMessage(`{ "argv": ["reboot", "<now>"] }`)
	a, err := e.ap.Request(ctx, req, "exec", args, 2, 10*time.Minute, time.Now(), mesh.WithSelector("all"), mesh.WithFrom("carol\x1b[31m"))
	if err != nil {
		t.Fatal(err)
	}
	if mesh.ValidApprovalID(a.ID) != nil || a.Requester != reqPub || a.Need != 2 || a.Verb != "exec" {
		t.Fatalf("request = %+v", a)
	}
	// The digest is over the arguments as a node receives them.
	canon, _ := mesh.ApprovalArgs(args)
	if string(canon) != `{"argv":["reboot","\u003cnow\u003e"]}` || a.ArgsDigest != trust.DigestArgs(canon) {
		t.Fatalf("args %s digest %s", canon, a.ArgsDigest)
	}

	recs, skipped, err := e.ap.Records(ctx, false)
	if err != nil || len(skipped) != 0 || len(recs) != 1 {
		t.Fatalf("records = %+v, skipped %v, %v", recs, skipped, err)
	}
	if r := recs[0]; r.ID != a.ID || string(r.Args) != string(canon) || r.Selector != "all" || r.From != "carol[31m" || r.Count() != 0 {
		t.Fatalf("record = %+v", r)
	}
	list, err := e.ap.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != a.ID {
		t.Fatalf("list = %+v, %v", list, err)
	}

	got, err := e.ap.Approve(ctx, alice, a.ID, time.Now())
	if err != nil || got.Count() != 1 || got.Satisfied() {
		t.Fatalf("approve by alice: count %d, %v", got.Count(), err)
	}
	// Approving twice with one key counts once.
	got, err = e.ap.Approve(ctx, alice, a.ID, time.Now())
	if !errors.Is(err, mesh.ErrAlreadyApproved) || got.Count() != 1 || !strings.Contains(err.Error(), a.ID) {
		t.Fatalf("second approval by alice: count %d, %v", got.Count(), err)
	}
	// The requester cannot approve.
	if _, err := e.ap.Approve(ctx, req, a.ID, time.Now()); !errors.Is(err, trust.ErrSelfApproval) {
		t.Fatalf("self approval: %v", err)
	}
	got, err = e.ap.Approve(ctx, bob, a.ID, time.Now())
	if err != nil || got.Count() != 2 || got.Check(time.Now()) != nil {
		t.Fatalf("approve by bob: count %d, %v", got.Count(), err)
	}
	stored, rev, err := e.ap.Get(ctx, a.ID)
	if err != nil || rev == 0 || stored.Count() != 2 || len(stored.Sigs) != 2 || stored.Sigs[alicePub] == nil {
		t.Fatalf("get = %+v rev %d, %v", stored, rev, err)
	}
	// Satisfied: Wait returns at once.
	w, err := e.ap.Wait(ctx, a.ID)
	if err != nil || w.Count() != 2 {
		t.Fatalf("wait: %d, %v", w.Count(), err)
	}
}

func TestApprovalRefusals(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	req, _ := userKey(t)
	alice, _ := userKey(t)
	now := time.Now()

	for _, tc := range []struct {
		name string
		verb string
		need int
		ttl  time.Duration
		want string
	}{
		{"zero need", "exec", 0, time.Minute, "need 0"},
		{"need over the maximum", "exec", mesh.MaxQuorum + 1, time.Minute, "need 17"},
		{"no ttl", "exec", 1, 0, "ttl 0s"},
		{"ttl over a day", "exec", 1, 25 * time.Hour, "ttl 25h0m0s"},
		{"bad verb", "ex.ec", 1, time.Minute, "verb"},
	} {
		if _, err := e.ap.Request(ctx, req, tc.verb, nil, tc.need, tc.ttl, now); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	if _, err := e.ap.Approve(ctx, alice, "0123456789abcdef0123456789abcdef", now); !errors.Is(err, mesh.ErrApprovalNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := e.ap.Approve(ctx, alice, "nope", now); !errors.Is(err, mesh.ErrApprovalID) {
		t.Errorf("bad id: %v", err)
	}

	// Expired: requested an hour ago for ten minutes.
	old, err := e.ap.Request(ctx, req, "exec", json.RawMessage(`{"argv":["reboot"]}`), 1, 10*time.Minute, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ap.Approve(ctx, alice, old.ID, now); !errors.Is(err, trust.ErrApprovalExpired) {
		t.Errorf("approve expired: %v", err)
	}
	if _, err := e.ap.Wait(ctx, old.ID); !errors.Is(err, trust.ErrApprovalExpired) || !strings.Contains(err.Error(), "0 of 1") {
		t.Errorf("wait on expired: %v", err)
	}
	if list, err := e.ap.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("list shows expired: %+v, %v", list, err)
	}
	if recs, _, err := e.ap.Records(ctx, true); err != nil || len(recs) != 1 || recs[0].ID != old.ID {
		t.Errorf("records with expired: %+v, %v", recs, err)
	}
}

// Records written by anyone with JetStream access are checked before use.
func TestApprovalTamperedRecordsAreRejected(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	req, _ := userKey(t)
	alice, alicePub := userKey(t)
	mallory, malloryPub := userKey(t)

	a, err := e.ap.Request(ctx, req, "exec", json.RawMessage(`{"argv":["ls"]}`), 1, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := e.ap.Record(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := good.Sign(alice)
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string, v any) {
		t.Helper()
		b, ok := v.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.kv.Put(ctx, id, b); err != nil {
			t.Fatal(err)
		}
	}
	edit := func(f func(r *mesh.ApprovalRecord)) mesh.ApprovalRecord {
		r := good
		r.Sigs = map[string][]byte{alicePub: sig}
		f(&r)
		return r
	}
	n := 0
	newID := func() string { n++; return fmt.Sprintf("%032x", n) }
	for _, tc := range []struct {
		name string
		val  func(id string) any
		want string
	}{
		{"not JSON", func(string) any { return []byte("{nope") }, "not JSON"},
		{"another id inside", func(string) any { return edit(func(r *mesh.ApprovalRecord) {}) }, "names id"},
		{"args swapped, digest kept", func(id string) any {
			return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.Args = json.RawMessage(`{"argv":["rm","-rf","/"]}`) })
		}, "args do not match"},
		{"args dropped", func(id string) any { return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.Args = nil }) }, "args do not match"},
		{"requester not a key", func(id string) any { return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.Requester = "alice" }) }, "requester"},
		{"zero need", func(id string) any { return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.Need = 0 }) }, "need 0"},
		{"expiry a year out", func(id string) any {
			return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.Expires = time.Now().AddDate(1, 0, 0) })
		}, "more than 24h0m0s from now"},
		{"terminal escape in from", func(id string) any {
			return edit(func(r *mesh.ApprovalRecord) { r.ID = id; r.From = "\x1b]0;pwned\x07" })
		}, "control characters"},
		{"too many signatures", func(id string) any {
			return edit(func(r *mesh.ApprovalRecord) {
				r.ID = id
				for i := 0; i <= trust.MaxApprovers; i++ {
					r.Sigs[fmt.Sprintf("U%055d", i)] = sig
				}
			})
		}, "signatures, limit"},
	} {
		id := newID()
		put(id, tc.val(id))
		if _, _, err := e.ap.Record(ctx, id); !errors.Is(err, mesh.ErrApprovalRecord) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if _, err := e.ap.Approve(ctx, mallory, id, time.Now()); !errors.Is(err, mesh.ErrApprovalRecord) {
			t.Errorf("%s: approve: %v", tc.name, err)
		}
	}
	recs, skipped, err := e.ap.Records(ctx, false)
	if err != nil || len(recs) != 1 || recs[0].ID != a.ID || len(skipped) != n {
		t.Fatalf("records %d, skipped %d (want 1, %d): %v %v", len(recs), len(skipped), n, skipped, err)
	}

	// A forged signature in a valid record does not count, and a real
	// approval by the same key replaces it.
	forged := edit(func(r *mesh.ApprovalRecord) { r.Sigs = map[string][]byte{malloryPub: sig} })
	put(a.ID, forged)
	r, _, err := e.ap.Record(ctx, a.ID)
	if err != nil || r.Count() != 0 || len(r.Approvers()) != 0 {
		t.Fatalf("forged signature counted: %d, %v", r.Count(), err)
	}
	if _, err := e.ap.Wait(ctxWithin(t, 300*time.Millisecond), a.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on a forged approval: %v", err)
	}
	got, err := e.ap.Approve(ctx, mallory, a.ID, time.Now())
	if err != nil || got.Count() != 1 {
		t.Fatalf("approve over a forged entry: %d, %v", got.Count(), err)
	}
	// An approval signed over other fields (a copy with a lower need) does
	// not count either.
	copyRec := good
	copyRec.Need = 2
	other, _ := copyRec.Sign(alice)
	put(a.ID, edit(func(r *mesh.ApprovalRecord) { r.Sigs = map[string][]byte{alicePub: other} }))
	if r, _, err := e.ap.Record(ctx, a.ID); err != nil || r.Count() != 0 {
		t.Fatalf("signature over other fields counted: %d, %v", r.Count(), err)
	}
}

func ctxWithin(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Concurrent approvals by different keys all land: each retries its
// compare-and-set after a conflict.
func TestApprovalConcurrentApprovalsAllLand(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	req, _ := userKey(t)
	const approvers = 6
	a, err := e.ap.Request(ctx, req, "exec", nil, approvers, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, approvers)
	start := make(chan struct{})
	for i := range approvers {
		kp, _ := userKey(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = e.ap.Approve(ctx, kp, a.ID, time.Now())
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("approver %d: %v", i, err)
		}
	}
	got, _, err := e.ap.Get(ctx, a.ID)
	if err != nil || got.Count() != approvers || got.Check(time.Now()) != nil {
		t.Fatalf("after concurrent approvals: %d of %d, %v", got.Count(), approvers, err)
	}
}

func TestApprovalWaitWakesOnApproval(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	req, _ := userKey(t)
	alice, _ := userKey(t)
	bob, _ := userKey(t)
	a, err := e.ap.Request(ctx, req, "exec", nil, 2, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		got, err := e.ap.Wait(ctx, a.ID)
		if err == nil && got.Count() != 2 {
			err = fmt.Errorf("count %d", got.Count())
		}
		done <- err
	}()
	if _, err := e.ap.Approve(ctx, alice, a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("wait ended with one of two approvals: %v", err)
	default:
	}
	if _, err := e.ap.Approve(ctx, bob, a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("wait did not end after the second approval")
	}

	// A record deleted while waiting ends the wait.
	b, err := e.ap.Request(ctx, req, "exec", nil, 1, 10*time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, err := e.ap.Wait(ctx, b.ID); done <- err }()
	if err := e.kv.Delete(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, mesh.ErrApprovalNotFound) {
		t.Fatalf("wait on a deleted record: %v", err)
	}
}

func TestApprovalQuorum(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	if m, err := e.ap.Quorum(ctx); err != nil || m != mesh.DefaultQuorum {
		t.Fatalf("quorum unset = %d, %v", m, err)
	}
	cfg, err := e.js.KeyValue(ctx, "rn_config")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		val  string
		want int
	}{{"3", 3}, {" 16\n", 16}, {"0", 0}, {"17", 0}, {"two", 0}, {"", 0}} {
		if _, err := cfg.PutString(ctx, mesh.QuorumKey, tc.val); err != nil {
			t.Fatal(err)
		}
		m, err := e.ap.Quorum(ctx)
		if tc.want == 0 {
			if !errors.Is(err, mesh.ErrQuorumConfig) {
				t.Errorf("quorum %q = %d, %v; want ErrQuorumConfig", tc.val, m, err)
			}
			continue
		}
		if err != nil || m != tc.want {
			t.Errorf("quorum %q = %d, %v; want %d", tc.val, m, err, tc.want)
		}
	}
}

// GatherApproved sends again, with the approval, only to the nodes that
// asked for one. Two stand-in nodes answer: 8 runs the command, 9 asks for
// an approval and checks it as a node would (same verb, same args digest).
func TestGatherApprovedResendsToDeniedNodesOnly(t *testing.T) {
	e := startApprovals(t)
	ctx := ctxT(t)
	me, _ := userKey(t)
	alice, _ := userKey(t)
	nc := e.c.Conn()

	// Replies are signed (HCTH) like a node's; the stand-ins are in no
	// registry, so any valid signature is accepted.
	standInKey, _ := userKey(t)
	signer, err := mesh.NewSigner(standInKey, filepath.Join(t.TempDir(), "stand-in.chain"), 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string][]string{} // chevron → Rn-Approval of each request it got
	standIn := func(chev string, needApproval bool) {
		sub, err := nc.Subscribe("rn."+chev+".cmd.exec", func(m *nats.Msg) {
			var req wire.Request
			_ = json.Unmarshal(m.Data, &req)
			id := m.Header.Get(wire.HdrApproval)
			mu.Lock()
			seen[chev] = append(seen[chev], id)
			mu.Unlock()
			ok := wire.Result{ID: req.ID, Chevron: chev, Name: "n" + chev, Status: wire.StatusOK, Text: "done"}
			res := wire.Result{ID: req.ID, Chevron: chev, Name: "n" + chev, Status: wire.StatusDenied,
				Error: &wire.Error{Code: wire.CodeApprovalRequired, Msg: "exec needs an approval"}}
			switch {
			case !needApproval:
				res = ok
			case id != "":
				r, _, err := e.ap.Record(ctx, id)
				switch {
				case err != nil:
					res.Error.Msg = err.Error()
				case r.Verb != req.Verb || r.ArgsDigest != trust.DigestArgs(req.Args):
					res.Error.Msg = "approval does not match"
				case r.Check(time.Now()) != nil:
					res.Error.Msg = r.Check(time.Now()).Error()
				default:
					res = ok
				}
			}
			b, _ := json.Marshal(res)
			reply := &nats.Msg{Subject: m.Reply, Data: b}
			if signer.SignMsg(reply) == nil {
				_ = nc.PublishMsg(reply)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	standIn("8", false)
	standIn("9", true)

	// Spaces and & in the arguments: the digest is over what nodes receive.
	args := json.RawMessage(`{"argv": ["true", "a&b"]}`)
	req := mesh.GatherRequest{Selector: "8|9", Verb: "exec", Args: args, Timeout: 5 * time.Second}
	set := []wire.Member{{Chevron: "8", Name: "n8"}, {Chevron: "9", Name: "n9"}}
	first, err := e.c.GatherSet(ctx, req, subjects.Selector{}, set, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := mesh.ApprovalRequired(first); len(got) != 1 || got[0].Chevron != "9" {
		t.Fatalf("approval required by %+v (%s)", got, first.Summary.Line)
	}
	eight := first.Results[0]

	a, err := e.ap.Request(ctx, me, req.Verb, req.Args, 1, time.Minute, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ap.Approve(ctx, alice, a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	res, err := e.c.GatherApproved(ctx, req, first, a.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Results) != 2 || res.Results[1].Status != wire.StatusOK || res.Results[1].Chevron != "9" {
		t.Fatalf("after approval: %+v", res.Results)
	}
	if r := res.Results[0]; r.Chevron != "8" || r.Status != eight.Status || r.Ms != eight.Ms || r.Text != eight.Text {
		t.Fatalf("node 8's result changed: %+v, before %+v", res.Results[0], eight)
	}
	if !res.OK() || res.Summary.Total != 2 || !strings.HasPrefix(res.Summary.Line, "2 ok of 2") {
		t.Fatalf("summary %+v", res.Summary)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen["8"]) != 1 || len(seen["9"]) != 2 || seen["9"][0] != "" || seen["9"][1] != a.ID {
		t.Fatalf("stand-ins saw approvals %q", seen)
	}
}
