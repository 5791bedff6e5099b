// Package mesh is the client side of robonet: connecting to a node as a NATS
// client with an nkey, asking for the live registry and the swarm's status,
// and (with the command bus) resolving selectors and scattering commands and
// gathering every expected answer.
//
// It does not run a server or hold swarm state (package node), and it does
// not print anything (cmd/robonet).
package mesh
