//go:build !unix

package command

import (
	"os"
	"os/exec"
)

// ownProcessGroup leaves the default: cancellation kills the program only.
func ownProcessGroup(*exec.Cmd) {}

// signalOf is "" where processes do not end by signals.
func signalOf(*os.ProcessState) string { return "" }
