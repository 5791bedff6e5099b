package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

func TestPrintCoreSaysBelowAndAbove(t *testing.T) {
	members := []wire.CoreMember{{Name: "rn1", Chevron: "1", Server: "rn-A", Up: true}, {Name: "rn2", Chevron: "2", Server: "rn-B"}}
	for _, tc := range []struct {
		st   wire.CoreStatus
		want []string
	}{
		{wire.CoreStatus{Size: 2, Members: members, Below: true}, []string{"1 of 2 members up, BELOW its size", "robonet core add", "rn2   rn-B    no"}},
		{wire.CoreStatus{Size: 1, Members: members[:1]}, []string{"1 of 1 members up, at its size"}},
		{wire.CoreStatus{Size: 1, Members: append(members[:1:1], wire.CoreMember{Server: "rn-C", Up: true}), Above: true}, []string{"2 of 1 members up, ABOVE", "-        -     rn-C    yes"}},
	} {
		var b bytes.Buffer
		printCore(&b, tc.st)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("core status %+v: output lacks %q:\n%s", tc.st, w, b.String())
			}
		}
	}
}

func TestCoreArgsAreCheckedBeforeConnecting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"core", "add"}, "core add takes one argument"},
		{[]string{"core", "remove", "a", "b"}, "core remove takes one argument"},
		{[]string{"core", "add", "rn 7"}, `node "rn 7": want a node's name, chevron or key`},
		{[]string{"core", "size", "0"}, `core size "0": want an integer 1..7`},
		{[]string{"core", "size", "8"}, `core size "8": want an integer 1..7`},
		{[]string{"core", "size", "three"}, `core size "three"`},
		{[]string{"core", "size"}, "core size takes one argument"},
	} {
		var out, errOut bytes.Buffer
		root := newRoot(&out, &errOut)
		// No node listens here: an argument error must come first.
		root.SetArgs(append(tc.args, "--server", "nats://127.0.0.1:1", "--data", t.TempDir()))
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
