package tunnel

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/subjects"
)

// The open handshake. The dialer sends a signed request (openRequest) to
// rn.<chevron>.http.<port> with a reply inbox of its own; the target
// answers (wire.Reply with openReply) with its data subject, under its own
// inbox prefix. The dialer then sends a hello frame there naming the
// dialer's data subject. Data subjects are random 128-bit tokens and only
// ever travel over private inboxes (anyone who may subscribe to rn.> sees
// the open request, and only an identity itself may subscribe to its
// inbox), so nobody else learns where a tunnel's frames go.

// Error codes a target answers an open with (wire.Error.Code), besides
// wire.CodeDenied (role) and wire.CodeBadRequest.
const (
	CodeNotAllowed = "port_not_allowed"   // the port is not in the target's --proxy-allow
	CodeRefused    = "connection_refused" // nothing listens on the port (or it refused)
	CodeBusy       = "busy"               // the target's tunnel limit is reached
	// Codes the dialer makes itself.
	CodeNoTarget = "no_target" // no node answered for the chevron
	CodeTimeout  = "timeout"   // no answer in time
)

// openRequest is the open request's payload.
type openRequest struct {
	Window int `json:"window"` // the dialer's receive window
}

// openReply is the target's answer (the Data of a wire.Reply).
type openReply struct {
	Subject string `json:"subject"` // the target's data subject
	Window  int    `json:"window"`  // the target's receive window
}

// maxOpenRequest bounds an open request's payload.
const maxOpenRequest = 1024

// OpenError is a refused or failed open: the target's code and message,
// or the dialer's (CodeNoTarget, CodeTimeout).
type OpenError struct {
	Chevron string
	Port    int
	Code    string
	Msg     string
}

func (e *OpenError) Error() string { return e.Msg }

// Subject is the open-request subject for port on chevron:
// rn.<chevron>.http.<port>.
func Subject(chevron subjects.Chevron, port int) string {
	return subjects.Root + "." + chevron.String() + ".http." + strconv.Itoa(port)
}

// subscription is what a target on chevron subscribes to.
func subscription(chevron subjects.Chevron) string {
	return subjects.Root + "." + chevron.String() + ".http.*"
}

// ParsePort reads a port: decimal, 1..65535, no sign or leading zero.
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, fmt.Errorf("port %q: want 1..65535", clip(s, 16))
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("port %q: want 1..65535", clip(s, 16))
		}
	}
	p, _ := strconv.Atoi(s)
	if p > 65535 {
		return 0, fmt.Errorf("port %q: want 1..65535", s)
	}
	return p, nil
}

// portOf reads the port token of an open subject for chevron.
func portOf(chevron subjects.Chevron, subject string) (int, error) {
	pre := subjects.Root + "." + chevron.String() + ".http."
	if !strings.HasPrefix(subject, pre) {
		return 0, fmt.Errorf("subject %q is not an open for %s", clip(subject, 128), chevron)
	}
	return ParsePort(subject[len(pre):])
}

// randomToken is 128 random bits in hex.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// dataSubject is a fresh data subject under nc's inbox prefix.
func dataSubject(nc *nats.Conn) string {
	in := nc.NewInbox()
	return in[:strings.LastIndexByte(in, '.')] + ".tun." + randomToken()
}

var errSubject = errors.New("bad tunnel data subject")

// checkDataSubject checks a data subject the other end named: an inbox
// subject, no wildcards, bounded.
func checkDataSubject(s string) error {
	if len(s) > 256 || !strings.HasPrefix(s, subjects.InboxRoot+".") || strings.ContainsAny(s, "*> \t\r\n") {
		return fmt.Errorf("%w %q", errSubject, clip(s, 64))
	}
	if err := subjects.ValidPublish(s); err != nil {
		return fmt.Errorf("%w: %v", errSubject, err)
	}
	return nil
}
