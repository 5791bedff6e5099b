//go:build e2e

// Package e2e is robonet's multi-host end-to-end suite. It builds the real
// robonet binary and runs every node as its own process in its own Linux
// network namespace, joined by a bridge that lives in a further namespace, so
// nodes talk over real TCP between real addresses and the suite can cut,
// drop and restore links, SIGKILL and SIGTERM processes, and restart them on
// the same data dir. Every observation goes through the CLI (`robonet nodes
// --json`, `status --json`, `trust --json`, `alerts --json`, `run --json`)
// run inside the observed node's namespace, or through an agent watching the
// nodes' events: the suite checks what an operator would see, not the node's
// internals.
//
// It owns no robonet code: the JSON it decodes is the CLI's contract. Only
// the agent (agent_test.go: the test binary re-executed inside a host's
// namespace, connected to the node there) imports robonet's mesh, trust and
// wire packages, to send what no CLI command sends — unsigned, forged,
// tampered and replayed commands, a cloned key's forked heartbeat, a flood of
// signed commands — to watch events and to read JetStream (rn_revoked,
// rn_nodes, stream leaders); the trust scenarios (trust_test.go) check the
// records it reads with robonet's own trust.VerifyForkProof. It does not
// touch the machine's own network namespace beyond
// reading its routes to pick a private subnet that collides with none of them;
// the node namespaces have no default route, so no packet leaves the suite's
// namespaces.
//
// The suite needs root, iproute2 (`ip`) and network namespaces, and iptables
// for the silent-drop partition. Without them its tests skip, except when
// CI=true, where they fail. Run it with e2e/run (which installs what is
// missing) or:
//
//	go test -tags e2e -count=1 -v -timeout 20m ./e2e/
//
// The colonize tests also need real SSH servers: target hosts are Docker
// containers of an image e2e/target/build makes with debootstrap and `docker
// import` (nothing is pulled), with OpenSSH or Dropbear, sudo, and systemd as
// PID 1 when a test asks, on the bridge network robonet-e2e
// (target_test.go). Those tests need docker and, to build the image, root;
// they skip without, and fail when CI=true.
//
// Timing targets (DESIGN.md) are logged as measured figures and summarised at
// the end of the run; the tests assert behaviour under generous deadlines,
// never a timing, because the suite shares a small machine with other work.
// E2E_LOG_LEVEL sets the nodes' --log-level (default info); the tail of every
// node's log is printed when a test fails.
package e2e
