package tunnel

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func FuzzParseFrame(f *testing.F) {
	f.Add(appendFrame(nil, kindData, 1, 0, []byte("hello")))
	f.Add(appendFrame(nil, kindAck, 7, 1<<20, nil))
	f.Add(appendFrame(nil, kindHello, 1, 1<<20, []byte("_rn.inbox.UABC.tun.00")))
	f.Add([]byte{9, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := parseFrame(b)
		if err != nil {
			return
		}
		if fr.seq == 0 || fr.kind < kindData || fr.kind > kindHello {
			t.Fatalf("accepted %+v", fr)
		}
		if fr.kind == kindData && (len(fr.body) == 0 || len(fr.body) > MaxChunk) {
			t.Fatalf("data of %d bytes accepted", len(fr.body))
		}
		if fr.kind != kindData && len(fr.body) > maxBody {
			t.Fatalf("%s body of %d bytes accepted", fr.kind, len(fr.body))
		}
		again := appendFrame(nil, fr.kind, fr.seq, fr.val, fr.body)
		if !bytes.Equal(again, b) {
			t.Fatalf("round trip: %x != %x", again, b)
		}
	})
}

// testConn is a Conn with no NATS behind it: frames go to handle directly.
func testConn() *Conn {
	c := newConn(nil, connConfig{window: MinWindow, keepAlive: time.Hour}, "_rn.inbox.X.tun.1", "a", "b")
	return c
}

func TestSeqGapResetsInsteadOfCorrupting(t *testing.T) {
	c := testConn()
	c.handle(&nats.Msg{Data: appendFrame(nil, kindData, 1, 0, []byte("ab"))})
	c.handle(&nats.Msg{Data: appendFrame(nil, kindData, 3, 0, []byte("cd"))}) // 2 lost
	buf := make([]byte, 10)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ab" {
		t.Fatalf("first read %q, %v: want what came before the gap", buf[:n], err)
	}
	if _, err := c.Read(buf); !errors.Is(err, ErrReset) {
		t.Fatalf("read after a gap: %v, want ErrReset", err)
	}
}

func TestOverrunningTheWindowResets(t *testing.T) {
	c := testConn()
	chunk := make([]byte, MinWindow-frameCost) // exactly the window with its frame cost
	c.handle(&nats.Msg{Data: appendFrame(nil, kindData, 1, 0, chunk)})
	if c.Err() != nil {
		t.Fatalf("a frame filling the window: %v", c.Err())
	}
	c.handle(&nats.Msg{Data: appendFrame(nil, kindData, 2, 0, []byte{1})})
	if !errors.Is(c.Err(), errFrame) {
		t.Fatalf("err %v after a frame beyond the window, want a bad frame", c.Err())
	}
}

// Small frames count against the window too: a window bounds the frames
// in flight, not only their bytes.
func TestSmallFramesFillTheWindow(t *testing.T) {
	c := testConn()
	var i uint64
	for i = 1; c.Err() == nil && i < 10000; i++ {
		c.handle(&nats.Msg{Data: appendFrame(nil, kindData, i, 0, []byte{1})})
	}
	if max := uint64(MinWindow/(frameCost+1)) + 2; i > max {
		t.Fatalf("%d one-byte frames accepted in a %d-byte window, want at most %d", i-2, MinWindow, max)
	}
	if !errors.Is(c.Err(), errFrame) {
		t.Fatalf("err %v, want a bad frame", c.Err())
	}
}

func TestAckBeyondWhatWasSentResets(t *testing.T) {
	c := testConn()
	c.handle(&nats.Msg{Data: appendFrame(nil, kindAck, 1, 5, nil)})
	if !errors.Is(c.Err(), errFrame) {
		t.Fatalf("err %v, want a bad frame", c.Err())
	}
}

func TestHelloOnlyFirstAndToAnInbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"not an inbox", appendFrame(nil, kindHello, 1, MinWindow, []byte("rn.cmd.exec"))},
		{"wildcard", appendFrame(nil, kindHello, 1, MinWindow, []byte("_rn.inbox.>"))},
		{"window too big", appendFrame(nil, kindHello, 1, MaxWindow+1, []byte("_rn.inbox.X.tun.2"))},
	} {
		c := testConn()
		c.handle(&nats.Msg{Data: tc.f})
		if c.Err() == nil {
			t.Errorf("%s: hello accepted", tc.name)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, s := range []string{"", "0", "08080", "65536", "-1", "+80", "80a", "99999999999"} {
		if _, err := ParsePort(s); err == nil {
			t.Errorf("ParsePort(%q) accepted", s)
		}
	}
	for s, want := range map[string]int{"1": 1, "8080": 8080, "65535": 65535} {
		if got, err := ParsePort(s); err != nil || got != want {
			t.Errorf("ParsePort(%q) = %d, %v", s, got, err)
		}
	}
}

func TestCheckPorts(t *testing.T) {
	if _, err := CheckPorts([]int{8080, 3000, 8080}); err == nil {
		t.Error("duplicate accepted")
	}
	if _, err := CheckPorts([]int{0}); err == nil {
		t.Error("port 0 accepted")
	}
	if got, err := CheckPorts([]int{8080, 3000}); err != nil || got[0] != 3000 {
		t.Errorf("got %v, %v", got, err)
	}
}
