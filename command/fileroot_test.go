package command

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

// TestFileStaysInsideItsRoots plays an operator who wants a node's keys: put
// and get of paths outside the roots, through symlinks and into the data
// dir are refused with an error naming the roots, and nothing outside the
// roots is read or written, while transfers inside the roots still work.
func TestFileStaysInsideItsRoots(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	data := filepath.Join(base, "data")
	root := filepath.Join(data, "files")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seed := filepath.Join(data, "operator.nk")
	if err := os.WriteFile(seed, []byte("SUAsecret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "x"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A symlink to the seed and one to a directory outside, planted inside
	// the root (as a previous get could not, but a local user might).
	if err := os.Symlink(seed, filepath.Join(root, "seedlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	store := newMemFiles()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Files: store, FileRoots: []string{root}, Protected: []string{data}})

	ok := filepath.Join(root, "ok.txt")
	if err := os.WriteFile(ok, []byte("fine"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustOK(t, run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "put", "name": "ok", "path": ok})))
	mustOK(t, run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "get", "name": "ok", "path": filepath.Join(root, "copy.txt")})))

	refused := []struct {
		name string
		args map[string]any
	}{
		{"put the operator seed", map[string]any{"op": "put", "name": "k", "path": seed}},
		{"put through a symlink to the seed", map[string]any{"op": "put", "name": "k", "path": filepath.Join(root, "seedlink")}},
		{"put outside", map[string]any{"op": "put", "name": "k", "path": filepath.Join(outside, "x")}},
		{"put through a symlinked directory", map[string]any{"op": "put", "name": "k", "path": filepath.Join(root, "out", "x")}},
		{"get over the operator seed", map[string]any{"op": "get", "name": "ok", "path": seed, "overwrite": true}},
		{"get through a symlinked directory", map[string]any{"op": "get", "name": "ok", "path": filepath.Join(root, "out", "new")}},
		{"get to /etc", map[string]any{"op": "get", "name": "ok", "path": "/etc/robonet-test-should-not-exist"}},
	}
	for _, tt := range refused {
		res := run(t, c, "file", fileArgsJSON(t, tt.args))
		if res.Status != wire.StatusError || res.Error.Code != wire.CodeBadRequest ||
			!strings.Contains(res.Error.Msg, "outside the file roots") || !strings.Contains(res.Error.Msg, root) {
			t.Errorf("%s: %+v, want bad_request naming the root %s", tt.name, res.Error, root)
		}
	}
	if _, ok := store.objects["k"]; ok {
		t.Error("a refused put reached the store")
	}
	if b, _ := os.ReadFile(seed); string(b) != "SUAsecret" {
		t.Errorf("the seed was overwritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a get wrote outside the root: %v", err)
	}
	assertNoTemps(t, outside)
}

func TestFileRootMayNotContainTheDataDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	data := filepath.Join(base, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{base, data, "/"} {
		_, err := New(Options{ListenBaseline: []string{}, FileRoots: []string{r}, Protected: []string{data}})
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "holds the node's keys") {
			t.Errorf("root %s: %v, want refused", r, err)
		}
	}
	if _, err := New(Options{ListenBaseline: []string{}, FileRoots: []string{filepath.Join(base, "missing")}}); !errors.Is(err, ErrOptions) {
		t.Errorf("missing root: %v", err)
	}
}

// TestFileExecutableModeNeedsTier3: a get writing an executable or
// group/other-writable file needs an admin's tier; 0644 and below an
// operator's.
func TestFileExecutableModeNeedsTier3(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	for _, tt := range []struct {
		args string
		want int
	}{
		{`{"op":"get","name":"x","path":"/x"}`, TierOperate},
		{`{"op":"get","name":"x","path":"/x","mode":"0600"}`, TierOperate},
		{`{"op":"get","name":"x","path":"/x","mode":"0644"}`, TierOperate},
		{`{"op":"get","name":"x","path":"/x","mode":"0755"}`, TierCritical},
		{`{"op":"get","name":"x","path":"/x","mode":"0664"}`, TierCritical},
		{`{"op":"put","name":"x","path":"/x"}`, TierOperate},
	} {
		if got, err := c.Tier("file", []byte(tt.args)); err != nil || got != tt.want {
			t.Errorf("%s: tier %d, %v; want %d", tt.args, got, err, tt.want)
		}
	}
}
