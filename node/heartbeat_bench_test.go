package node

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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
	member bool             // send on rn.<chevron>.evt.hb (as members and bench/scale's simulated edges do), not _rn.ehb.<server>
	seq    uint64
	start  time.Time
}

func newHBBench(b testing.TB, peers int) *hbBench {
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
func (h *hbBench) round(b testing.TB) []*nats.Msg {
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
		if h.member {
			m.Subject = subjects.Event(h.chevs[i], subjects.EvtHeartbeat)
		}
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
// heartbeat with 10,000 edges, whole (onHeartbeat; -evt-subject: sent on
// rn.<chevron>.evt.hb, as bench/scale's simulated edges send) and by
// stage: the JSON decode, the signature and chain check (verifyNodeMsg),
// the Sentinel's observation (Beat), the registry's update. heap-B/peer is what an edge's
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
	b.Run("onHeartbeat-evt-subject", func(b *testing.B) {
		h := newHBBench(b, peers)
		h.member = true
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

// BenchmarkCoreHeartbeatDelivery is the NATS share of a heartbeat, without
// the node's handling: signed heartbeats of 2,000 edges published over TCP
// to an embedded server and delivered to an in-process subscriber that only
// counts them (one server: no routes). cpu-ns/op is the process's CPU time
// (publisher, server and subscriber together) per heartbeat delivered.
//
//	go test -run '^$' -bench CoreHeartbeatDelivery -benchtime 50000x ./node/
func BenchmarkCoreHeartbeatDelivery(b *testing.B) {
	h := newHBBench(b, 2000)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true})
	if err != nil {
		b.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(5 * time.Second) {
		b.Fatal("server not ready")
	}
	sub, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	pub, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	var got, want atomic.Int64
	arrived := make(chan struct{}, 1)
	if _, err := sub.Subscribe(leafnode.EdgeBeatAll, func(*nats.Msg) {
		if got.Add(1) == want.Load() {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	}); err != nil {
		b.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		b.Fatal(err)
	}
	var msgs []*nats.Msg
	batch := func() { // signing is not counted: 10 rounds at a time
		msgs = msgs[:0]
		for range 10 {
			msgs = append(msgs, h.round(b)...)
		}
	}
	var cpu time.Duration
	sent := int64(0)
	// drain waits until everything sent arrived and counts the CPU since start.
	drain := func(start time.Duration) {
		if err := pub.Flush(); err != nil {
			b.Fatal(err)
		}
		select { // a signal left from the last drain, which returned without it
		case <-arrived:
		default:
		}
		want.Store(sent)
		if got.Load() < sent {
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				b.Fatalf("%d of %d heartbeats delivered", got.Load(), sent)
			}
		}
		cpu += cpuTime() - start
	}
	batch()
	i, start := 0, cpuTime()
	b.ResetTimer()
	for b.Loop() {
		if i == len(msgs) {
			drain(start)
			b.StopTimer()
			batch()
			b.StartTimer()
			i, start = 0, cpuTime()
		}
		if err := pub.PublishMsg(msgs[i]); err != nil {
			b.Fatal(err)
		}
		i++
		sent++
	}
	drain(start)
	b.ReportMetric(float64(cpu)/float64(sent), "cpu-ns/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
