package federation

import "time"

// PartitionAfter is how long a swarm's directory summary may be missing
// before the swarm counts as partitioned (summaries come every second).
const PartitionAfter = 3 * time.Second

// Link states of a swarm in the directory, as this node sees it.
const (
	LinkSelf = "self" // this node's own swarm
	LinkUp   = "up"   // heard within PartitionAfter
	LinkDown = "down" // known, not heard within PartitionAfter: partitioned
)

// SwarmState is one swarm as the federated directory knows it.
type SwarmState struct {
	Prefix      string    `json:"prefix"`           // the swarm's chevron prefix, zone.region.swarm
	Domain      string    `json:"domain"`           // its JetStream domain, rn-<z>-<r>-<s>
	Parent      string    `json:"parent,omitempty"` // its parent swarm's prefix; "" for a root
	Leader      string    `json:"leader,omitempty"` // the chevron of the node holding its lease
	LeaderKey   string    `json:"leader_key,omitempty"`
	Nodes       int       `json:"nodes"`          // members it knows
	Live        int       `json:"live"`           // members live in its registry
	Caps        []string  `json:"caps,omitempty"` // the union of its members' capabilities
	RegistryRev uint64    `json:"registry_rev"`   // its rn_nodes revision
	LastHeard   time.Time `json:"last_heard,omitzero"`
	Link        string    `json:"link"` // LinkSelf, LinkUp or LinkDown
	// LagMs is how old its last summary was when it arrived (clocks
	// permitting), in milliseconds.
	LagMs float64 `json:"lag_ms"`
	// Hub is set for a swarm that accepts child swarms.
	Hub bool `json:"hub,omitempty"`
	// Via is the swarm whose summary relayed this one ("" when this node
	// hears it directly): a grandchild's summaries reach its grandparent
	// only inside its parent's.
	Via string `json:"via,omitempty"`
}

// Partitioned reports whether the swarm is cut off from this node's view.
func (s SwarmState) Partitioned() bool { return s.Link == LinkDown }
