// Package command owns robonet's command catalogue and the built-in verbs.
//
// For every verb the catalogue holds an argument schema, a risk class (read,
// mutate, dangerous) and a minimum trust tier; it validates arguments before
// anything runs, decides the risk of a particular call (exec is dangerous
// unless its program is on the node's allow-list), turns CLI words into JSON
// arguments, and runs a wire.Request to a wire.Result without panicking.
//
// The built-in verbs are ping, info, caps, status, gauge, scan, exec, file and
// config. They do real work on the machine they run on: gopsutil reads the
// hardware and the counters, os/exec runs programs in their own process group.
//
// The package does not touch NATS and does not decide who may run what: the
// node subscribes the catalogue's verbs to subjects, checks the caller's trust
// tier against Catalogue.Tier, and provides the pieces only it has through
// small interfaces declared here — Host (runtime status, capabilities, clock
// offset against the swarm), FileStore (rn_files) and ConfigStore (rn_config).
package command
