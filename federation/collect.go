package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// The client's side of the ambassadors' streams (wire/fed.go): what counts
// of each swarm's start, node replies and done, and how every swarm and
// node ends.

// maxPending bounds the bytes of stream messages waiting to be read.
const maxPending = 256 << 20

// collector gathers the ambassadors' streams of one federated command.
type collector struct {
	id     string
	sub    *nats.Subscription
	verify *trust.Verifier
	report func(NodeResult)
	// nodeKey is Request.NodeKey.
	nodeKey func(string) (string, bool)
	sent    time.Time
	swarms  map[string]*swarmAnswer // by prefix: the swarms in view at send time
	// noResponders: the server said nobody subscribes to the subject.
	noResponders bool
	stray        int // messages that belong to no swarm in view
}

// swarmAnswer is one swarm's stream so far.
type swarmAnswer struct {
	prefix subjects.Chevron
	// leader and leaderKey are the directory's word on the swarm's lease
	// holder at send time.
	leader, leaderKey string
	ambKey            string
	amb               string
	rev               uint64
	parts             int // start parts seen
	want              int // start parts announced
	exp               []wire.FedNode
	keys              map[string]string // chevron → the key its reply must be signed with
	nodes             map[string]*NodeResult
	done              *wire.FedDone
	dropped           int
}

func (c *collector) close() { _ = c.sub.Unsubscribe() }

// pending reports whether some swarm has not sent its done.
func (c *collector) pending() bool {
	if c.noResponders {
		return false
	}
	for _, s := range c.swarms {
		if s.done == nil {
			return true
		}
	}
	return false
}

// run takes the streams until every swarm is done, timeout passed since
// the publish, or ctx ends.
func (c *collector) run(ctx context.Context, timeout time.Duration) {
	ctx, cancel := context.WithDeadline(ctx, c.sent.Add(timeout))
	defer cancel()
	for c.pending() {
		m, err := c.sub.NextMsgWithContext(ctx)
		if err != nil {
			return
		}
		c.take(m)
	}
}

// take settles one message of the streams.
func (c *collector) take(m *nats.Msg) {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		c.noResponders = true
		return
	}
	switch m.Header.Get(wire.HdrFedKind) {
	case wire.FedKindStart:
		c.takeStart(m)
	case wire.FedKindDone:
		c.takeDone(m)
	case wire.FedKindResult:
		c.takeResult(m)
	default:
		c.stray++
	}
}

// signed verifies an ambassador's record, signed over our inbox, and
// returns its signer.
func (c *collector) signed(m *nats.Msg, v any) (string, error) {
	if len(m.Data) > wire.MaxMessage {
		return "", wire.ErrTooLarge
	}
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return "", err
	}
	if err := c.verify.Verify(h, m.Subject, m.Data); err != nil {
		return h.From, err
	}
	return h.From, json.Unmarshal(m.Data, v)
}

// swarmOf finds the swarm a record names, and checks that its signer is
// the swarm's ambassador (the first start's signer). A swarm not in view,
// another signer or a bad signature is dropped.
func (c *collector) swarmOf(swarm, amb, from string, err error, first bool) *swarmAnswer {
	s := c.swarms[swarm]
	if s == nil {
		c.stray++
		return nil
	}
	ac, perr := subjects.Parse(amb)
	if err != nil || perr != nil || !ac.HasPrefix(s.prefix) {
		s.dropped++
		return nil
	}
	if s.ambKey == "" && first {
		if !c.keyHolds(amb, from) || (amb == s.leader && from != s.leaderKey) {
			s.dropped++ // not the key the federation knows for that node
			return nil
		}
		s.ambKey, s.amb = from, amb
	}
	if from != s.ambKey || amb != s.amb {
		s.dropped++ // a second ambassador, or a forgery
		return nil
	}
	return s
}

// keyHolds reports whether key may be chevron's: always without a
// NodeKey; with one, only the key it gives.
func (c *collector) keyHolds(chevron, key string) bool {
	if c.nodeKey == nil {
		return true
	}
	want, ok := c.nodeKey(chevron)
	return ok && want == key
}

func (c *collector) takeStart(m *nats.Msg) {
	var st wire.FedStart
	from, err := c.signed(m, &st)
	if err == nil && (st.ID != c.id || st.Kind != wire.FedKindStart) {
		err = errors.New("another request's start")
	}
	s := c.swarmOf(st.Swarm, st.Ambassador, from, err, true)
	if s == nil || s.done != nil {
		return
	}
	if st.Parts < 1 || st.Part < 1 || st.Part > st.Parts || st.Parts > wire.MaxFedNodes || (s.want != 0 && st.Parts != s.want) ||
		len(s.exp)+len(st.Expected) > wire.MaxFedNodes {
		s.dropped++
		return
	}
	s.want, s.rev = st.Parts, st.RegistryRev
	s.parts++
	for _, nd := range st.Expected {
		cv, err := subjects.Parse(nd.Chevron)
		if err != nil || !cv.HasPrefix(s.prefix) || s.keys[nd.Chevron] != "" || trust.CheckKey(nd.Pubkey) != nil || !c.keyHolds(nd.Chevron, nd.Pubkey) {
			s.dropped++
			continue
		}
		if nd.Chevron == s.amb && nd.Pubkey != s.ambKey {
			// The ambassador lists itself under another key than the one
			// it signs with: nothing it says holds.
			s.ambKey = "\x00inconsistent"
			s.dropped++
			return
		}
		s.exp = append(s.exp, nd)
		s.keys[nd.Chevron] = nd.Pubkey
		r := &NodeResult{NodeResult: mesh.NodeResult{Chevron: nd.Chevron, Name: nd.Name, Status: mesh.StatusTimeout}, Swarm: s.prefix.String()}
		if nd.State == wire.StateOffline {
			r.Status, r.Error = mesh.StatusOffline, "not live in its swarm's registry"
			c.report(*r)
		}
		s.nodes[nd.Chevron] = r
	}
}

func (c *collector) takeDone(m *nats.Msg) {
	var d wire.FedDone
	from, err := c.signed(m, &d)
	if err == nil && (d.Kind != wire.FedKindDone || (d.ID != c.id && !(d.ID == "" && d.Error != nil))) {
		err = errors.New("another request's done")
	}
	// A refusal comes without a start: it may open the stream.
	s := c.swarmOf(d.Swarm, d.Ambassador, from, err, d.Error != nil)
	if s == nil || s.done != nil {
		return
	}
	if len(d.Expected) > wire.MaxFedNodes || len(d.Offline) > wire.MaxFedNodes || len(d.Timeout) > wire.MaxFedNodes {
		s.dropped++
		return
	}
	s.done = &d
}

func (c *collector) takeResult(m *nats.Msg) {
	if len(m.Data) > mesh.MaxReply {
		c.stray++
		return
	}
	var wr wire.Result
	if json.Unmarshal(m.Data, &wr) != nil {
		c.stray++
		return
	}
	cv, err := subjects.Parse(wr.Chevron)
	if err != nil {
		c.stray++
		return
	}
	sw, _ := subjects.SwarmOf(cv)
	s := c.swarms[sw.String()]
	if s == nil {
		c.stray++
		return
	}
	r, ok := s.nodes[wr.Chevron]
	want := s.keys[wr.Chevron]
	h, herr := mesh.ParseSigned(m)
	switch {
	case !ok || want == "" || s.done != nil:
		s.dropped++ // not announced by the start, or after the done
		return
	case herr != nil || h.From != want || wr.ID != c.id:
		s.dropped++
		return
	case c.verify.Verify(h, m.Header.Get(wire.HdrFedSigned), m.Data) != nil:
		s.dropped++
		return
	case r.Status != mesh.StatusTimeout:
		return // a duplicate
	}
	r.Status, r.Output, r.Text = wr.Status, wr.Output, wr.Text
	if wr.Error != nil {
		r.Error, r.Code = wr.Error.Msg, wr.Error.Code
	}
	r.Ms = float64(time.Since(c.sent).Microseconds()) / 1000
	c.report(*r)
}

// results accounts for every swarm in view and each of its nodes.
func (c *collector) results(timeout time.Duration) ([]SwarmResult, []NodeResult, int) {
	var swarms []SwarmResult
	var nodes []NodeResult
	dropped := c.stray
	for _, s := range c.swarms {
		dropped += s.dropped
		sr := SwarmResult{Swarm: s.prefix.String(), Ambassador: s.amb, AmbassadorKey: s.ambKey, Expected: len(s.exp),
			RegistryRev: s.rev, Dropped: s.dropped}
		offline, timedOut := map[string]bool{}, map[string]bool{}
		switch {
		case s.done != nil && s.done.Error != nil:
			sr.Status, sr.Error, sr.Code = SwarmRefused, s.done.Error.Msg, s.done.Error.Code
		case s.done != nil && (s.parts < s.want || (s.want == 0 && len(s.done.Expected) > 0)):
			sr.Status, sr.Error = SwarmIncomplete, fmt.Sprintf("incomplete: %d of %d start parts arrived", s.parts, max(s.want, 1))
		case s.done != nil:
			sr.Status, sr.RegistryRev = SwarmComplete, s.done.RegistryRev
			for _, ch := range s.done.Offline {
				offline[ch] = true
			}
			for _, ch := range s.done.Timeout {
				timedOut[ch] = true
			}
			if len(s.exp) == 0 {
				sr.Expected = len(s.done.Expected)
			}
		case c.noResponders:
			sr.Status, sr.Error = SwarmIncomplete, "incomplete: no ambassador serves it (no responders: no node of it sees a live leader, or its link is down)"
		default:
			sr.Status, sr.Error = SwarmIncomplete, fmt.Sprintf("incomplete: no done from its ambassador within %v", timeout)
		}
		for _, nd := range s.exp {
			r := s.nodes[nd.Chevron]
			switch r.Status {
			case mesh.StatusOffline:
				sr.Offline = append(sr.Offline, r.Chevron)
			case mesh.StatusTimeout:
				sr.Timeout = append(sr.Timeout, r.Chevron)
				switch {
				case offline[r.Chevron]:
					r.Status, r.Error = mesh.StatusOffline, "not live in its swarm's registry"
					sr.Timeout = sr.Timeout[:len(sr.Timeout)-1]
					sr.Offline = append(sr.Offline, r.Chevron)
				case timedOut[r.Chevron]:
					r.Error = "no answer within its ambassador's wait"
				case s.done != nil:
					r.Error = "its ambassador's done came without its answer"
				default:
					r.Error = fmt.Sprintf("no answer within %v (its swarm's answer is incomplete)", timeout)
				}
				c.report(*r)
			default:
				sr.Answered++
			}
			nodes = append(nodes, *r)
		}
		swarms = append(swarms, sr)
	}
	return swarms, nodes, dropped
}
