// Package mesh is the client side of robonet: connecting to a node as a NATS
// client with an nkey, asking for the live registry and the swarm's status,
// and (with the command bus) resolving selectors and scattering commands and
// gathering every expected answer. It knows which node it talks to by key:
// queries are signed, and their replies count only when signed by a node
// key the client trusts (given, or pinned per address on first use in a
// known-nodes file, like SSH's known_hosts), which a TLS client port's
// certificate must carry too.
//
// It does not run a server or hold swarm state (package node), and it does
// not print anything (cmd/robonet).
package mesh
