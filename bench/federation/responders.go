package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// responder stands for one node of a swarm too large for this machine to
// run as full nodes (each a nats-server with clustered JetStream): it has
// a node key of its own, registers itself in rn_nodes as a node does (a
// record signed by its key), heartbeats every second (signed, with its own
// chain), and answers commands with a real node.CommandHost (decode,
// catalogue, run, signed reply, signed audit event). Its guard does the
// signature work a node's does and no more (bench/gather's choice): for a
// federated command forwarded by the ambassador, the forwarder's Rn-Fed-Via
// signature and the requester's signature over the fed subject; for an
// in-swarm command, the requester's signature; it skips the ledger, role
// and tier checks. It talks through a feature connection of a real node of
// the swarm (node keys never connect as clients) and names that node's
// server in its heartbeats, so the registry judges it by that server's
// routes.
type responder struct {
	chev   subjects.Chevron
	pub    string
	nc     *nats.Conn
	signer *mesh.Signer
	host   *node.CommandHost
}

// startResponders registers and starts responders for chevrons
// prefix.first … prefix.last, spread over the live nodes of sw, and waits
// until every live node sees each of them alive. Their shutdown is
// registered on s.
func startResponders(s *scope.Scope, sw *testmesh.Swarm, prefix string, first, last int) {
	if first > last {
		return
	}
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		s.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []*responder
	s.Cleanup(func() {
		cancel()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, r := range all {
			r.host.Stop()
			r.nc.Close()
		}
	})
	hosts := sw.Live()
	dir := s.TempDir()
	for i := first; i <= last; i++ {
		chev, err := subjects.Parse(fmt.Sprintf("%s.%d", prefix, i))
		if err != nil {
			s.Fatal(err)
		}
		r, err := newResponder(ctx, hosts[i%len(hosts)], chev, cat, filepath.Join(dir, chev.String()+".chain"))
		if err != nil {
			s.Fatalf("responder %s: %v", chev, err)
		}
		mu.Lock()
		all = append(all, r)
		mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); r.beat(ctx, hosts[i%len(hosts)].ServerName()) }()
	}
	check(s, 60*time.Second, func() error {
		for _, nd := range sw.Live() {
			alive := 0
			for _, m := range nd.Members() {
				if m.State == wire.StateAlive {
					alive++
				}
			}
			if want := len(sw.Live()) + last - first + 1; alive != want {
				return fmt.Errorf("node %s sees %d alive, want %d", nd.Chevron(), alive, want)
			}
		}
		return nil
	})
}

// newResponder registers chev with a fresh key through host's JetStream
// and starts its command host.
func newResponder(ctx context.Context, host *node.Node, chev subjects.Chevron, cat *command.Catalogue, chain string) (*responder, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	signer, err := mesh.NewSigner(kp, chain, mesh.NodeChainBlock)
	if err != nil {
		return nil, err
	}
	nc, err := host.FeatureConn("responder")
	if err != nil {
		return nil, err
	}
	r := &responder{chev: chev, pub: pub, nc: nc, signer: signer}
	name := "rn" + chev.String()
	info := wire.NodeInfo{Chevron: chev.String(), Name: name, Pubkey: pub, Server: host.ServerName(),
		Caps: []string{}, Tags: map[string]string{}, Version: node.Version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Started: time.Now().UTC(), Joined: "secret"}
	rec, err := json.Marshal(info)
	if err != nil {
		nc.Close()
		return nil, err
	}
	data, err := trust.SignRecord(kp, node.BucketNodes, chev.String(), rec)
	if err != nil {
		nc.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(cctx, node.BucketNodes)
	if err == nil {
		_, err = kv.Create(cctx, chev.String(), data)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("register: %w", err)
	}
	guard := responderGuard{verify: trust.NewVerifier(0), signer: signer}
	if r.host, err = node.NewCommandHost(ctx, nc, chev, name, cat, guard, nil); err != nil {
		nc.Close()
		return nil, err
	}
	return r, nc.Flush()
}

// beat heartbeats as a node does, every node.DefaultTiming().Heartbeat,
// until ctx ends.
func (r *responder) beat(ctx context.Context, server string) {
	started := time.Now().UTC()
	t := time.NewTicker(node.DefaultTiming().Heartbeat)
	defer t.Stop()
	subj := subjects.Event(r.chev, subjects.EvtHeartbeat)
	for seq := uint64(1); ; seq++ {
		hb := wire.Heartbeat{Chevron: r.chev.String(), Name: "rn" + r.chev.String(), Pubkey: r.pub, Server: server,
			Seq: seq, Sent: time.Now().UTC(), Started: started, Version: node.Version}
		data, _ := json.Marshal(hb)
		m := &nats.Msg{Subject: subj, Data: data}
		if r.signer.SignMsg(m) == nil {
			_ = r.nc.PublishMsg(m)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// responderGuard is a responder's trust layer: signatures only.
type responderGuard struct {
	verify *trust.Verifier
	signer *mesh.Signer
}

func (g responderGuard) Admit(m *nats.Msg, _ *wire.Request, _ int, _ bool) node.Admission {
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return node.Admission{Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
	}
	signed := m.Subject
	if fs := m.Header.Get(wire.HdrFedSubject); fs != "" {
		if err := g.checkVia(m, fs); err != nil {
			return node.Admission{Claimed: h.From, Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
		}
		signed = fs
	}
	if err := g.verify.Verify(h, signed, m.Data); err != nil {
		return node.Admission{Claimed: h.From, Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
	}
	return node.Admission{From: h.From}
}

// checkVia verifies the ambassador's signature on a forward, as a node's
// admitForwarded does (without the membership and quarantine lookups).
func (g responderGuard) checkVia(m *nats.Msg, fedSubject string) error {
	vm, err := wire.ParseFedVia(m.Header.Get(wire.HdrFedVia))
	if err != nil {
		return err
	}
	vh, err := trust.ParseHeaders(func(k string) string { return vm[k] })
	if err != nil {
		return err
	}
	return g.verify.Verify(vh, m.Subject, wire.FedViaPayload(fedSubject, m.Header.Get(wire.HdrSig)))
}

// Approve is never reached: ping is not dangerous.
func (g responderGuard) Approve(context.Context, *nats.Msg, wire.Request, string) *wire.Error {
	return &wire.Error{Code: wire.CodeDenied, Msg: "no approvals in the benchmark"}
}

func (g responderGuard) Sign(m *nats.Msg) error { return g.signer.SignMsg(m) }
