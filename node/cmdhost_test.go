package node_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// A storm of slow commands: the node answers "busy" beyond its limit at once,
// keeps serving cheap commands, and every command is audited.
func TestCommandStormIsBoundedAndAudited(t *testing.T) {
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.ExecAllow = []string{"sleep"} })
	c := s.Client(0)
	nc := c.Conn()
	audits, err := nc.SubscribeSync("rn.1.evt.audit")
	if err != nil {
		t.Fatal(err)
	}
	const storm = 600
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy, ok := 0, 0
	for i := 0; i < storm; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args, _ := json.Marshal(map[string]any{"argv": []string{"sleep", "3"}})
			res, err := request(t, c, "rn.1.cmd.exec", wire.Request{Verb: "exec", Args: args, ID: fmt.Sprint(i)}, 20*time.Second)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
			case res.Status == wire.StatusOK:
				ok++
			case res.Error != nil && res.Error.Code == wire.CodeUnavailable:
				busy++
			}
		}()
	}
	// While the storm runs, a ping still gets through.
	testmesh.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		res, err := request(t, c, "rn.1.cmd.ping", wire.Request{Verb: "ping", ID: "p"}, 2*time.Second)
		if err != nil {
			return err
		}
		if res.Status != wire.StatusOK && (res.Error == nil || res.Error.Code != wire.CodeUnavailable) {
			return fmt.Errorf("ping: %+v", res)
		}
		return nil
	})
	wg.Wait()
	if ok+busy != storm || busy == 0 || ok == 0 {
		t.Fatalf("storm: %d ok, %d busy of %d", ok, busy, storm)
	}
	res, err := request(t, c, "rn.1.cmd.ping", wire.Request{Verb: "ping", ID: "after"}, 5*time.Second)
	if err != nil || res.Status != wire.StatusOK || res.Chevron != "1" {
		t.Fatalf("ping after the storm: %+v %v", res, err)
	}
	m, err := audits.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var a node.Audit
	if err := json.Unmarshal(m.Data, &a); err != nil || a.Verb == "" || a.ArgsDigest == "" || a.Status == "" {
		t.Fatalf("audit %s: %v", m.Data, err)
	}
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
