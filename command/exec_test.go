//go:build unix

package command

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

func execArgsJSON(t *testing.T, a map[string]any) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExecRunsPrograms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	tests := []struct {
		name string
		args map[string]any
		want ExecReply
		text string
	}{
		{"echo", map[string]any{"argv": []string{"/bin/echo", "hello", "world"}},
			ExecReply{Stdout: "hello world\n"}, "hello world"},
		{"no shell: metacharacters are arguments", map[string]any{"argv": []string{"/bin/echo", "$HOME", "|", "wc"}},
			ExecReply{Stdout: "$HOME | wc\n"}, "$HOME | wc"},
		{"sh -c", map[string]any{"argv": []string{"/bin/sh", "-c", "echo out; echo err >&2"}},
			ExecReply{Stdout: "out\n", Stderr: "err\n"}, "out\n[stderr]\nerr"},
		{"shell=true joins argv into one script", map[string]any{"argv": []string{"echo", "$((1+2))", "|", "tr", "3", "x"}, "shell": true},
			ExecReply{Stdout: "x\n"}, "x"},
		{"stdin passed through", map[string]any{"argv": []string{"cat"}, "stdin": "line one\nline two\n"},
			ExecReply{Stdout: "line one\nline two\n"}, "line one\nline two"},
		{"no stdin reads nothing", map[string]any{"argv": []string{"cat"}},
			ExecReply{}, ""},
		{"nonzero exit code", map[string]any{"argv": []string{"/bin/sh", "-c", "echo failing >&2; exit 3"}},
			ExecReply{ExitCode: 3, Stderr: "failing\n"}, "[stderr]\nfailing\n[exit 3]"},
		{"killed by a signal", map[string]any{"argv": []string{"/bin/sh", "-c", "kill -TERM $$"}},
			ExecReply{ExitCode: -1, Signal: "terminated"}, "[killed by terminated]"},
		{"working directory", map[string]any{"argv": []string{"pwd", "-P"}, "dir": dir},
			ExecReply{Stdout: realDir + "\n"}, realDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := run(t, c, "exec", execArgsJSON(t, tt.args))
			mustOK(t, res)
			if got := outputOf[ExecReply](t, res); got != tt.want {
				t.Errorf("exec = %+v, want %+v", got, tt.want)
			}
			if res.Text != tt.text {
				t.Errorf("text = %q, want %q", res.Text, tt.text)
			}
		})
	}
}

func TestExecAllowListedProgramRuns(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, ExecAllow: []string{"echo"}})
	raw, err := c.ArgsFromWords("exec", []string{"--", "echo", "allowed"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Risk("exec", raw); err != nil || r != Mutate {
		t.Fatalf("Risk = %v, %v", r, err)
	}
	res := run(t, c, "exec", string(raw))
	mustOK(t, res)
	if got := outputOf[ExecReply](t, res); got.Stdout != "allowed\n" {
		t.Errorf("stdout %q", got.Stdout)
	}
}

func TestExecReportsMissingPrograms(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	for _, argv0 := range []string{"rn-no-such-program", "/nonexistent/rn-prog"} {
		res := run(t, c, "exec", execArgsJSON(t, map[string]any{"argv": []string{argv0}}))
		mustCode(t, res, wire.CodeNotFound)
		if !strings.Contains(res.Error.Msg, argv0) {
			t.Errorf("message %q does not name %s", res.Error.Msg, argv0)
		}
	}
	res := run(t, c, "exec", execArgsJSON(t, map[string]any{"argv": []string{"pwd"}, "dir": "/nonexistent/dir"}))
	mustCode(t, res, wire.CodeNotFound)
	notExec := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(notExec, []byte("x"), 0o644)
	mustCode(t, run(t, c, "exec", execArgsJSON(t, map[string]any{"argv": []string{notExec}})), wire.CodeFailed)
}

// processGone reports whether pid has exited (a zombie whose parent is gone
// counts: it runs nothing).
func processGone(pid int) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return nil
		}
		if os.IsNotExist(err) {
			return nil
		}
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 'Z' {
		return nil
	}
	return fmt.Errorf("process %d still running", pid)
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	start := time.Now()
	// The shell's child would outlive a kill of the shell alone.
	res := run(t, c, "exec", execArgsJSON(t, map[string]any{
		"argv": []string{"/bin/sh", "-c", "sleep 30 & echo $!; wait"}, "timeout": "2s"}))
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("exec with a 2s timeout took %v", el)
	}
	mustCode(t, res, wire.CodeTimeout)
	if !strings.Contains(res.Error.Msg, "killed with its process group") || !strings.Contains(res.Error.Msg, "timeout 2s") {
		t.Errorf("message %q", res.Error.Msg)
	}
	got := outputOf[ExecReply](t, res)
	if !got.TimedOut || got.ExitCode != -1 || got.Signal != "killed" {
		t.Errorf("reply %+v", got)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(got.Stdout))
	if err != nil {
		t.Fatalf("partial stdout %q: %v", got.Stdout, err)
	}
	checkFor(t, 5*time.Second, func() error { return processGone(pid) })
	if !strings.HasSuffix(res.Text, "[timed out]") {
		t.Errorf("text %q", res.Text)
	}
}

func TestExecStopsAtRequestDeadline(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res := c.Run(ctx, wire.Request{Verb: "exec", Args: json.RawMessage(`{"argv":["sleep","30"],"timeout":"1h"}`)})
	mustCode(t, res, wire.CodeTimeout)
	if res.Ms > 5000 {
		t.Errorf("ran %vms", res.Ms)
	}
}

func TestExecDoesNotWaitForBackgroundChildren(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	start := time.Now()
	// The background sleep keeps stdout open after the shell exits.
	res := run(t, c, "exec", execArgsJSON(t, map[string]any{"argv": []string{"/bin/sh", "-c", "sleep 20 & echo $!"}}))
	mustOK(t, res)
	got := outputOf[ExecReply](t, res)
	if pid, err := strconv.Atoi(strings.TrimSpace(got.Stdout)); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("exec waited %v for a background child", el)
	}
	if got.ExitCode != 0 {
		t.Errorf("reply %+v", got)
	}
}

func TestExecTruncatesOutputOverOneMiB(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	const total = 1_500_000
	res := run(t, c, "exec", execArgsJSON(t, map[string]any{"argv": []string{"/bin/sh", "-c",
		fmt.Sprintf("head -c %d /dev/zero | tr '\\0' o; head -c %d /dev/zero | tr '\\0' e >&2", total, total+1)}}))
	mustOK(t, res)
	got := outputOf[ExecReply](t, res)
	for _, s := range []struct {
		name, out, char string
		dropped, want   int64
	}{
		{"stdout", got.Stdout, "o", got.StdoutDropped, total - DefaultMaxOutput},
		{"stderr", got.Stderr, "e", got.StderrDropped, total + 1 - DefaultMaxOutput},
	} {
		mark := fmt.Sprintf("\n…[truncated %d bytes]", s.want)
		if s.dropped != s.want || !strings.HasSuffix(s.out, mark) {
			t.Errorf("%s: dropped %d, ends %q; want %d and mark %q", s.name, s.dropped, s.out[max(0, len(s.out)-40):], s.want, mark)
		}
		if kept := strings.TrimSuffix(s.out, mark); kept != strings.Repeat(s.char, DefaultMaxOutput) {
			t.Errorf("%s: kept %d bytes, want %d of %q", s.name, len(kept), DefaultMaxOutput, s.char)
		}
	}
	if len(res.Text) > 3*execTextLimit || !strings.Contains(res.Text, "…[truncated") {
		t.Errorf("text is %d bytes", len(res.Text))
	}

	small := newCatalogue(t, Options{ListenBaseline: []string{}, MaxOutput: 4})
	res = run(t, small, "exec", `{"argv":["/bin/echo","abcdefgh"]}`)
	mustOK(t, res)
	if got := outputOf[ExecReply](t, res); got.Stdout != "abcd\n…[truncated 5 bytes]" || got.StdoutDropped != 5 {
		t.Errorf("MaxOutput 4: %+v", got)
	}
}

func TestCapWriter(t *testing.T) {
	t.Parallel()
	w := &CapWriter{Limit: 5}
	for _, p := range []string{"ab", "cdef", "", "gh"} {
		if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if w.String() != "abcde\n…[truncated 3 bytes]" || w.dropped != 3 {
		t.Errorf("CapWriter = %q, dropped %d", w.String(), w.Dropped())
	}
}
