package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// nodeLockFile is the file in a data dir that the running node holds an
// exclusive flock on and writes its pid into (node/datadir.go).
const nodeLockFile = "lock"

func newStopCmd(g *globals) *cobra.Command {
	var (
		timeout time.Duration
		wait    bool
	)
	cmd := &cobra.Command{
		Use:   "stop",
		Short: "Stop the node running on --data: SIGTERM (lame duck), then wait until it has exited",
		Long: `Stop the robonet node that runs on the data directory --data, the way Ctrl-C
does: it announces its leave, hands the lease on, drains in lame-duck mode and
exits. stop waits until the process has exited (--timeout), so it fits a
Kubernetes preStop hook or a script. It finds the node by the lock the node holds
on <data>/lock, never by a name, and exits 0 when no node runs there.

--wait=false returns once the signal is sent: a Kubernetes preStop hook whose node
is the container's main process dies with it, so waiting there would only turn a
clean stop into a failed hook.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if wait && timeout <= 0 {
				return fmt.Errorf("--timeout %s: want a positive duration", timeout)
			}
			if !wait {
				timeout = 0
			}
			stopped, pid, err := stopNode(g.data, timeout)
			if err != nil {
				return err
			}
			if !stopped {
				fmt.Fprintf(cmd.OutOrStdout(), "no node runs on %s\n", g.data)
				return nil
			}
			if !wait {
				fmt.Fprintf(cmd.OutOrStdout(), "node (pid %d) on %s: lame duck started\n", pid, g.data)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node (pid %d) on %s stopped\n", pid, g.data)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 45*time.Second, "how long to wait for the node to exit (its lame duck takes up to 30 s)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the node has exited (--wait=false: return once it is signalled)")
	return cmd
}

// stopNode signals the node holding dir's lock and waits up to timeout
// until the lock is free and the process gone (timeout 0: no wait). stopped
// is false when no node held the lock.
func stopNode(dir string, timeout time.Duration) (stopped bool, pid int, err error) {
	f, err := os.Open(filepath.Join(dir, nodeLockFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, fmt.Errorf("data dir %s: %w", dir, err)
	}
	defer f.Close()
	if free(f) {
		return false, 0, nil
	}
	raw, err := os.ReadFile(f.Name())
	if err != nil {
		return false, 0, fmt.Errorf("data dir %s: %w", dir, err)
	}
	pid, err = strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil || pid <= 0 {
		return false, 0, fmt.Errorf("data dir %s: the lock is held but %s names no pid (%q)", dir, f.Name(), clip(string(raw)))
	}
	// The pid was written by the lock's holder, which still holds it: the
	// process is that node (checked again right before the signal).
	if free(f) {
		return false, 0, nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return false, pid, fmt.Errorf("signal the node (pid %d): %w", pid, err)
	}
	if timeout == 0 {
		return true, pid, nil
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if free(f) && gone(pid) {
			return true, pid, nil
		}
		time.Sleep(100 * time.Millisecond) // polling another process's exit: nothing to wait on
	}
	return true, pid, fmt.Errorf("the node (pid %d) on %s has not exited after %s", pid, dir, timeout)
}

// gone reports whether pid has exited: no such process, or a zombie
// waiting for its parent.
func gone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S …: the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z' || stat[i+2] == 'X'
	}
	return false
}

// free reports whether no process holds f's lock (taking and releasing it).
func free(f *os.File) bool {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}
