package wire

// Node roles (issue 12): a swarm is a small route-clustered core (JetStream,
// the lease, the registry) and edges on leaf connections to it.
const (
	NodeRoleCore = "core"
	NodeRoleEdge = "edge"
)

// CoreStatus answers rn.sys.core: the core's configured size and its
// members as the answering core node sees them.
type CoreStatus struct {
	Size    int          `json:"size"`
	Members []CoreMember `json:"members"`
	// Below: fewer members are up than Size; Above: more (two nodes that
	// joined at the same moment may both have got in).
	Below bool `json:"below,omitempty"`
	Above bool `json:"above,omitempty"`
	// What an edge adopts from the core (node/fededge.go): the swarm's
	// name and JetStream domain, and for a federated swarm its prefix and
	// the authority pins (founder keys of its ancestor swarms).
	Swarm    string   `json:"swarm,omitempty"`
	JSDomain string   `json:"js_domain,omitempty"`
	Prefix   string   `json:"prefix,omitempty"`
	Pins     []string `json:"pins,omitempty"`
}

// Live counts the members that are up.
func (c CoreStatus) Live() int {
	n := 0
	for _, m := range c.Members {
		if m.Up {
			n++
		}
	}
	return n
}

// CoreMember is one core node in CoreStatus.
type CoreMember struct {
	Name    string `json:"name,omitempty"`
	Chevron string `json:"chevron,omitempty"`
	Server  string `json:"server"`
	Pubkey  string `json:"pubkey,omitempty"`
	Up      bool   `json:"up"`
}
