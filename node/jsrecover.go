package node

import (
	"fmt"
	"syscall"
	"time"
)

// When a write to the JetStream store fails for lack of space, nats-server
// shuts JetStream down on that server ("JetStream out of resources, will be
// DISABLED") and leaves it off until the process restarts: the swarm keeps
// a replica short, and the node cannot write its own state. A core member
// watches for that, says so in status, and once its data dir's file system
// has room again asks to be restarted in-process (the same way a role
// change does), so JetStream comes back from what is on disk without an
// operator.

// jsRecoverFree is the free space, in bytes and as a share of the file
// system, that a node whose JetStream was disabled waits for before it
// restarts: both must hold, so a restart does not run straight into the
// same wall.
const (
	jsRecoverFree  = 64 << 20
	jsRecoverShare = 0.05
)

// checkJetStream runs on the monitor loop's slow tick (every 2 s).
func (n *Node) checkJetStream(now time.Time) {
	if n.edge || n.srv == nil || n.stopped.Load() {
		return
	}
	if n.srv.JetStreamEnabled() {
		return
	}
	if n.jsOffSince.CompareAndSwap(0, now.UnixNano()) {
		n.log.Error("JetStream is DISABLED on this node (its store ran out of space?); it restarts in-process once the data dir has room again",
			"data", n.opts.DataDir, "need_free_mib", jsRecoverFree>>20)
	}
	free, total, err := diskFree(n.opts.DataDir)
	if err != nil {
		n.log.Warn("read the data dir's free space", "err", err)
		return
	}
	if free < jsRecoverFree || float64(free) < jsRecoverShare*float64(total) {
		return
	}
	n.log.Warn("the data dir has room again: restarting in-process to bring JetStream back",
		"free_mib", free>>20, "disabled_for", now.Sub(time.Unix(0, n.jsOffSince.Load())).Round(time.Second))
	n.quietRestart.Store(true)
	n.restartFor(fmt.Sprintf("JetStream was disabled (out of space) and %d MiB are free again", free>>20))
}

// jetStreamDisabled says why JetStream is off on this core member, "" when
// it is not.
func (n *Node) jetStreamDisabled() string {
	if n.edge || n.jsOffSince.Load() == 0 {
		return ""
	}
	return "JetStream DISABLED on this node since " + time.Unix(0, n.jsOffSince.Load()).UTC().Format(time.TimeOnly) +
		" (its store ran out of space: free space in " + n.opts.DataDir + "; it restarts itself once there is room)"
}

// diskFree is the space free to an unprivileged writer and the size of the
// file system holding dir.
func diskFree(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
