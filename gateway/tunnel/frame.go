package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A frame is one NATS message on a tunnel's data subject:
//
//	byte 0      kind
//	bytes 1..8  seq: 1, 2, 3, … for every frame one side sends (a gap means
//	            core NATS dropped one: the tunnel resets rather than corrupt)
//	bytes 9..16 val: data: unused; ack: bytes the receiver consumed so far
//	            (cumulative); hello: the sender's receive window
//	bytes 17..  body: data: the bytes; hello: the sender's data subject;
//	            reset: a reason for the log
type kind byte

const (
	kindData  kind = 1 // bytes of the stream
	kindAck   kind = 2 // credit: val = bytes consumed; the sender may have val+window in flight
	kindFin   kind = 3 // the sender will write no more (half-close)
	kindReset kind = 4 // the tunnel is over, both ways
	kindPing  kind = 5 // keepalive: the sender is alive
	kindHello kind = 6 // the dialer's first frame: where to send, and its window
)

func (k kind) String() string {
	switch k {
	case kindData:
		return "data"
	case kindAck:
		return "ack"
	case kindFin:
		return "fin"
	case kindReset:
		return "reset"
	case kindPing:
		return "ping"
	case kindHello:
		return "hello"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

const (
	headerLen = 17
	// MaxChunk is the most stream bytes one data frame carries.
	MaxChunk = 64 << 10
	// maxBody bounds a non-data frame's body (a subject, a reason).
	maxBody = 1024
)

type frame struct {
	kind kind
	seq  uint64
	val  uint64
	body []byte // aliases the message's data
}

var errFrame = errors.New("bad tunnel frame")

// parseFrame reads one frame; body aliases b.
func parseFrame(b []byte) (frame, error) {
	if len(b) < headerLen {
		return frame{}, fmt.Errorf("%w: %d bytes, want at least %d", errFrame, len(b), headerLen)
	}
	f := frame{kind: kind(b[0]), seq: binary.BigEndian.Uint64(b[1:9]), val: binary.BigEndian.Uint64(b[9:17]), body: b[headerLen:]}
	if f.seq == 0 {
		return frame{}, fmt.Errorf("%w: seq 0", errFrame)
	}
	switch f.kind {
	case kindData:
		if len(f.body) == 0 || len(f.body) > MaxChunk {
			return frame{}, fmt.Errorf("%w: data of %d bytes, want 1..%d", errFrame, len(f.body), MaxChunk)
		}
	case kindAck, kindFin, kindReset, kindPing, kindHello:
		if len(f.body) > maxBody {
			return frame{}, fmt.Errorf("%w: %s body of %d bytes, want at most %d", errFrame, f.kind, len(f.body), maxBody)
		}
	default:
		return frame{}, fmt.Errorf("%w: unknown kind %d", errFrame, byte(f.kind))
	}
	return f, nil
}

// appendFrame appends the encoding of a frame to dst.
func appendFrame(dst []byte, k kind, seq, val uint64, body []byte) []byte {
	dst = append(dst, byte(k))
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = binary.BigEndian.AppendUint64(dst, val)
	return append(dst, body...)
}
