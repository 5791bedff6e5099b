package federation_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// startAmbassadors starts an ambassador on every live node of s and waits
// until each serves (sees the leader).
func startAmbassadors(t *testing.T, s *testmesh.Swarm) []*federation.Ambassador {
	t.Helper()
	return startAmbassadorsOn(t, s.Live()...)
}

// startAmbassadorsOn starts an ambassador on each of nodes and waits
// until each serves.
func startAmbassadorsOn(t *testing.T, nodes ...*node.Node) []*federation.Ambassador {
	t.Helper()
	var out []*federation.Ambassador
	for _, nd := range nodes {
		quiet := new(atomic.Bool)
		a, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: nd, Poll: 50 * time.Millisecond,
			Logger: testmesh.Logger(t, quiet)})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = a.Shutdown(context.Background())
			quiet.Store(true)
		})
		out = append(out, a)
	}
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for _, a := range out {
			if !a.Serving() {
				return errors.New("an ambassador does not serve yet (no leader in view)")
			}
		}
		return nil
	})
	return out
}

// stream is what one federated request brought back.
type stream struct {
	starts  []wire.FedStart
	results []*nats.Msg
	dones   []wire.FedDone
	signers []string // the signers of starts and dones, in arrival order
	other   []*nats.Msg
}

// fedRequest publishes a signed federated command on subj with extra
// headers and collects the stream until a done arrives and then quiet for
// quiet, or until wait passed.
func fedRequest(t *testing.T, c *mesh.Client, subj string, hdr map[string]string, req wire.Request, wait, quiet time.Duration) stream {
	t.Helper()
	if req.ID == "" {
		req.ID = nuid.Next()
	}
	body, _ := json.Marshal(req)
	m := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	if err := c.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	return publishAndCollect(t, c, m, wait, quiet)
}

func publishAndCollect(t *testing.T, c *mesh.Client, m *nats.Msg, wait, quiet time.Duration) stream {
	t.Helper()
	nc := c.Conn()
	m.Reply = nc.NewInbox()
	sub, err := nc.SubscribeSync(m.Reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	var s stream
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if len(s.dones) > 0 {
			left = min(left, quiet)
		}
		if left <= 0 {
			return s
		}
		r, err := sub.NextMsg(left)
		if errors.Is(err, nats.ErrTimeout) {
			return s
		}
		if err != nil {
			t.Fatal(err)
		}
		switch r.Header.Get(wire.HdrFedKind) {
		case wire.FedKindStart:
			var st wire.FedStart
			if err := json.Unmarshal(r.Data, &st); err != nil {
				t.Fatal(err)
			}
			s.starts = append(s.starts, st)
			s.signers = append(s.signers, r.Header.Get(wire.HdrFrom))
		case wire.FedKindDone:
			var d wire.FedDone
			if err := json.Unmarshal(r.Data, &d); err != nil {
				t.Fatal(err)
			}
			s.dones = append(s.dones, d)
			s.signers = append(s.signers, r.Header.Get(wire.HdrFrom))
		case wire.FedKindResult:
			s.results = append(s.results, r)
		default:
			s.other = append(s.other, r)
		}
	}
}

// checkResults verifies each relayed node reply: signed by the key the
// start listed for its chevron, over the subject it names, for id.
func checkResults(t *testing.T, s stream, id string) map[string]wire.Result {
	t.Helper()
	keys := map[string]string{}
	for _, st := range s.starts {
		for _, nd := range st.Expected {
			keys[nd.Chevron] = nd.Pubkey
		}
	}
	out := map[string]wire.Result{}
	for _, r := range s.results {
		var res wire.Result
		if err := json.Unmarshal(r.Data, &res); err != nil {
			t.Fatal(err)
		}
		h, err := mesh.ParseSigned(r)
		if err != nil {
			t.Fatalf("relayed reply of %s: %v", res.Chevron, err)
		}
		if h.From != keys[res.Chevron] {
			t.Fatalf("relayed reply of %s signed by %s, start lists %s", res.Chevron, h.From, keys[res.Chevron])
		}
		if err := verifier.Verify(h, r.Header.Get(wire.HdrFedSigned), r.Data); err != nil {
			t.Fatalf("relayed reply of %s does not verify over %s: %v", res.Chevron, r.Header.Get(wire.HdrFedSigned), err)
		}
		if res.ID != id {
			t.Fatalf("relayed reply for request %q, want %q", res.ID, id)
		}
		out[res.Chevron] = res
	}
	return out
}

var verifier = trust.NewVerifier(0)

func expectChevrons(got []string, want ...string) error {
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	return nil
}
