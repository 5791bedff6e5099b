// Package colonize turns a bare SSH host into a robonet node: it connects
// (honouring ~/.ssh/config and known_hosts), gains privilege, detects the
// target, uploads the binary over the SSH session, writes config and a
// one-time join credential, starts the service and waits until the node is
// live in the swarm, each of its twelve steps checked, applied and verified,
// with a journal on the target that makes a rerun converge, a failure roll
// back and uncolonize remove everything it put there.
//
// It owns the SSH side and the target's files; it does not own admission
// (the node and trust packages do) and never runs on its own: a person runs
// robonet colonize.
package colonize
