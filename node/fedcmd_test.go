package node_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// fwd is one hand-built forward of a federated command, as an ambassador
// sends it: signed by the requester over fed, delivered on in, with the
// forwarder's Rn-Fed-Via signature over via (normally in).
type fwd struct {
	fed, in, via string
	verb         string
	forwarder    *mesh.Signer // signs Rn-Fed-Via; nil: no via header
	tamper       func(*nats.Msg)
}

// send publishes the forward with a reply inbox and returns the reply, or
// nil when none came within wait.
func (f fwd) send(t *testing.T, requester *mesh.Client, wait time.Duration) (*nats.Msg, *wire.Result) {
	t.Helper()
	body, _ := json.Marshal(wire.Request{Verb: f.verb, ID: nuid.Next()})
	m := &nats.Msg{Subject: f.fed, Data: body}
	if err := requester.Signer().SignMsg(m); err != nil {
		t.Fatal(err)
	}
	return f.resend(t, requester, m, wait)
}

// resend delivers the signed federated command m (signed over f.fed) as a
// forward on f.in.
func (f fwd) resend(t *testing.T, requester *mesh.Client, signed *nats.Msg, wait time.Duration) (*nats.Msg, *wire.Result) {
	t.Helper()
	nc := requester.Conn()
	out := &nats.Msg{Subject: f.in, Data: signed.Data, Header: nats.Header{}}
	for k, v := range signed.Header {
		out.Header[k] = append([]string(nil), v...)
	}
	out.Header.Set(wire.HdrFedSubject, f.fed)
	if f.forwarder != nil {
		via := f.via
		if via == "" {
			via = f.in
		}
		h, err := f.forwarder.Sign(via, wire.FedViaPayload(f.fed, signed.Header.Get(wire.HdrSig)))
		if err != nil {
			t.Fatal(err)
		}
		e := h.Encode()
		out.Header.Set(wire.HdrFedVia, wire.FormatFedVia(e[wire.HdrFrom], e[wire.HdrSeq], e[wire.HdrPrev], e[wire.HdrSig]))
	}
	if f.tamper != nil {
		f.tamper(out)
	}
	out.Reply = nc.NewInbox()
	sub, err := nc.SubscribeSync(out.Reply)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishMsg(out); err != nil {
		t.Fatal(err)
	}
	r, err := sub.NextMsg(wait)
	if errors.Is(err, nats.ErrTimeout) {
		return nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var res wire.Result
	if err := json.Unmarshal(r.Data, &res); err != nil {
		t.Fatalf("reply %s: %v", r.Data, err)
	}
	return r, &res
}

// A node runs a federated command its ambassador forwarded, checking the
// requester's signature over the fed subject, and drops a replay of it.
func TestForwardedCommandAcceptedOnceAndReplayDropped(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	nd := s.Node(0)
	admin := s.Client(0)
	f := fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.cmd.ping", verb: "ping", forwarder: nd.Signer()}
	body, _ := json.Marshal(wire.Request{Verb: "ping", ID: nuid.Next()})
	signed := &nats.Msg{Subject: f.fed, Data: body}
	if err := admin.Signer().SignMsg(signed); err != nil {
		t.Fatal(err)
	}
	_, res := f.resend(t, admin, signed, 5*time.Second)
	if res == nil || res.Status != wire.StatusOK || res.Chevron != "3.12.7.1" {
		t.Fatalf("forwarded ping: %+v", res)
	}
	// The same signed command forwarded again (a second ambassador, or a
	// copy captured on the way) is a replay: dropped, no answer.
	if _, res := f.resend(t, admin, signed, 500*time.Millisecond); res != nil {
		t.Fatalf("a replayed forward was answered: %+v", res)
	}
	// Signed over the in-swarm subject instead of the fed one: the
	// signature does not cover what Rn-Fed-Subject says.
	plain := &nats.Msg{Subject: f.in, Data: body}
	if err := admin.Signer().SignMsg(plain); err != nil {
		t.Fatal(err)
	}
	if _, res := f.resend(t, admin, plain, 5*time.Second); res == nil || res.Status != wire.StatusDenied {
		t.Fatalf("a command signed for the in-swarm subject passed as a federated one: %+v", res)
	}
}

// Forwards a node must refuse, each answered denied (or error for a
// malformed header) without running the verb.
func TestForwardedCommandRefusals(t *testing.T) {
	s := testmesh.Start(t, 1, testmesh.WithChevrons("3.12.7.1"))
	nd := s.Node(0)
	admin := s.Client(0)
	// A user key stands in for a forwarder that is not a node of the swarm.
	stranger := s.User(0, "stranger", wire.RoleOperator)
	for _, tc := range []struct {
		name string
		f    fwd
		want string // in the error message
	}{
		{"fed prefix does not cover the node",
			fwd{fed: "rn.fed.3.14.cmd.ping", in: "rn.3.12.7.1.cmd.ping", verb: "ping", forwarder: nd.Signer()},
			"does not cover node 3.12.7.1"},
		{"a sibling swarm's prefix",
			fwd{fed: "rn.fed.3.12.8.cmd.ping", in: "rn.3.12.7.cmd.ping", verb: "ping", forwarder: nd.Signer()},
			"does not cover"},
		{"verb changed on the way",
			fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.1.cmd.info", verb: "ping", forwarder: nd.Signer()},
			`signed for verb "ping" arrived as "info"`},
		{"no via: not forwarded by an ambassador",
			fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.1.cmd.ping", verb: "ping"},
			"only an ambassador of this swarm"},
		{"via by a key that is not a node of the swarm",
			fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.1.cmd.ping", verb: "ping", forwarder: stranger.Signer()},
			"not a node of this swarm"},
		{"via made for another subject",
			fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.1.cmd.ping", via: "rn.3.12.7.2.cmd.ping", verb: "ping", forwarder: nd.Signer()},
			"does not cover rn.3.12.7.1.cmd.ping"},
		{"forged requester signature (payload changed after signing)",
			fwd{fed: "rn.fed.3.12.cmd.ping", in: "rn.3.12.7.1.cmd.ping", verb: "ping", forwarder: nd.Signer(),
				tamper: func(m *nats.Msg) { m.Data = []byte(strings.Replace(string(m.Data), `"ping"`, `"ping" `, 1)) }},
			"signature"},
		{"a fed subject that is not one",
			fwd{fed: "rn.fed.3.12.evt.ping", in: "rn.3.12.7.1.cmd.ping", verb: "ping", forwarder: nd.Signer()},
			"invalid federated subject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, res := tc.f.send(t, admin, 5*time.Second)
			if res == nil {
				t.Fatal("no answer")
			}
			if res.Status == wire.StatusOK || res.Error == nil || !strings.Contains(res.Error.Msg, tc.want) {
				t.Fatalf("got %+v (error %+v), want a refusal naming %q", res, res.Error, tc.want)
			}
		})
	}
}
