package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestColonizeUsageErrorsExitOneBeforeConnecting: bad flags and hosts are
// named and exit 1 without any connection (there is no node at --server).
func TestColonizeUsageErrorsExitOneBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("root@a\nroot@b chevron=1.x\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"colonize"}, "no host"},
		{[]string{"colonize", "root@a", "--parallel", "0"}, "--parallel 0"},
		{[]string{"colonize", "root@a", "root@b", "--chevron", "3.1"}, "--chevron names one node"},
		{[]string{"colonize", "root@a", "--caps", "cam era"}, "capability"},
		{[]string{"colonize", "root@a", "--tags", "site"}, "site"},
		{[]string{"colonize", "root@a", "--join", "nohost"}, "--join"},
		{[]string{"colonize", "root@a", "--host-key", "MD5:aa"}, "--host-key"},
		{[]string{"colonize", "--hosts", bad}, "line 2"},
		{[]string{"colonize", "--hosts", filepath.Join(dir, "missing.txt")}, "--hosts"},
		{[]string{"colonize", "root@[::1"}, "root@[::1"},
		{[]string{"uncolonize"}, "no host"},
		{[]string{"colonize", "root@a", "--binary", filepath.Join(dir, "nope")}, "--binary"},
		{[]string{"colonize", "root@a", "--binaries", bad}, "--binaries"},
	} {
		args := append([]string{"--server", "nats://127.0.0.1:1", "--data", dir}, tc.args...)
		_, stderr, code := robonet(t, args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("robonet %q: exit %d, stderr %q; want exit 1 naming %q", tc.args, code, stderr, tc.want)
		}
	}
}
