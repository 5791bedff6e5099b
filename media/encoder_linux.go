package media

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts ffmpeg in its own process group, so stopping it
// stops anything it spawned, and has the kernel kill it if this process
// dies first (a camera must not stay busy behind a crashed node).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends SIGTERM (or SIGKILL) to the process group led by pid.
func signalGroup(pid int, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-pid, sig) // ESRCH: it is gone already
}
