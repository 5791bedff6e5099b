package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// request sends a command signed with c's key (HCTH), as robonet does.
func request(t *testing.T, c *mesh.Client, subj string, req wire.Request, timeout time.Duration) (wire.Result, error) {
	t.Helper()
	body, _ := json.Marshal(req)
	m, err := signedRequest(c, subj, body, timeout)
	if err != nil {
		return wire.Result{}, err
	}
	var res wire.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return res, err
	}
	return res, nil
}

func signedRequest(c *mesh.Client, subj string, body []byte, timeout time.Duration) (*nats.Msg, error) {
	msg := &nats.Msg{Subject: subj, Data: body}
	if err := c.Signer().SignMsg(msg); err != nil {
		return nil, err
	}
	return c.Conn().RequestMsg(msg, timeout)
}

// stormResults counts one caller's replies in a storm.
type stormResults struct {
	mu               sync.Mutex
	ok, quota, limit int
	other            []string
}

func (r *stormResults) add(res wire.Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.other = append(r.other, err.Error())
	case res.Status == wire.StatusOK:
		r.ok++
	case res.Error != nil && res.Error.Code == wire.CodeUnavailable && strings.Contains(res.Error.Msg, "its quota is 32 at once"):
		r.quota++
	case res.Error != nil && res.Error.Code == wire.CodeUnavailable && strings.Contains(res.Error.Msg, "busy: 256 commands running"):
		r.limit++
	default:
		r.other = append(r.other, fmt.Sprintf("%s %+v", res.Status, res.Error))
	}
}

func (r *stormResults) counts() (ok, quota, limit int, other []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.quota, r.limit, append([]string(nil), r.other...)
}

// A storm of slow commands (exec cat of a FIFO: each runs until the test
// opens the FIFO for writing). One caller's storm runs its quota, 32, and
// the rest of it is answered busy at once, naming that quota, while another
// caller's ping runs. Ten callers together run exactly the node's 256 and
// no more: past it everyone is busy at once, naming the node's limit.
// Every command is audited: the records' counts add up to every command
// sent, each command that ran has its own record, and busy refusals name
// the verified caller.
func TestCommandStormIsBoundedAndAudited(t *testing.T) {
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.ExecAllow = []string{"cat"} })
	admin := s.Client(0)
	var amu sync.Mutex
	var audits []node.Audit
	asub, err := admin.Conn().Subscribe("rn.1.evt.audit", func(m *nats.Msg) {
		var a node.Audit
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("audit %s: %v", m.Data, err)
			return
		}
		amu.Lock()
		audits = append(audits, a)
		amu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = asub.SetPendingLimits(-1, -1)
	users := make([]*mesh.Client, 10)
	for i := range users {
		users[i] = s.User(0, fmt.Sprint("storm", i), wire.RoleOperator)
	}
	fifo := filepath.Join(t.TempDir(), "hold")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	hold, _ := json.Marshal(map[string]any{"argv": []string{"cat", fifo}})
	var wg sync.WaitGroup
	storm := func(c *mesh.Client, n int, r *stormResults) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := request(t, c, "rn.1.cmd.exec", wire.Request{Verb: "exec", Args: hold, ID: nuid.Next()}, 60*time.Second)
				r.add(res, err)
			}()
		}
	}
	ping := func(id string) wire.Result {
		res, err := request(t, admin, "rn.1.cmd.ping", wire.Request{Verb: "ping", ID: id}, 5*time.Second)
		if err != nil {
			t.Fatalf("ping %s: %v", id, err)
		}
		return res
	}
	released := false
	release := func() {
		// Opening the FIFO for writing ends every cat blocked on it.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	}
	defer func() {
		if !released {
			for i := 0; i < 100; i++ {
				release()
			}
		}
		wg.Wait()
	}()

	// One caller: its quota runs, the rest is busy at once.
	first := &stormResults{}
	storm(users[0], 100, first)
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if _, quota, _, other := first.counts(); quota != 68 || len(other) > 0 {
			return fmt.Errorf("first caller: %d busy naming its quota, want 68; other replies %q", quota, other)
		}
		return nil
	})
	if res := ping("during"); res.Status != wire.StatusOK {
		t.Fatalf("another caller's ping during one caller's storm: %+v", res)
	}

	// Nine more callers, 32 each: the node runs 256 and no more.
	rest := &stormResults{}
	for _, c := range users[1:] {
		storm(c, 32, rest)
	}
	testmesh.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if _, quota, limit, other := rest.counts(); limit != 32*10-256 || quota != 0 || len(other) > 0 {
			return fmt.Errorf("nine callers: %d busy naming the node's limit, want %d; %d naming a quota; other replies %q", limit, 32*10-256, quota, other)
		}
		return nil
	})
	if res := ping("full"); res.Status != wire.StatusError || res.Error == nil || res.Error.Code != wire.CodeUnavailable ||
		!strings.Contains(res.Error.Msg, "busy: 256 commands running") {
		t.Fatalf("ping with the node's 256 slots taken: %+v", res)
	}

	released = true
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	testmesh.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-done:
			return nil
		default:
			release()
			return errors.New("storm commands still running")
		}
	})
	ok1, quota1, limit1, other1 := first.counts()
	okN, quotaN, limitN, otherN := rest.counts()
	if ok1 != 32 || quota1 != 68 || limit1 != 0 || len(other1) > 0 || okN != 256-32 || quotaN != 0 || limitN != 64 || len(otherN) > 0 {
		t.Fatalf("storm: first caller %d ok, %d busy (quota), %d busy (node), other %q; nine callers %d ok, %d busy (quota), %d busy (node), other %q",
			ok1, quota1, limit1, other1, okN, quotaN, limitN, otherN)
	}
	if res := ping("after"); res.Status != wire.StatusOK || res.Chevron != "1" {
		t.Fatalf("ping after the storm: %+v", res)
	}

	// 391 commands: 388 execs and 3 pings; 258 of them ran (256 execs, 2
	// pings), each with its own record.
	const sent, ran = 100 + 9*32 + 3, 256 + 2
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		amu.Lock()
		defer amu.Unlock()
		total, own := 0, map[string]bool{}
		for _, a := range audits {
			total += a.Count
			if a.Status == wire.StatusOK {
				if a.Count != 1 || a.ID == "" || own[a.ID] || a.ArgsDigest == "" || !strings.HasPrefix(a.From, "U") {
					return fmt.Errorf("record of a command that ran: %+v", a)
				}
				own[a.ID] = true
			}
			if a.Code == wire.CodeUnavailable && (a.From == node.AuditUnverified || !strings.HasPrefix(a.From, "U") || a.Status != wire.StatusError) {
				return fmt.Errorf("busy refusal audited as %+v, want the verified caller's key", a)
			}
		}
		if total != sent || len(own) != ran {
			return fmt.Errorf("audit records count %d commands, %d of them ran; want %d and %d", total, len(own), sent, ran)
		}
		return nil
	})
}

func TestCommandHostRejectsMalformedRequests(t *testing.T) {
	s := testmesh.Start(t, 1)
	c := s.Client(0)
	for _, body := range []string{"", "{", `{"verb":"info"}`, `{"verb":"ping","args":[1]}`, `{"verb":"ping","timeout_ms":-5,"args":{"echo":"x"}}`} {
		m, err := signedRequest(c, "rn.1.cmd.ping", []byte(body), 5*time.Second)
		if err != nil {
			t.Fatalf("%q: %v", body, err)
		}
		var res wire.Result
		if err := json.Unmarshal(m.Data, &res); err != nil {
			t.Fatalf("%q: reply %s", body, m.Data)
		}
		if body == `{"verb":"ping","timeout_ms":-5,"args":{"echo":"x"}}` {
			if res.Status != wire.StatusOK {
				t.Fatalf("%q: %+v", body, res)
			}
			continue
		}
		if res.Status != wire.StatusError || res.Error == nil || res.Error.Msg == "" {
			t.Fatalf("%q: %+v", body, res)
		}
	}
	// An unknown verb on the subject.
	res, err := request(t, c, "rn.1.cmd.frobnicate", wire.Request{Verb: "frobnicate", ID: "x"}, 5*time.Second)
	if err != nil || res.Error == nil || res.Error.Code != wire.CodeUnknownVerb {
		t.Fatalf("unknown verb: %+v %v", res, err)
	}
}
