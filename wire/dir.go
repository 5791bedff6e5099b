package wire

import "time"

// Limits of a directory summary (DirSummary). A receiver refuses a summary
// beyond them; a publisher trims its relayed entries to stay inside.
const (
	// MaxDirSummary is the largest summary payload a node accepts.
	MaxDirSummary = 256 << 10
	// MaxDirOffline is how many offline chevrons one swarm lists.
	MaxDirOffline = 1024
	// MaxDirSwarms is how many descendant swarms one summary relays.
	MaxDirSwarms = 512
	// MaxDirCaps is how many capabilities one swarm's union lists.
	MaxDirCaps = 256
)

// Member states only a federated view gives (robonet nodes --all): a node
// of another swarm has no heartbeat here, so its state comes from its
// swarm's directory summary.
const (
	// StatePartitioned: the node's swarm is known but its summaries stopped
	// (cut off from this node's view).
	StatePartitioned = "partitioned"
	// StateUnknown: the node is in a durable registry, but its swarm is
	// not in this node's directory (yet).
	StateUnknown = "unknown"
)

// DirSummary is what a swarm's leader publishes on
// rn.dir.<zone>.<region>.<swarm>.summary every second, signed (HCTH) with
// the leader's node key. It is liveness, not a durable fact: receivers keep
// the latest in memory and mark the swarm partitioned when it stops.
type DirSummary struct {
	Prefix string `json:"prefix"`           // the swarm prefix, zone.region.swarm
	Domain string `json:"domain"`           // its JetStream domain, rn-<z>-<r>-<s>
	Parent string `json:"parent,omitempty"` // its parent swarm's prefix, "" for a root (or not linked yet)
	Hub    bool   `json:"hub,omitempty"`    // it accepts child swarms (keeps rn_fed_nodes, rn_fed_events)
	// Leader is the chevron of the node holding the swarm's lease (the
	// sender), LeaderKey its node key (the signer), Token the lease's
	// fencing token: a newer leader has a higher one.
	Leader    string `json:"leader"`
	LeaderKey string `json:"leader_key"`
	Token     uint64 `json:"token"`
	Nodes     int    `json:"nodes"` // members known (registered or heard)
	Live      int    `json:"live"`  // members alive or suspect
	// Offline lists the known members that are not live (at most
	// MaxDirOffline; OfflineTrimmed when there were more).
	Offline        []string `json:"offline,omitempty"`
	OfflineTrimmed bool     `json:"offline_trimmed,omitempty"`
	Caps           []string `json:"caps,omitempty"` // the union of the members' capabilities
	// RegistryRev is the last sequence of the swarm's rn_nodes stream.
	RegistryRev uint64    `json:"registry_rev"`
	Sent        time.Time `json:"sent"`
	// Swarms are the swarms below this one as its directory knows them
	// (a hub relays its subtree upward: the summaries of a grandchild do
	// not cross the child's link to its parent).
	Swarms []DirEntry `json:"swarms,omitempty"`
}

// DirEntry is one swarm below the sender of a DirSummary, as the sender's
// directory knows it.
type DirEntry struct {
	Prefix      string   `json:"prefix"`
	Domain      string   `json:"domain"`
	Parent      string   `json:"parent"`
	Hub         bool     `json:"hub,omitempty"`
	Leader      string   `json:"leader,omitempty"`
	LeaderKey   string   `json:"leader_key,omitempty"`
	Nodes       int      `json:"nodes"`
	Live        int      `json:"live"`
	Offline     []string `json:"offline,omitempty"`
	Caps        []string `json:"caps,omitempty"`
	RegistryRev uint64   `json:"registry_rev"`
	// Link is "up" or "down" as the sender sees the swarm; HeardMs how
	// long before Sent the sender last heard it; LagMs how old its last
	// summary was when it reached the sender.
	Link    string  `json:"link"`
	HeardMs int64   `json:"heard_ms"`
	LagMs   float64 `json:"lag_ms"`
}

// FedMember is one row of `robonet nodes --all`: a member as its swarm
// declares it (Member's fields), with its swarm prefix. `--json` prints an
// array of these; State is a Member state for this node's own swarm, and
// from the directory for others: alive or offline while the swarm is heard,
// StatePartitioned when it is not, StateUnknown when the directory does not
// know the swarm.
type FedMember struct {
	Member
	Swarm string `json:"swarm"`
}
