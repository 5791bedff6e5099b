package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// robonet runs the CLI in-process and returns stdout, stderr and the exit
// code main would use.
func robonet(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code := 0
	if err != nil {
		stderr.WriteString("robonet: " + oneLine(err) + "\n")
		code = 1
		var ee exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
	}
	return stdout.String(), stderr.String(), code
}

func TestDoArgumentErrors(t *testing.T) {
	// Parse errors are reported before any connection is tried, so the
	// server need not exist.
	srv := []string{"--server", "nats://127.0.0.1:1", "--nkey", "/nonexistent"}
	for _, tc := range []struct {
		args  []string
		want  []string // in stderr
		caret bool
	}{
		{[]string{"do"}, []string{"one argument", "got 0"}, false},
		{[]string{"do", "all:ping", "rn2:ping"}, []string{"one argument", "got 2"}, false},
		{[]string{"do", "  "}, []string{"empty"}, false},
		{[]string{"do", "rn1:status -> rn2:"}, []string{"column 19", "expected verb"}, true},
		{[]string{"do", "[all:ping"}, []string{"missing ']'"}, true},
		{[]string{"macro", "set", "9lives", "all:ping"}, []string{"invalid macro name", "9lives"}, false},
		{[]string{"macro", "set", "ok", "all:ping |"}, []string{"@ok", "a command after '|'"}, true},
		{[]string{"macro", "run", "no.dots"}, []string{"invalid macro name"}, false},
		{[]string{"macro", "rm"}, []string{"accepts 1 arg"}, false},
	} {
		out, errOut, code := robonet(t, append(tc.args, srv...)...)
		if code != 1 || out != "" {
			t.Errorf("%q: exit %d, stdout %q", tc.args, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%q: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
		if got := strings.Contains(errOut, "^\n"); got != tc.caret {
			t.Errorf("%q: caret shown %v, want %v: %q", tc.args, got, tc.caret, errOut)
		}
	}
}

func TestDoAndMacroAgainstANode(t *testing.T) {
	s := testmesh.Start(t, 1, func(i int, o *node.Options) { o.ExecAllow = []string{"cat"} })
	nd := s.Node(0)
	conn := []string{"--server", nd.ClientURL(), "--nkey", nd.OperatorSeedPath(), "--timeout", "20s"}
	// The bucket exists once the node is up, but let the first write settle.
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		_, errOut, code := robonet(t, append([]string{"macro", "list"}, conn[:4]...)...)
		if code != 0 {
			return errors.New(errOut)
		}
		return nil
	})

	out, errOut, code := robonet(t, append([]string{"do", "1:ping hi -> all:exec -- cat"}, conn...)...)
	if code != 0 || !strings.Contains(out, "--- step 1/2: 1:ping hi\n") || !strings.Contains(out, "--- step 2/2: all:exec -- cat\n") ||
		!strings.Contains(out, `"text":"pong hi"`) || !strings.HasSuffix(out, "2 steps: 2 ok\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	// A local program's output as it printed it; its failure is exit 2.
	out, _, code = robonet(t, append([]string{"do", "all:ping | grep -c nomatch"}, conn...)...)
	if code != 2 || !strings.Contains(out, "--- step 2/2: | grep -c nomatch · exit 1\n0\n") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	// A plan error: exit 1, nothing on stdout.
	out, errOut, code = robonet(t, append([]string{"do", "all:frob"}, conn...)...)
	if code != 1 || out != "" || !strings.Contains(errOut, `unknown verb "frob"`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	out, errOut, code = robonet(t, append([]string{"macro", "set", "health", "all:ping -> all:ping again"}, conn[:4]...)...)
	if code != 0 || out != "macro @health set (revision 1)\n" {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = robonet(t, append([]string{"macro", "set", "loop", "[@health, @loop]"}, conn[:4]...)...)
	if code != 1 || !strings.Contains(errOut, "macro cycle: @loop -> @loop") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	out, _, code = robonet(t, append([]string{"macro", "list"}, conn[:4]...)...)
	if code != 0 || !strings.Contains(out, "health  1") || !strings.Contains(out, "all:ping -> all:ping again") {
		t.Fatalf("exit %d\n%s", code, out)
	}
	out, errOut, code = robonet(t, append([]string{"macro", "run", "health", "--json"}, conn...)...)
	var res mesh.RunResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || len(res.Steps) != 2 ||
		res.Steps[1].Via[0] != "health" || !strings.Contains(out, `"composition": "@health"`) {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, code = robonet(t, append([]string{"macro", "rm", "health"}, conn[:4]...)...)
	if code != 0 || out != "macro @health removed\n" {
		t.Fatalf("exit %d\n%s", code, out)
	}
	_, errOut, code = robonet(t, append([]string{"do", "@health"}, conn...)...)
	if code != 1 || !strings.Contains(errOut, "no such macro: @health") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
}
