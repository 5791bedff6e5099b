// Package node is the robonet daemon: it embeds a nats-server with JetStream,
// owns the node's identity (nkey seeds in the data dir), claims its chevron,
// publishes heartbeats, keeps the live membership view in memory, holds or
// follows the swarm-leader lease, and answers the swarm queries
// (rn.sys.nodes, rn.sys.status, …), each checked for its HCTH signature and
// its signer's role and answered signed. Its client port serves TLS with a
// certificate derived from its key on any address but loopback.
//
// Liveness never depends on a JetStream write: heartbeats travel on core
// NATS and route loss is read from the embedded server, because an R3
// bucket is unwritable for seconds after its stream leader dies (DESIGN.md).
// JetStream holds durable facts only: who exists (rn_nodes) and who leads
// (rn_leader, a TTL lease whose creating revision is the fencing token).
//
// It does not own the command catalogue (package command), the client side of
// scatter/gather (package mesh) or the CLI (cmd/robonet).
package node
