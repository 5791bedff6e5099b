//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// The checker on small hand-made histories: each breaks one promise, and
// the checker must name it (and only it); the clean history passes. These
// need no root.

// baseHistory is a clean run: three nodes, h1 leader with token 5, two
// commands answered ok by all three and audited once each, views that
// agree, one fault (a SIGKILL of h2) undone and healed.
func baseHistory() *history {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	h := &history{Began: t0, Chevrons: map[string]string{"h1": "1", "h2": "2", "h3": "3"},
		Bounds: checkBounds{Missing: 5 * time.Second, Heal: 60 * time.Second}, Stream: "rn_events",
		Watched: []watchSpan{{Watcher: "h1", From: t0, To: at(100)}, {Watcher: "h2", From: t0, To: at(100)}}}
	for i, id := range []string{"c-1", "c-2"} {
		h.Sent = append(h.Sent, sentCmd{ID: id, Client: "c", At: at(10 + float64(i)), Target: "rn.cmd.ping"})
		for _, chev := range []string{"1", "2", "3"} {
			h.Replies = append(h.Replies, replyRec{ID: id, Client: "c", Chevron: chev, Status: "ok", At: at(10.1 + float64(i))})
			for _, w := range []string{"h1", "h2"} {
				h.Live = append(h.Live, chaosAudit{ID: id, Chevron: chev, Status: "ok", Watcher: w, At: at(10.2 + float64(i))})
			}
			h.Stored = append(h.Stored, chaosAudit{ID: id, Chevron: chev, Status: "ok", Seq: uint64(len(h.Stored) + 1), At: at(10.2 + float64(i))})
		}
	}
	all := map[string]string{"h1": alive, "h2": alive, "h3": alive}
	for s := 8.0; s < 30; s += 0.5 {
		for _, n := range []string{"h1", "h2", "h3"} {
			h.Views = append(h.Views, viewRec{Node: n, Start: at(s), End: at(s + 0.2), Leader: "1", Token: 5,
				Claims: n == "h1", States: all})
		}
	}
	h.Faults = append(h.Faults, faultRec{Kind: "sigkill", Node: "h2", At: at(40), Undone: at(42), Healed: at(50)})
	// While h2 is down, the others show it offline: no violation.
	for s := 41.0; s < 50; s += 0.5 {
		for _, n := range []string{"h1", "h3"} {
			h.Views = append(h.Views, viewRec{Node: n, Start: at(s), End: at(s + 0.2), Leader: "1", Token: 5,
				Claims: n == "h1", States: map[string]string{"h1": alive, "h2": offline, "h3": alive}})
		}
	}
	return h
}

func TestChaosCheckerCleanHistory(t *testing.T) {
	if v := check(baseHistory()); len(v) != 0 {
		t.Fatalf("clean history: %d violations, first %v", len(v), v[0])
	}
}

func TestChaosCheckerCatches(t *testing.T) {
	t0 := baseHistory().Began
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	for _, tc := range []struct {
		name, check, msg string
		breakIt          func(h *history)
		also             string // another check the break may trip too
	}{
		{"lost command", "lost", "command c-2 answered ok by chevron 3", func(h *history) {
			var live, stored []chaosAudit
			for _, a := range h.Live {
				if a.ID != "c-2" || a.Chevron != "3" {
					live = append(live, a)
				}
			}
			for _, a := range h.Stored {
				if a.ID != "c-2" || a.Chevron != "3" {
					stored = append(stored, a)
				}
			}
			h.Live, h.Stored = live, stored
		}, ""},
		{"duplicate in the stream", "duplicate", "c-1 has 2 audit records of chevron 2", func(h *history) {
			h.Stored = append(h.Stored, chaosAudit{ID: "c-1", Chevron: "2", Status: "ok", Seq: 99, At: at(12)})
		}, ""},
		{"duplicate seen live by one watcher", "duplicate", "c-2 has 2 audit records of chevron 1", func(h *history) {
			h.Live = append(h.Live, chaosAudit{ID: "c-2", Chevron: "1", Status: "ok", Watcher: "h2", At: at(12)})
		}, ""},
		{"two records of one command seen live", "duplicate", "c-1 has 2 audit records of chevron 1", func(h *history) {
			for i := range h.Live {
				h.Live[i].MsgID = h.Live[i].ID + "/" + h.Live[i].Chevron
			}
			h.Live = append(h.Live, chaosAudit{ID: "c-1", MsgID: "another", Chevron: "1", Status: "ok", Watcher: "h1", At: at(12)})
		}, ""},
		{"two replies from one node", "duplicate", "c-1 got 2 replies from chevron 3", func(h *history) {
			h.Replies = append(h.Replies, replyRec{ID: "c-1", Client: "c", Chevron: "3", Status: "ok", At: at(12)})
		}, ""},
		{"overlapping leaders", "two-leaders", "h1 claims the lease with token 5", func(h *history) {
			// h3 took the lease (token 6), and h1 still claims token 5 after.
			h.Views = append(h.Views,
				viewRec{Node: "h3", Start: at(55), End: at(55.2), Leader: "3", Token: 6, Claims: true,
					States: map[string]string{"h1": alive, "h2": alive, "h3": alive}},
				viewRec{Node: "h1", Start: at(55.5), End: at(55.7), Leader: "1", Token: 5, Claims: true,
					States: map[string]string{"h1": alive, "h2": alive, "h3": alive}})
		}, ""},
		{"two holders of one token", "two-leaders", "h1 and h2 both claim the lease with token 5", func(h *history) {
			h.Views = append(h.Views, viewRec{Node: "h2", Start: at(20.1), End: at(20.2), Leader: "2", Token: 5, Claims: true,
				States: map[string]string{"h1": alive, "h2": alive, "h3": alive}})
		}, "token"},
		{"token going down", "token", "h3 showed token 5", func(h *history) {
			h.Views = append(h.Views, viewRec{Node: "h3", Start: at(35), End: at(35.2), Leader: "1", Token: 4,
				States: map[string]string{"h1": alive, "h2": alive, "h3": alive}})
		}, ""},
		{"live node shown offline", "missing", "h1 h3 shows it offline", func(h *history) {
			h.Views = append(h.Views, viewRec{Node: "h1", Start: at(25), End: at(25.2), Leader: "1", Token: 5, Claims: true,
				States: map[string]string{"h1": alive, "h2": alive, "h3": offline}})
		}, ""},
		{"a fault that never heals", "heal", "sigkill of h2 undone at +42.000s: the nodes never agreed again", func(h *history) {
			h.Faults[0].Healed = time.Time{}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := baseHistory()
			tc.breakIt(h)
			vs := check(h)
			if len(vs) == 0 {
				t.Fatalf("no violation found; want %s", tc.check)
			}
			for _, v := range vs {
				if v.Check != tc.check && v.Check != tc.also {
					t.Errorf("unexpected violation %v (want only %s)", v, tc.check)
				}
			}
			if !strings.Contains(vs[0].Msg, tc.msg) {
				t.Errorf("first violation %q does not say %q", vs[0], tc.msg)
			}
		})
	}
}

// TestChaosCheckerRetriedRecordIsOne: a node that publishes one audit
// record again (a retry until the stream acks it: the same Nats-Msg-Id)
// has run its command once.
func TestChaosCheckerRetriedRecordIsOne(t *testing.T) {
	h := baseHistory()
	for i := range h.Live {
		h.Live[i].MsgID = h.Live[i].ID + "/" + h.Live[i].Chevron
	}
	n := len(h.Live)
	for _, a := range h.Live[:n] {
		h.Live = append(h.Live, a, a) // two more copies of every record
	}
	if v := check(h); len(v) != 0 {
		t.Fatalf("retried copies counted as runs: %d violations, first %v", len(v), v[0])
	}
}

// TestChaosCheckerUnwatchedIsNotLost: without the durable stream, a
// record no watcher could have seen (every watcher disconnected around
// the reply) is unverifiable, not lost; one a connected watcher missed is
// lost.
func TestChaosCheckerUnwatchedIsNotLost(t *testing.T) {
	h := baseHistory()
	h.Stream, h.Stored = "", nil
	var live []chaosAudit
	for _, a := range h.Live {
		if a.ID != "c-2" {
			live = append(live, a)
		}
	}
	h.Live = live
	// c-2's replies came at +11.1 s; the watchers were down 10–20 s.
	h.Watched = []watchSpan{
		{Watcher: "h1", From: h.Began, To: h.Began.Add(10 * time.Second)},
		{Watcher: "h1", From: h.Began.Add(20 * time.Second), To: h.Began.Add(100 * time.Second)},
	}
	if v := check(h); len(v) != 0 {
		t.Fatalf("unwatched records counted lost: %v", v[0])
	}
	if n := unverifiable(h); n != 3 {
		t.Errorf("unverifiable = %d, want 3 (c-2 on three nodes)", n)
	}
	h.Watched = append(h.Watched, watchSpan{Watcher: "h2", From: h.Began, To: h.Began.Add(100 * time.Second)})
	if v := check(h); len(v) != 3 || v[0].Check != "lost" {
		t.Fatalf("with h2 watching throughout: %d violations %v, want 3 lost", len(v), v)
	}
}
