package trust

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/robonet-mesh/robonet/subjects"
)

// TestGoldenEncoding pins the byte encodings of the package doc: changing
// them splits the swarm. The values were cross-checked with an independent
// implementation (Python hashlib and the cryptography package's ed25519).
func TestGoldenEncoding(t *testing.T) {
	t.Parallel()
	kp := userKey(t, 7)
	if got, want := pubOf(t, kp), "UDVEU3DD4KOFECV66VIHWEZOYX4ZKR3WV27L464SIIPOU2IUI3JCYSJF"; got != want {
		t.Fatalf("test key %s, want %s", got, want)
	}
	if got := ChainHash(Hash{}, 1, "rn.1.evt.hb", []byte("x")).String(); got != "dc592817f6dd8a9867bb828ec85885fecd8c23cc4254e929fe88b0eea2a88688" {
		t.Fatalf("ChainHash = %s", got)
	}
	wantSigned := "726f626f6e65742f686374682f7369670004726e2f310000000000000002" + // tag, len(ver), ver, seq
		"0100000000000000000000000000000000000000000000000000000000000000" + // prev
		"0003612e62" + // len(subject), subject
		"0200000000000000000000000000000000000000000000000000000000000000" // digest
	if got := fmt.Sprintf("%x", signedBytes("rn/1", 2, Hash{1}, "a.b", Hash{2})); got != wantSigned {
		t.Fatalf("signedBytes = %s\nwant          %s", got, wantSigned)
	}
	c := newChain(t, kp, ChainState{})
	want := []struct{ prev, sig string }{
		{"0000000000000000000000000000000000000000000000000000000000000000", "_I_nB9V107xZSsQmHeSt8fzD35sUoHMptEJzuSydEaWJ4OkOqQFto3bdjZnnKYB-yjWRgBXMFYI2Rt7QUUIgCw"},
		{"62541d413bc73c2ad0f5babaa3af55143fdd83a4a8f52e583ad3179bc83d788c", "nHUC1WHnt2sIeMBDa69rlLnCL4jOCKpENeDhXXcn8BXEVApOfBuuViwn6WRapOvqzY9PChvUtVTbv8KPwDSzDQ"},
	}
	for i, p := range []string{"hello", ""} {
		m := sign(t, c, "rn.3.12.cmd.ping", p)
		if Hash(m.h.Prev).String() != want[i].prev || base64.RawURLEncoding.EncodeToString(m.h.Sig) != want[i].sig {
			t.Fatalf("message %d: prev %s sig %s", i+1, Hash(m.h.Prev), base64.RawURLEncoding.EncodeToString(m.h.Sig))
		}
	}
	if got := c.State().Head.String(); got != "6ab99fef2fd9ff1510d203fe2e5a52e7a5d252db4af8490f7d05b443befb8221" {
		t.Fatalf("head = %s", got)
	}
}

func TestChainSignLinksMessages(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	var head Hash
	for i := uint64(1); i <= 5; i++ {
		subject, payload := fmt.Sprintf("rn.%d.evt.hb", i), []byte{byte(i)}
		h, err := c.Sign(subject, payload)
		if err != nil {
			t.Fatal(err)
		}
		if h.Seq != i || Hash(h.Prev) != head || h.From != c.PublicKey() {
			t.Fatalf("message %d: seq %d prev %s from %s", i, h.Seq, Hash(h.Prev), h.From)
		}
		head = ChainHash(head, i, subject, payload)
		if st := c.State(); st.Seq != i || st.Head != head {
			t.Fatalf("state after %d: %+v, want head %s", i, st, head)
		}
		if err := NewVerifier(0).Verify(h, subject, payload); err != nil {
			t.Fatalf("message %d does not verify: %v", i, err)
		}
	}
}

func TestChainStateRoundTripContinuesChain(t *testing.T) {
	t.Parallel()
	kp := userKey(t, 1)
	l := newLedger(t, Config{})
	c := newChain(t, kp, ChainState{})
	for _, m := range signN(t, c, 3) {
		if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
			t.Fatalf("observe: %v %v", v, err)
		}
	}
	b, err := json.Marshal(c.State())
	if err != nil {
		t.Fatal(err)
	}
	var st ChainState
	if err := json.Unmarshal(b, &st); err != nil || st != c.State() {
		t.Fatalf("JSON round trip %s: %+v %v", b, st, err)
	}
	restarted := newChain(t, kp, st)
	m := sign(t, restarted, "rn.1.evt.hb", "after restart")
	if m.h.Seq != 4 {
		t.Fatalf("restarted chain signed seq %d, want 4", m.h.Seq)
	}
	if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
		t.Fatalf("observe after restart: %v %v", v, err)
	}
	if p, _ := l.Peer(c.PublicKey()); p.Gaps != 0 || p.Length != 4 {
		t.Fatalf("peer after restart: %+v", p)
	}
	for _, bad := range []string{`{"seq":1,"head":"00"}`, `{"seq":1,"head":"` + fmt.Sprintf("%064X", 0xabc) + `"}`} {
		if err := json.Unmarshal([]byte(bad), &st); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestNewChainRejects(t *testing.T) {
	t.Parallel()
	user := userKey(t, 1)
	pubOnly, err := nkeys.FromPublicKey(pubOf(t, user))
	if err != nil {
		t.Fatal(err)
	}
	curve, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		kp    nkeys.KeyPair
		state ChainState
		want  error
	}{
		{"nil key", nil, ChainState{}, ErrKey},
		{"public key only", pubOnly, ChainState{}, ErrKey},
		{"curve key", curve, ChainState{}, ErrKey},
		{"account key", testKey(t, nkeys.PrefixByteAccount, 1), ChainState{}, ErrKey},
		{"operator key", testKey(t, nkeys.PrefixByteOperator, 1), ChainState{}, ErrKey},
		{"seq 0 with head", user, ChainState{Head: Hash{1}}, ErrChainState},
		{"seq 3 without head", user, ChainState{Seq: 3}, ErrChainState},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewChain(tt.kp, tt.state)
			checkErr(t, "NewChain", err, tt.want)
		})
	}
}

func TestChainSignRejectsBadSubjects(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	for _, s := range []string{"", "rn.*", "rn.>", "a..b", "a b", string(make([]byte, subjects.MaxSubjectLen+1))} {
		if _, err := c.Sign(s, nil); !errors.Is(err, subjects.ErrSubject) {
			t.Errorf("Sign(%.20q) = %v, want ErrSubject", s, err)
		}
	}
	if c.State().Seq != 0 {
		t.Fatalf("refused subjects used sequence numbers: %+v", c.State())
	}
}

func TestChainExhausted(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{Seq: math.MaxUint64 - 1, Head: Hash{9}})
	if h, err := c.Sign("rn.1.evt.hb", nil); err != nil || h.Seq != math.MaxUint64 {
		t.Fatalf("last seq: %+v %v", h, err)
	}
	if _, err := c.Sign("rn.1.evt.hb", nil); !errors.Is(err, ErrChainExhausted) {
		t.Fatalf("after last seq: %v", err)
	}
}

// TestChainConcurrentSign checks Sign under contention: every message gets
// its own seq, and the chain replayed in seq order ends at State().Head.
func TestChainConcurrentSign(t *testing.T) {
	t.Parallel()
	c := newChain(t, userKey(t, 1), ChainState{})
	const workers, each = 8, 25
	var (
		mu   sync.Mutex
		msgs []msg
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				subject, payload := fmt.Sprintf("rn.%d.evt.hb", w+1), []byte(fmt.Sprint(i))
				h, err := c.Sign(subject, payload)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				msgs = append(msgs, msg{h, subject, payload})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].h.Seq < msgs[j].h.Seq })
	var head Hash
	v := NewVerifier(0)
	for i, m := range msgs {
		if m.h.Seq != uint64(i+1) || Hash(m.h.Prev) != head {
			t.Fatalf("message %d: seq %d prev %s, want prev %s", i, m.h.Seq, Hash(m.h.Prev), head)
		}
		if err := v.Verify(m.h, m.subject, m.payload); err != nil {
			t.Fatal(err)
		}
		head = ChainHash(head, m.h.Seq, m.subject, m.payload)
	}
	if st := c.State(); st.Seq != workers*each || st.Head != head {
		t.Fatalf("state %+v, want seq %d head %s", st, workers*each, head)
	}
}

func TestChainStateSkip(t *testing.T) {
	t.Parallel()
	kp := userKey(t, 1)
	l := newLedger(t, Config{})
	c := newChain(t, kp, ChainState{})
	msgs := signN(t, c, 5)
	persisted := c.State()
	msgs = append(msgs, signN(t, c, 3)...) // sent, then the node crashed before persisting
	for _, m := range msgs {
		if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
			t.Fatalf("observe: %v %v", v, err)
		}
	}
	// Restarting at the persisted state would reuse seqs 6..8: a fork.
	naive := sign(t, newChain(t, kp, persisted), "rn.1.evt.hb", "naive restart")
	if v, err := newLedgerWith(t, msgs).Observe(naive.h, naive.subject, naive.payload, t0); v != Break || !errors.Is(err, ErrFork) {
		t.Fatalf("restart without skip: %v %v, want a fork", v, err)
	}
	skipped, err := persisted.Skip(100)
	if err != nil || skipped.Seq != 105 || skipped.Head.IsZero() {
		t.Fatalf("Skip: %+v %v", skipped, err)
	}
	m := sign(t, newChain(t, kp, skipped), "rn.1.evt.hb", "after skip")
	if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
		t.Fatalf("after skip: %v %v", v, err)
	}
	if p, _ := l.Peer(pubOf(t, kp)); p.Gaps != 1 || p.Missing != 97 || p.State != Trusted {
		t.Fatalf("peer after skip: %+v", p)
	}
	for _, tt := range []struct {
		st   ChainState
		n    uint64
		want error
	}{
		{persisted, 0, ErrChainState},
		{ChainState{Seq: 1}, 5, ErrChainState},
		{persisted, math.MaxUint64, ErrChainExhausted},
		{ChainState{Seq: math.MaxUint64 - 10, Head: Hash{1}}, 10, ErrChainExhausted},
	} {
		_, err := tt.st.Skip(tt.n)
		checkErr(t, fmt.Sprintf("Skip(%d) from %d", tt.n, tt.st.Seq), err, tt.want)
	}
}

// newLedgerWith returns a default ledger that has accepted msgs.
func newLedgerWith(t *testing.T, msgs []msg) *Ledger {
	t.Helper()
	l := newLedger(t, Config{})
	for _, m := range msgs {
		if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
			t.Fatalf("observe: %v %v", v, err)
		}
	}
	return l
}

func TestLongSubjectsSignAndVerify(t *testing.T) {
	t.Parallel()
	long := "rn.1." + strings.Repeat("a", subjects.MaxSubjectLen-5)
	c := newChain(t, userKey(t, 1), ChainState{})
	l := newLedger(t, Config{})
	for i := 0; i < 2; i++ {
		m := sign(t, c, long, "x")
		if v, err := l.Observe(m.h, m.subject, m.payload, t0); v != Accept {
			t.Fatalf("message %d: %v %v", i, v, err)
		}
		if err := NewVerifier(0).Verify(m.h, long[:len(long)-1], m.payload); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("shortened subject: %v", err)
		}
	}
	if got, want := c.State().Head, ChainHash(ChainHash(Hash{}, 1, long, []byte("x")), 2, long, []byte("x")); got != want {
		t.Fatalf("head %s, want %s", got, want)
	}
}

func TestHashText(t *testing.T) {
	t.Parallel()
	var h Hash
	for _, bad := range []string{"", "00", strings.Repeat("A", 64), strings.Repeat("0", 65), strings.Repeat("g", 64)} {
		if err := h.UnmarshalText([]byte(bad)); !errors.Is(err, ErrHash) {
			t.Errorf("UnmarshalText(%q) = %v", bad, err)
		}
	}
	want := Hash{0xab, 0xcd}
	text, _ := want.MarshalText()
	if err := h.UnmarshalText(text); err != nil || h != want || string(text) != want.String() {
		t.Fatalf("round trip %s: %s %v", text, h, err)
	}
}
