//go:build !linux

package media

import (
	"os"
	"os/exec"
)

// setProcessGroup leaves ffmpeg in this process's group: only Linux gets
// the group and the parent-death signal (see encoder_linux.go).
func setProcessGroup(*exec.Cmd) {}

// signalGroup asks the process pid to stop (os.Interrupt where the OS has
// it), or kills it.
func signalGroup(pid int, kill bool) {
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	if kill || p.Signal(os.Interrupt) != nil {
		_ = p.Kill()
	}
}
