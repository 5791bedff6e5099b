package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Exec defaults.
const (
	DefaultExecTimeout = 60 * time.Second
	// execWaitDelay is how long exec waits, after the program exited or was
	// killed, for a child that inherited its stdout or stderr to let go.
	execWaitDelay = time.Second
	// execTextLimit bounds the stdout and stderr copied into Result.Text;
	// Output always carries them up to the node's MaxOutput.
	execTextLimit = 64 << 10
	shellPath     = "/bin/sh"
)

// ExecReply is the output of exec. Stdout and Stderr keep the first MaxOutput
// bytes of each stream followed, when more was written, by a mark
// "\n…[truncated N bytes]"; bytes that are not UTF-8 arrive as U+FFFD.
type ExecReply struct {
	ExitCode      int    `json:"exit_code"`        // -1 when a signal ended the program
	Signal        string `json:"signal,omitempty"` // the signal that ended it
	Stdout        string `json:"stdout"`
	Stderr        string `json:"stderr"`
	StdoutDropped int64  `json:"stdout_dropped,omitempty"` // bytes of stdout not returned
	StderrDropped int64  `json:"stderr_dropped,omitempty"`
	TimedOut      bool   `json:"timed_out,omitempty"` // killed, with its process group, at the timeout
}

type execArgs struct {
	Argv    []string    `json:"argv"`
	Shell   bool        `json:"shell"`
	Timeout argDuration `json:"timeout"`
	Stdin   *string     `json:"stdin"`
	Dir     string      `json:"dir"`
}

// checkExec applies exec's rules beyond its schema.
func checkExec(args json.RawMessage) error {
	var a execArgs
	if err := decodeArgs(args, &a); err != nil {
		return err
	}
	if len(a.Argv) == 0 {
		return badArg("argv", "empty: name a program")
	}
	if a.Argv[0] == "" {
		return badArg("argv", "the program (argv[0]) is empty")
	}
	for i, s := range a.Argv {
		if strings.IndexByte(s, 0) >= 0 {
			return badArg("argv", "element %d %q holds a NUL byte", i, clip(s))
		}
	}
	if a.Dir != "" && (!filepath.IsAbs(a.Dir) || strings.IndexByte(a.Dir, 0) >= 0) {
		return badArg("dir", "%q is not an absolute path", clip(a.Dir))
	}
	return nil
}

// execRisk is mutate for a program on the allow-list run without a shell,
// dangerous for anything else.
func (c *Catalogue) execRisk(args json.RawMessage) Risk {
	var a execArgs
	if decodeArgs(args, &a) != nil || a.Shell || len(a.Argv) == 0 || !c.allow[a.Argv[0]] {
		return Dangerous
	}
	return Mutate
}

func (c *Catalogue) exec(ctx context.Context, args json.RawMessage) (Output, error) {
	var a execArgs
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	timeout := time.Duration(a.Timeout)
	if timeout == 0 {
		timeout = DefaultExecTimeout
	}
	r, err := runProgram(ctx, a, timeout, c.maxOutput)
	return Output{Value: r, Text: r.text()}, err
}

// runProgram runs one program in its own process group and kills the group
// when ctx is done or timeout passes.
func runProgram(ctx context.Context, a execArgs, timeout time.Duration, limit int) (ExecReply, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var cmd *exec.Cmd
	name := a.Argv[0]
	if a.Shell {
		name = shellPath
		cmd = exec.CommandContext(ctx, shellPath, "-c", strings.Join(a.Argv, " "))
	} else {
		cmd = exec.CommandContext(ctx, a.Argv[0], a.Argv[1:]...)
	}
	if cmd.Err != nil {
		if errors.Is(cmd.Err, exec.ErrNotFound) {
			return ExecReply{ExitCode: -1}, fmt.Errorf("%w: program %q: not in PATH", ErrNotFound, clip(name))
		}
		return ExecReply{ExitCode: -1}, fmt.Errorf("program %q: %w", clip(name), cmd.Err)
	}
	cmd.Dir = a.Dir
	if a.Stdin != nil {
		cmd.Stdin = strings.NewReader(*a.Stdin)
	}
	stdout, stderr := &CapWriter{Limit: limit}, &CapWriter{Limit: limit}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = execWaitDelay
	ownProcessGroup(cmd)

	start := time.Now()
	err := cmd.Run()
	r := ExecReply{ExitCode: -1, Stdout: stdout.String(), Stderr: stderr.String(), StdoutDropped: stdout.dropped, StderrDropped: stderr.dropped}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
		r.Signal = signalOf(cmd.ProcessState)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (err != nil || cmd.ProcessState == nil) {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			r.TimedOut = true
			return r, fmt.Errorf("%w: %q killed with its process group after %s (timeout %s)",
				ErrTimeout, clip(name), time.Since(start).Round(time.Millisecond), timeout)
		}
		return r, fmt.Errorf("%q stopped: %w", clip(name), ctxErr)
	}
	var ee *exec.ExitError
	switch {
	case err == nil, errors.As(err, &ee), errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil:
		// A nonzero exit is the program's answer, not a failure of exec; a
		// child still holding the output pipes after the program exited
		// costs it the rest of its output, nothing more.
		return r, nil
	case errors.Is(err, fs.ErrNotExist):
		return r, fmt.Errorf("%w: %q: %v", ErrNotFound, clip(name), err)
	}
	return r, fmt.Errorf("%q: %w", clip(name), err)
}

// CapWriter keeps the first Limit bytes written to it and counts the rest.
// Writes never fail, so a program writing into it is not killed by a broken
// pipe. exec uses it for a command's output; compositions for local programs.
type CapWriter struct {
	Limit   int
	buf     bytes.Buffer
	dropped int64
}

// Kept is what was kept, without a truncation mark.
func (w *CapWriter) Kept() string { return w.buf.String() }

// Dropped is how many bytes did not fit.
func (w *CapWriter) Dropped() int64 { return w.dropped }

// Write keeps what fits and counts the rest; it never fails.
func (w *CapWriter) Write(p []byte) (int, error) {
	n := len(p)
	if room := w.Limit - w.buf.Len(); room > 0 {
		k := min(room, len(p))
		w.buf.Write(p[:k])
		p = p[k:]
	}
	w.dropped += int64(len(p))
	return n, nil
}

// String returns what was kept, with the truncation mark when bytes were
// dropped.
func (w *CapWriter) String() string {
	if w.dropped == 0 {
		return w.buf.String()
	}
	return truncMark(w.buf.String(), w.dropped)
}

func truncMark(s string, dropped int64) string {
	return fmt.Sprintf("%s\n…[truncated %d bytes]", s, dropped)
}

func (r ExecReply) text() string {
	clipText := func(s string) string {
		if len(s) <= execTextLimit {
			return s
		}
		return truncMark(s[:execTextLimit], int64(len(s)-execTextLimit))
	}
	var b strings.Builder
	b.WriteString(clipText(r.Stdout))
	if r.Stderr != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		b.WriteString("[stderr]\n")
		b.WriteString(clipText(r.Stderr))
	}
	var status string
	switch {
	case r.TimedOut:
		status = "[timed out]"
	case r.Signal != "":
		status = "[killed by " + r.Signal + "]"
	case r.ExitCode != 0:
		status = fmt.Sprintf("[exit %d]", r.ExitCode)
	}
	if status != "" {
		if b.Len() > 0 && !strings.HasSuffix(b.String(), "\n") {
			b.WriteByte('\n')
		}
		b.WriteString(status)
	}
	return strings.TrimRight(b.String(), "\n")
}
