package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/leafnode"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// An edge's swarm (issues 11 and 12): an edge holds no leaf link of its
// own to a parent swarm and no federation token; its core does. What the
// edge needs of its swarm's federation it adopts from the core's signed
// rn.sys.core answer (wire.CoreStatus): the JetStream domain its buckets
// live in, and for a federated swarm the prefix its chevron lies under and
// the authority pins that let ancestors' users command it. It keeps them
// in the data dir, so a restart while the core is away needs no answer.

// edgeSwarm is what an edge adopted from its core.
type edgeSwarm struct {
	Domain string   `json:"domain"`
	Prefix string   `json:"prefix,omitempty"` // "" : not a federated swarm
	Pins   []string `json:"pins,omitempty"`
}

// prefix is the federated swarm's prefix; zero when it is not federated.
func (s edgeSwarm) prefix() subjects.Chevron {
	p, _ := subjects.Parse(s.Prefix) // checked by checkEdgeSwarm
	return p
}

// checkEdgeSwarm checks what a core said of swarm (the name this edge
// joined under): a domain that is a single subject token, and for a
// federated swarm a 3-token prefix whose domain is both the swarm's name
// and its JetStream domain, and at most trust.MaxFedPins distinct user
// keys as pins. A core that predates these fields says nothing: the
// domain is then the one a clustered core of that name has.
func checkEdgeSwarm(st wire.CoreStatus, swarm string) (edgeSwarm, error) {
	if st.Swarm != "" && st.Swarm != swarm {
		return edgeSwarm{}, fmt.Errorf("the core says its swarm is %q, not %q", clip(st.Swarm, 64), swarm)
	}
	es := edgeSwarm{Domain: st.JSDomain, Prefix: st.Prefix, Pins: slices.Clone(st.Pins)}
	if es.Domain == "" {
		es.Domain = "rn-" + swarm
	}
	if err := subjects.ValidToken(es.Domain); err != nil {
		return edgeSwarm{}, fmt.Errorf("the core's JetStream domain %q: %v", clip(es.Domain, 64), err)
	}
	if es.Prefix == "" {
		if len(es.Pins) > 0 {
			return edgeSwarm{}, fmt.Errorf("the core names %d authority pins for a swarm without a prefix", len(es.Pins))
		}
		return es, nil
	}
	p, err := subjects.Parse(es.Prefix)
	if err != nil || p.Len() != 3 {
		return edgeSwarm{}, fmt.Errorf("the core's swarm prefix %q: want zone.region.swarm", clip(es.Prefix, 64))
	}
	if d := leafnode.Domain(p); d != es.Domain || d != swarm {
		return edgeSwarm{}, fmt.Errorf("the core's swarm prefix %s has domain %s, but the swarm is %q and its JetStream domain %q", p, d, swarm, clip(es.Domain, 64))
	}
	if len(es.Pins) > trust.MaxFedPins {
		return edgeSwarm{}, fmt.Errorf("the core names %d authority pins, at most %d", len(es.Pins), trust.MaxFedPins)
	}
	for i, k := range es.Pins {
		if !nkeys.IsValidPublicUserKey(k) {
			return edgeSwarm{}, fmt.Errorf("authority pin %q is not a user public key", clip(k, 64))
		}
		if slices.Contains(es.Pins[:i], k) {
			return edgeSwarm{}, fmt.Errorf("authority pin %s named twice", k)
		}
	}
	return es, nil
}

// adoptEdgeSwarm runs on an edge after its server started: it takes the
// swarm's facts saved in the data dir, else those of its own federation
// settings, else asks the core until it answers (or ctx ends); and it
// checks the node's chevron against the prefix.
func (n *Node) adoptEdgeSwarm(ctx context.Context, saved savedState) error {
	es := n.edgeSwarmNow() // from its own federation settings (Start), if any
	if saved.EdgeSwarm != nil && saved.Swarm == n.opts.Swarm {
		es = *saved.EdgeSwarm
	} else if es.Domain == "" {
		st, err := n.askCoreUntil(ctx)
		if err != nil {
			return err
		}
		if es, err = checkEdgeSwarm(st, n.opts.Swarm); err != nil {
			return fmt.Errorf("%w: %v", ErrJoin, err)
		}
	}
	if p := es.prefix(); !p.IsZero() {
		for _, c := range []string{n.opts.Chevron, saved.Chevron} {
			if cc, err := subjects.Parse(c); err == nil && !cc.HasPrefix(p) {
				return fmt.Errorf("%w: --chevron %s: this edge's swarm is %s (domain %s); its nodes are %s.<n>", ErrOptions, cc, p, es.Domain, p)
			}
		}
	}
	n.es.mu.Lock()
	n.es.swarm = es
	n.es.mu.Unlock()
	return nil
}

// askCoreUntil asks rn.sys.core once the leaf link is up, until an answer
// comes or ctx ends.
func (n *Node) askCoreUntil(ctx context.Context) (wire.CoreStatus, error) {
	var last error
	for {
		if n.srv.NumLeafNodes() > 0 {
			st, err := n.askCore(2 * time.Second)
			if err == nil {
				return st, nil
			}
			last = err
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = fmt.Errorf("%w: no leaf link to the core came up", ErrNoCore)
			}
			return wire.CoreStatus{}, fmt.Errorf("ask the core about its swarm: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// edgeSwarmNow is what the edge adopted (zero before Start adopted it).
func (n *Node) edgeSwarmNow() edgeSwarm {
	n.es.mu.Lock()
	defer n.es.mu.Unlock()
	s := n.es.swarm
	s.Pins = slices.Clone(s.Pins)
	return s
}

// adoptsSwarmName reports whether an edge may take the swarm name a core
// reports (a federated swarm's rn-<z>-<r>-<s>) in place of --swarm: it
// did not choose a swarm name, has no federation settings of its own, and
// cluster is a federated swarm's name.
func (n *Node) adoptsSwarmName(cluster string) bool {
	if n.fed != nil || n.opts.Swarm != DefaultSwarm {
		return false
	}
	_, err := leafnode.ParseDomain(cluster)
	return err == nil
}
