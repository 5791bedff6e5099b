package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// requestTimeout bounds one media request when ctx has no deadline: an
// offer waits for the node's gathering and its encoder's first packet.
const requestTimeout = 15 * time.Second

// WHEP sends one WHEP request to the node with chevron as c's signer (the
// viewer): session "" is the POST of an offer on stream, else a PATCH or
// DELETE of that session. The answer must be signed by that node's key in
// c's verified registry. A refusal is a *Error with its HTTP status.
func WHEP(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, stream, session string, req WHEPRequest) (WHEPReply, error) {
	return Caller{Client: c}.WHEP(ctx, chevron, stream, session, req)
}

// Caller sends media requests signed as Client's key. Key, when set, gives
// the node key registered at a chevron from a registry view the caller
// already holds (the gateway's node's): an answer must be signed by it.
// Without Key each request first asks Client for the swarm's registry,
// which costs a query of the whole registry per request.
type Caller struct {
	Client *mesh.Client
	Key    func(subjects.Chevron) (string, bool)
}

// WHEP is the package's WHEP as k.
func (k Caller) WHEP(ctx context.Context, chevron subjects.Chevron, stream, session string, req WHEPRequest) (WHEPReply, error) {
	if err := checkStream(stream); err != nil {
		return WHEPReply{}, &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: err.Error()}
	}
	subj := subjects.MediaWHEP(chevron, stream)
	if session != "" {
		if !validSession(session) {
			return WHEPReply{}, &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: fmt.Sprintf("session %q: no such session", clipStr(session, 64))}
		}
		subj = subjects.MediaSession(chevron, stream, session)
	}
	var rep WHEPReply
	if err := k.call(ctx, chevron, subj, req, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// List asks the node with chevron for its streams.
func List(ctx context.Context, c *mesh.Client, chevron subjects.Chevron) (MediaList, error) {
	return Caller{Client: c}.List(ctx, chevron)
}

// List is the package's List as k.
func (k Caller) List(ctx context.Context, chevron subjects.Chevron) (MediaList, error) {
	var l MediaList
	err := k.call(ctx, chevron, subjects.MediaList(chevron), struct{}{}, &l)
	if err == nil && l.Chevron != chevron.String() {
		return MediaList{}, fmt.Errorf("media list of %s: the answer is for %q", chevron, clipStr(l.Chevron, 64))
	}
	for i := range l.Streams {
		l.Streams[i].Chevron = chevron.String()
	}
	return l, err
}

// Lease starts or renews, as c's signer, the relay of stream from the
// node with chevron: while leases live, the node publishes the stream's
// RTP on subjects.MediaRTP. The first lease of an encoder run returns
// once it sends (or with its failure).
func Lease(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, stream string) error {
	return Caller{Client: c}.Lease(ctx, chevron, stream)
}

// Lease is the package's Lease as k.
func (k Caller) Lease(ctx context.Context, chevron subjects.Chevron, stream string) error {
	if err := checkStream(stream); err != nil {
		return &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: err.Error()}
	}
	var rep WHEPReply
	return k.call(ctx, chevron, subjects.MediaRelay(chevron, stream), RelayRequest{Stream: stream}, &rep)
}

// ListAll asks every member that is not offline for its streams at once
// and returns the lists of those that offer any, in members' order. A node
// without media (no answer) is left out; the other failures come back
// joined, beside what did answer.
func ListAll(ctx context.Context, c *mesh.Client, members []wire.Member) ([]MediaList, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
	}
	lists := make([]*MediaList, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.State == wire.StateOffline {
			continue
		}
		chev, err := subjects.Parse(m.Chevron)
		if err != nil || chev.IsZero() {
			continue
		}
		wg.Go(func() {
			l, err := listFrom(ctx, c, chev, m.Pubkey)
			var e *Error
			switch {
			case err == nil:
				if len(l.Streams) > 0 {
					lists[i] = &l
				}
			case errors.As(err, &e) && e.Status == http.StatusServiceUnavailable && e.Code == codeNoMedia:
				// no media service there
			default:
				errs[i] = fmt.Errorf("%s: %w", m.Chevron, err)
			}
		})
	}
	wg.Wait()
	var out []MediaList
	for _, l := range lists {
		if l != nil {
			out = append(out, *l)
		}
	}
	return out, errors.Join(errs...)
}

// listFrom is List with the node's key already known.
func listFrom(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, key string) (MediaList, error) {
	var l MediaList
	err := callKey(ctx, c, chevron, key, subjects.MediaList(chevron), struct{}{}, &l)
	for i := range l.Streams {
		l.Streams[i].Chevron = chevron.String()
	}
	if err == nil {
		l.Chevron = chevron.String()
	}
	return l, err
}

// codeNoMedia is a *Error's code when no node answers a media subject.
const codeNoMedia = "no_media"

// call signs and sends req to subj and decodes the node's signed answer
// into out, checking the signer is the node registered at chevron.
func (k Caller) call(ctx context.Context, chevron subjects.Chevron, subj string, req, out any) error {
	key := ""
	if k.Key != nil {
		var ok bool
		if key, ok = k.Key(chevron); !ok {
			return &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: fmt.Sprintf("no node %s in the swarm's registry", chevron)}
		}
	}
	return callKey(ctx, k.Client, chevron, key, subj, req, out)
}

func callKey(ctx context.Context, c *mesh.Client, chevron subjects.Chevron, key, subj string, req, out any) error {
	if c == nil || c.Signer() == nil {
		return fmt.Errorf("media request to %s: %w client: nodes answer signed requests only", chevron, mesh.ErrUnsigned)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: subj, Data: body}
	if err := c.Signer().SignMsg(m); err != nil {
		return fmt.Errorf("media request to %s: sign: %w", chevron, err)
	}
	resp, err := c.Conn().RequestMsgWithContext(ctx, m)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return &Error{Status: http.StatusServiceUnavailable, Code: codeNoMedia, RetryAfter: 5,
			Msg: fmt.Sprintf("node %s does not answer for media: it is offline, unknown, or offers no streams (robonet up --media name=source)", chevron)}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return &Error{Status: http.StatusGatewayTimeout, Code: wire.CodeTimeout, Msg: fmt.Sprintf("node %s did not answer in time", chevron)}
	case err != nil:
		return fmt.Errorf("media request to %s: %w", chevron, err)
	}
	if key == "" {
		if key, err = registryKey(ctx, c, chevron); err != nil {
			return err
		}
	}
	if err := checkSigner(resp, key); err != nil {
		return fmt.Errorf("media answer from %s: %w", chevron, err)
	}
	var r wire.Reply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("media answer from %s: %w", chevron, err)
	}
	if r.Error != nil {
		var rep WHEPReply
		_ = json.Unmarshal(r.Data, &rep)
		status := rep.Status
		if status < 400 || status > 599 {
			status = http.StatusBadGateway
		}
		return &Error{Status: status, Code: r.Error.Code, Msg: clipStr(r.Error.Msg, 1024), RetryAfter: min(max(rep.RetryAfter, 0), 3600)}
	}
	if err := json.Unmarshal(r.Data, out); err != nil {
		return fmt.Errorf("media answer from %s: %w", chevron, err)
	}
	return nil
}

// registryKey is the node key of chevron in c's verified registry.
func registryKey(ctx context.Context, c *mesh.Client, chevron subjects.Chevron) (string, error) {
	members, err := c.Nodes(ctx)
	if err != nil {
		return "", fmt.Errorf("the node key of %s: %w", chevron, err)
	}
	for _, m := range members {
		if m.Chevron == chevron.String() {
			return m.Pubkey, nil
		}
	}
	return "", &Error{Status: http.StatusNotFound, Code: wire.CodeNotFound, Msg: fmt.Sprintf("no node %s in the swarm's registry", chevron)}
}

// checkSigner checks that resp is signed, validly, by key.
func checkSigner(resp *nats.Msg, key string) error {
	h, err := mesh.ParseSigned(resp)
	if err != nil {
		return err
	}
	if h.From != key {
		return fmt.Errorf("signed by %s, not by the node's key %s", h.From, key)
	}
	return trust.NewVerifier(1).Verify(h, resp.Subject, resp.Data)
}
