package node

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/sentinel"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// hbBench is a core member's heartbeat path without a server: a Node with
// what onHeartbeat reads (registrations, ledger, Sentinel, registry) and
// many registered edges, each with its own key and HCTH chain, whose next
// heartbeats are signed ahead of the timed loop.
type hbBench struct {
	n      *Node
	chains []*trust.Chain
	chevs  []subjects.Chevron
	pubs   []string
	beats  []wire.Heartbeat // the latest round's, decoded
	seq    uint64
	start  time.Time
}

func newHBBench(b *testing.B, peers int) *hbBench {
	b.Helper()
	ledger, err := trust.NewLedger(trust.Config{MaxPeers: MaxPeers, TolerateBadSignatures: true})
	if err != nil {
		b.Fatal(err)
	}
	sent, err := sentinel.New(sentinel.Config{MaxPeers: MaxPeers})
	if err != nil {
		b.Fatal(err)
	}
	n := &Node{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), ids: newIdentities(), pub: "self",
		reg: newRegistry(DefaultTiming(), true), ledger: ledger, sent: sent, hbVerify: trust.NewVerifier(0),
	}
	hb := &hbBench{n: n, start: time.Now().UTC()}
	for i := range peers {
		kp, err := nkeys.CreateServer()
		if err != nil {
			b.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		c, err := trust.NewChain(kp, trust.ChainState{})
		if err != nil {
			b.Fatal(err)
		}
		chev, err := subjects.Parse(fmt.Sprintf("9000.%d", i+1))
		if err != nil {
			b.Fatal(err)
		}
		n.ids.setNode(chev.String(), &wire.NodeInfo{Chevron: chev.String(), Pubkey: pub, Role: wire.NodeRoleEdge})
		hb.chains, hb.chevs, hb.pubs = append(hb.chains, c), append(hb.chevs, chev), append(hb.pubs, pub)
	}
	return hb
}

// round signs one heartbeat of every edge, as an edge sends it every 5 s.
func (h *hbBench) round(b *testing.B) []*nats.Msg {
	b.Helper()
	h.seq++
	now := time.Now().UTC()
	msgs := make([]*nats.Msg, len(h.chains))
	h.beats = make([]wire.Heartbeat, len(h.chains))
	for i, c := range h.chains {
		srv := mesh.ServerName(h.pubs[i])
		beat := wire.Heartbeat{Chevron: h.chevs[i].String(), Name: srv, Pubkey: h.pubs[i], Server: srv, Seq: h.seq,
			Sent: now, Started: h.start, Load: 0.12, Version: "bench", Role: wire.NodeRoleEdge,
			CPU: 0.21, Mem: 0.42, Disk: 0.5, EveryMs: 5000}
		data, err := json.Marshal(beat)
		if err != nil {
			b.Fatal(err)
		}
		m := &nats.Msg{Subject: leafnode.EdgeBeat(srv), Data: data, Header: nats.Header{}}
		hd, err := c.Sign(m.Subject, m.Data)
		if err != nil {
			b.Fatal(err)
		}
		hd.SetInto(m.Header)
		msgs[i], h.beats[i] = m, beat
	}
	return msgs
}

// run feeds every edge's heartbeats to stage, a round at a time (signing
// untimed), after one untimed round that gives every edge its state. It
// reports the heap that round kept per edge.
func (h *hbBench) run(b *testing.B, stage func(i int, m *nats.Msg)) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i, m := range h.round(b) {
		stage(i, m)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perPeer := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(len(h.chains))
	msgs, i := h.round(b), 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if i == len(msgs) {
			b.StopTimer()
			msgs, i = h.round(b), 0
			b.StartTimer()
		}
		stage(i, msgs[i])
		i++
	}
	b.ReportMetric(perPeer, "heap-B/peer")
}

// BenchmarkCoreHeartbeat is what a core member spends on one edge's
// heartbeat with 10,000 edges, whole (onHeartbeat) and by stage: the JSON
// decode, the signature and chain check (verifyNodeMsg), the Sentinel's
// observation (Beat), the registry's update. heap-B/peer is what an edge's
// first heartbeat leaves on the heap (its ledger and Sentinel records, its
// registry entry).
//
//	go test -run '^$' -bench CoreHeartbeat -benchmem ./node/
func BenchmarkCoreHeartbeat(b *testing.B) {
	const peers = 10000
	b.Run("onHeartbeat", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.run(b, func(_ int, m *nats.Msg) { h.n.onHeartbeat(m) })
	})
	b.Run("decode", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.run(b, func(_ int, m *nats.Msg) {
			var hb wire.Heartbeat
			if err := wire.Decode(m.Data, &hb); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.run(b, func(i int, m *nats.Msg) {
			if _, ok := h.n.verifyNodeMsg(m, h.chevs[i]); !ok {
				b.Fatal("refused")
			}
		})
	})
	b.Run("sentinel", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.run(b, func(i int, _ *nats.Msg) {
			peer, now := h.beats[i].Chevron, time.Now()
			h.n.sent.Beat(peer, sentinel.Beat{Latency: time.Millisecond, CPU: 0.21, Mem: 0.42, Disk: 0.5}, now)
		})
	})
	b.Run("registry", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.run(b, func(i int, _ *nats.Msg) { h.n.reg.onHeartbeat(h.beats[i], time.Now()) })
	})
}

// BenchmarkCoreStates is the monitor loop's scan of every member's state
// (every 250 ms) with 10,000 edges heard.
//
//	go test -run '^$' -bench CoreStates -benchmem ./node/
func BenchmarkCoreStates(b *testing.B) {
	h := newHBBench(b, 10000)
	for _, m := range h.round(b) {
		h.n.onHeartbeat(m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if st := h.n.reg.states(time.Now(), "1"); len(st) != len(h.chains) {
			b.Fatalf("%d states, want %d", len(st), len(h.chains))
		}
	}
}
