package sentinel

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// warmPeers returns a sentinel with n peers, each with a warm history of
// every signal, and the time after the warm-up.
func warmPeers(b *testing.B, n int) (*Sentinel, []string, time.Time) {
	b.Helper()
	s := newSentinel(b, Config{MaxPeers: n})
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("3.12.%d.%d", i/250+1, i%250+1)
	}
	now := t0
	for w := range 40 { // 40 windows: past the warm-up of 30
		for sec := range 10 {
			at := now.Add(time.Duration(w*10+sec) * time.Second)
			for i, p := range names {
				s.Message(p, at)
				s.Heartbeat(p, at)
				s.Command(p, "ping", at)
				s.Reply(p, time.Duration(20+i%5)*time.Millisecond, at)
				s.Gauges(p, 0.2+float64(sec%3)/100, 0.5, 0.3, at)
			}
		}
		s.Evaluate(now.Add(time.Duration(w*10+10) * time.Second))
	}
	return s, names, now.Add(400 * time.Second)
}

// BenchmarkMessage is the per-message cost with 1000 peers, 100 messages
// per second per peer: every 1000th call per peer closes its window.
func BenchmarkMessage(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		s.Message(names[i%len(names)], now.Add(time.Duration(i)*10*time.Microsecond))
		i++
	}
}

// BenchmarkMessageSameWindow is the hot path alone: one peer, one window.
func BenchmarkMessageSameWindow(b *testing.B) {
	s, names, now := warmPeers(b, 1)
	b.ReportAllocs()
	for b.Loop() {
		s.Message(names[0], now)
	}
}

// BenchmarkMessageParallel is Message from every P on 1000 peers.
func BenchmarkMessageParallel(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	b.ReportAllocs()
	var start atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(500)) // goroutines on different peers
		for pb.Next() {
			s.Message(names[i%len(names)], now)
			i += 7
		}
	})
}

func BenchmarkCommand(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		s.Command(names[i%len(names)], "ping", now.Add(time.Duration(i)*10*time.Microsecond))
		i++
	}
}

func BenchmarkHeartbeat(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		s.Heartbeat(names[i%len(names)], now.Add(time.Duration(i)*time.Millisecond))
		i++
	}
}

// BenchmarkBeat is a heartbeat's whole cost to the Sentinel with 1000 peers
// (Beat: message, heartbeat, latency and gauges under one lock);
// BenchmarkBeatFourCalls the same as four calls, as nodes made it before.
func BenchmarkBeat(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	beat := Beat{Latency: 20 * time.Millisecond, CPU: 0.2, Mem: 0.5, Disk: 0.3}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		s.Beat(names[i%len(names)], beat, now.Add(time.Duration(i)*time.Millisecond))
		i++
	}
}

func BenchmarkBeatFourCalls(b *testing.B) {
	s, names, now := warmPeers(b, 1000)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		p, at := names[i%len(names)], now.Add(time.Duration(i)*time.Millisecond)
		s.Message(p, at)
		s.Heartbeat(p, at)
		s.Reply(p, 20*time.Millisecond, at)
		s.Gauges(p, 0.2, 0.5, 0.3, at)
		i++
	}
}

// BenchmarkEvaluate is Evaluate over 1000 warm peers: "steady" when no
// window ends (the cost of calling it every second), "closing" when every
// peer's window ends (once per Window: scoring 1000 peers × 8 signals; the
// observations that give the windows content are not timed).
func BenchmarkEvaluate(b *testing.B) {
	b.Run("steady", func(b *testing.B) {
		s, _, now := warmPeers(b, 1000)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			s.Evaluate(now.Add(time.Duration(i%1000) * time.Millisecond))
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/peer")
	})
	b.Run("closing", func(b *testing.B) {
		s, names, now := warmPeers(b, 1000)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			for i, p := range names {
				for sec := range 10 {
					at := now.Add(time.Duration(sec) * time.Second)
					s.Message(p, at)
					s.Heartbeat(p, at)
				}
				s.Command(p, "ping", now)
				s.Reply(p, time.Duration(20+i%5)*time.Millisecond, now)
				s.Gauges(p, 0.2, 0.5, 0.3, now)
			}
			now = now.Add(10 * time.Second)
			b.StartTimer()
			if fs := s.Evaluate(now); len(fs) != 0 {
				b.Fatalf("findings in a quiet benchmark: %v", fs[0])
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/peer")
	})
}
