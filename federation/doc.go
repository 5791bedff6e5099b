// Package federation joins swarms into regions and zones over NATS leaf-node
// connections (DESIGN.md, "the leaf-node layer"): the federated directory
// (each swarm's leader publishes a summary upward; hubs keep the union of
// their children's registries), ambassadors (one per swarm, a queue group,
// that run a federated command inside their swarm and stream every node's
// result back with what they expected), and the federated gather that
// accounts for every node of every swarm, with `partitioned` for a swarm cut
// off and `incomplete` for a partial answer. It runs beside the node
// (cmd/robonet composes it onto a started node.Node); node never imports it.
package federation
