package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// SwarmTokens is how many chevron tokens name a swarm of a federation:
// zone.region.swarm (the node is the fourth).
const SwarmTokens = 3

// ErrSwarmPrefix is wrapped when a chevron is not a swarm prefix (exactly
// zone.region.swarm) where one is needed.
var ErrSwarmPrefix = errors.New("not a swarm prefix")

// Federated directory (issue 11). Each swarm's lease holder publishes its
// summary on rn.dir.<zone>.<region>.<swarm>.summary every second; every
// federated node subscribes to DirSummaryWildcard.
const (
	// DirRoot starts every directory subject.
	DirRoot = Root + ".dir"
	// DirSummaryWildcard matches every swarm's summary.
	DirSummaryWildcard = DirRoot + ".*.*.*.summary"

	// QueryFed asks a federated node for its directory (served beside the
	// node by the federation feature, answered signed like every query).
	QueryFed = "fed"
	// QueryFedNodes asks a federated node for the federated registry:
	// its own swarm's members, the durable union kept on hubs and above,
	// each with its swarm and the liveness the directory gives it.
	QueryFedNodes = "fednodes"
)

// CheckSwarmPrefix checks that p is a swarm prefix: exactly three tokens.
func CheckSwarmPrefix(p Chevron) error {
	if p.Len() != SwarmTokens {
		return fmt.Errorf("%w: %q has %d tokens, want zone.region.swarm", ErrSwarmPrefix, p.String(), p.Len())
	}
	return nil
}

// ParseSwarmPrefix parses a swarm prefix such as "3.12.7".
func ParseSwarmPrefix(s string) (Chevron, error) {
	p, err := Parse(s)
	if err != nil {
		return Chevron{}, err
	}
	if err := CheckSwarmPrefix(p); err != nil {
		return Chevron{}, err
	}
	return p, nil
}

// SwarmOf is the swarm prefix of a full (4-token) federated chevron:
// 3.12.7 of 3.12.7.1. ok is false for a shorter chevron.
func SwarmOf(c Chevron) (Chevron, bool) {
	if c.Len() != MaxTokens {
		return Chevron{}, false
	}
	return Chevron{toks: [MaxTokens]uint16{c.toks[0], c.toks[1], c.toks[2]}, n: SwarmTokens}, true
}

// SwarmDomain is the JetStream domain (and NATS cluster name) of the swarm
// with prefix p: rn-<zone>-<region>-<swarm>, e.g. rn-3-12-7.
func SwarmDomain(p Chevron) (string, error) {
	if err := CheckSwarmPrefix(p); err != nil {
		return "", err
	}
	return fmt.Sprintf("rn-%d-%d-%d", p.toks[0], p.toks[1], p.toks[2]), nil
}

// DirSummary is the subject swarm p's leader publishes its summary on:
// rn.dir.3.12.7.summary.
func DirSummary(p Chevron) (string, error) {
	if err := CheckSwarmPrefix(p); err != nil {
		return "", err
	}
	return DirRoot + "." + p.String() + ".summary", nil
}

// ParseDirSummary returns the swarm prefix of a summary subject; ok is
// false for anything else.
func ParseDirSummary(subject string) (Chevron, bool) {
	rest, found := strings.CutPrefix(subject, DirRoot+".")
	if !found {
		return Chevron{}, false
	}
	pre, found := strings.CutSuffix(rest, ".summary")
	if !found {
		return Chevron{}, false
	}
	p, err := ParseSwarmPrefix(pre)
	if err != nil {
		return Chevron{}, false
	}
	return p, true
}

// DurableEventKinds are the event kinds a federated swarm keeps in its
// rn_events stream and its hub sources upward: every kind but the 1 Hz
// heartbeat (hb) and the periodic tier views, which are state, not events.
// A stream's subjects cannot say "everything but hb", so the kinds are
// listed: a new event kind that should be kept is added here.
var DurableEventKinds = []string{EvtJoin, EvtLeave, EvtLeader, EvtAlert, EvtTrust, EvtAudit}

// EventsSubjects are the subjects of swarm p's rn_events stream: the
// durable event kinds of every node of the swarm, rn.3.12.7.*.evt.join, ….
func EventsSubjects(p Chevron) ([]string, error) {
	if err := CheckSwarmPrefix(p); err != nil {
		return nil, err
	}
	out := make([]string, 0, len(DurableEventKinds))
	for _, k := range DurableEventKinds {
		out = append(out, Root+"."+p.String()+".*.evt."+k)
	}
	return out, nil
}

// SourceDeliverPrefix is where a hub's sources of swarm p's streams are
// delivered from p's domain (JetStream ExternalStream.DeliverPrefix):
// rn.fed.js.3.12.7, so the leaf link lets through only that swarm's
// deliveries under rn.fed.js.<its prefix>.>.
func SourceDeliverPrefix(p Chevron) (string, error) {
	if err := CheckSwarmPrefix(p); err != nil {
		return "", err
	}
	return Root + ".fed.js." + p.String(), nil
}
