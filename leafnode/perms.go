package leafnode

import (
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/robonet-mesh/robonet/subjects"
)

// What crosses a leaf link (research §3.2), as subjects. Up is what a
// child swarm may send to its hub; Down is what the hub sends the child.
// Everything else stays in its swarm: commands to nodes and prefixes
// (rn.cmd.>, rn.<chevron>.cmd.>), heartbeats, queries (rn.sys.>) and the
// system account.

// Up lists the subjects a child swarm's leaf connections may publish
// towards the hub: replies to requesters above, federated commands and
// their streams, its own directory summary and events (heartbeats
// excepted, see Denies), deliveries of the hub's sources of its streams
// (DeliverPrefix rn.fed.js.<child>), replies to the hub's JetStream API
// requests ($JSC.R.>, consumer creation for sources), flow control and
// acks, and the JetStream API of the domains above it (upstream: the hub's
// own, and the hub's parent's) for reading the federated registry.
func Up(child subjects.Chevron, upstream ...string) []string {
	p := child.String()
	out := []string{
		subjects.InboxRoot + ".>",
		subjects.Root + ".fed.>",
		subjects.Root + ".dir." + p + ".>",
		subjects.Root + "." + p + ".*.evt.>",
		"$JSC.R.>",
		"$JS.FC.>",
		"$JS.ACK.>",
	}
	for _, d := range upstream {
		if d != "" {
			out = append(out, "$JS."+d+".API.>")
		}
	}
	return out
}

// Down lists the subjects the hub sends down to a child swarm: federated
// commands for its ambassadors, the directory, replies to requesters in
// the child, the child domain's JetStream API (the hub's sources and
// registry union read it), flow control and acks.
func Down(child subjects.Chevron) []string {
	return []string{
		subjects.Root + ".fed.>",
		subjects.Root + ".dir.>",
		subjects.InboxRoot + ".>",
		"$JS." + Domain(child) + ".API.>",
		"$JS.FC.>",
		"$JS.ACK.>",
	}
}

// Denies never cross in either direction, whatever an allow-list says:
// per-node heartbeats (1 Hz per node; the directory summary replaces them),
// robonet's queries and the system account. Command subjects are simply
// never allowed; they cannot be denied by pattern here because
// rn.*.*.cmd.> would also match the federated rn.fed.<zone>.cmd.<verb>.
func Denies() []string {
	return []string{
		subjects.Root + ".*.*.*.*.evt.hb",
		subjects.Root + ".sys.>",
		"$SYS.>",
	}
}

// ChildPermissions are what a hub registers (RegisterUser) for a leaf
// connection of child swarm child. In nats-server's terms a leaf user's
// publish permission is what the leaf may send into the hub and its
// subscribe permission what the hub sends it (the server reverses them
// inside the hub, for the accepting side; TestChildPermissionsDirections
// checks this on real servers).
func ChildPermissions(child subjects.Chevron, upstream ...string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: Up(child, upstream...), Deny: Denies()},
		Subscribe: &server.SubjectPermission{Allow: Down(child), Deny: Denies()},
	}
}

// SpokeDenies are a child node's own guard on its remote (DenyImports and
// DenyExports): besides Denies, the command subjects of its own swarm and
// of the prefixes above it, which its nodes serve and nothing outside may
// reach or hear (a hub that allowed more would still be refused here).
// They are spelled out for this swarm's prefixes, not as wildcards, so that
// federated commands (rn.fed.<prefix>.cmd.<verb>) still cross.
func SpokeDenies(prefix subjects.Chevron) []string {
	out := []string{subjects.Root + ".cmd.>"}
	toks := prefix.Tokens()
	for i := 1; i <= len(toks); i++ {
		c, err := subjects.New(toks[:i]...)
		if err != nil {
			break
		}
		out = append(out, subjects.Root+"."+c.String()+".cmd.>")
	}
	if prefix.Len() == 3 {
		out = append(out, subjects.Root+"."+prefix.String()+".*.cmd.>")
	}
	return append(out, Denies()...)
}

// EdgeBeat is the subject an edge heartbeats on (server: its server's
// name): not rn.<chevron>.evt.hb, which core nodes use, so that a leaf
// permission can let each edge's own heartbeats through and no other's.
func EdgeBeat(server string) string { return "_rn.ehb." + server }

// EdgeBeatAll matches every edge's heartbeat subject (core nodes subscribe).
const EdgeBeatAll = "_rn.ehb.*"

// edgeEventKinds are the event kinds that cross between core and edges:
// all but heartbeats and tier views.
var edgeEventKinds = []string{"join", "leave", "leader", "alert", "trust", "audit", "core"}

// EdgeAllows are what an edge (whose server is server) may send into the
// core: replies, its own heartbeats, commands and media at every chevron
// depth, events but heartbeats and tier views, queries, federation and
// the directory, and the core's JetStream through its domain (domain).
func EdgeAllows(domain, server string) []string {
	out := []string{
		subjects.InboxRoot + ".>",
		EdgeBeat(server),
		subjects.Root + ".cmd.>",
		subjects.Root + ".sys.>",
		subjects.Root + ".fed.>",
		subjects.Root + ".dir.>",
		"$JS." + domain + ".API.>",
		"$JS.ACK.>",
		"$JS.FC.>",
	}
	for depth := 1; depth <= subjects.MaxTokens; depth++ {
		pre := subjects.Root + strings.Repeat(".*", depth)
		out = append(out, pre+".cmd.>", pre+".media.>")
		for _, k := range edgeEventKinds {
			out = append(out, pre+".evt."+k)
		}
	}
	return out
}

// EdgeDenies are what a core never sends an edge: the core's heartbeats
// and tier views (at any chevron depth: a non-federated chevron has one
// token), and the system account.
func EdgeDenies() []string {
	var out []string
	for _, kind := range []string{subjects.EvtHeartbeat, "tiers"} {
		out = append(out, subjects.EventWildcards(kind)...)
	}
	return append(out, "$SYS.>")
}

// EdgePermissions are what a core node registers for the leaf connection
// of the edge whose server is srv (same swarm, same account). In
// nats-server's terms Publish is what the edge may send into the core
// (EdgeAllows: its own heartbeats, not another edge's) and Subscribe what
// the core sends the edge: everything but EdgeDenies, so an edge never gets
// the core's heartbeats or tier views, even for a local rn.> subscriber. A
// Subscribe deny also stops the edge forwarding those subjects (it applies
// the list the core sends it to what it forwards): that is why edges beat
// on EdgeBeat, which only node processes may subscribe to (users get rn.>
// and their inbox), so other edges' heartbeats reach no program on an edge.
func EdgePermissions(domain, srv string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: EdgeAllows(domain, srv), Deny: []string{"$SYS.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{">"}, Deny: EdgeDenies()},
	}
}
