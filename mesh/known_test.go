package mesh_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
)

func nodeKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

// The known-nodes file pins a key per address on first use, keeps it, and
// refuses another key for that address with an error that names the
// address, both keys and the file to edit. Concurrent pins are all kept.
func TestKnownNodesPinOnFirstUseAndRefuseAChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cfg", "robonet", "known_nodes")
	k := mesh.OpenKnownNodes(path)
	a, b := nodeKey(t), nodeKey(t)
	if _, ok, err := k.Lookup("10.0.0.5:4222"); ok || err != nil {
		t.Fatalf("lookup in a missing file: %v %v", ok, err)
	}
	if err := k.Pin("10.0.0.5:4222", a); err != nil {
		t.Fatal(err)
	}
	if err := k.Pin("10.0.0.5:4222", a); err != nil {
		t.Fatalf("pinning the same key again: %v", err)
	}
	if got, ok, err := k.Lookup("10.0.0.5:4222"); !ok || err != nil || got != a {
		t.Fatalf("lookup = %s %v %v, want %s", got, ok, err, a)
	}
	err := k.Pin("10.0.0.5:4222", b)
	var kc *mesh.NodeKeyChangedError
	if !errors.As(err, &kc) || !errors.Is(err, mesh.ErrNodeKey) {
		t.Fatalf("another key for a pinned address: %v", err)
	}
	for _, want := range []string{"HAS CHANGED", "10.0.0.5:4222", a, b, path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode: %v %v", st.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "10.0.0.5:4222 "+a+"\n") || strings.Contains(string(data), b) {
		t.Fatalf("file:\n%s", data)
	}

	var wg sync.WaitGroup
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = nodeKey(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := mesh.OpenKnownNodes(path).Pin(fmt.Sprintf("host%d:4222", i), keys[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, key := range keys {
		if got, ok, _ := k.Lookup(fmt.Sprintf("host%d:4222", i)); !ok || got != key {
			t.Errorf("concurrent pin %d lost: %q", i, got)
		}
	}
	if err := os.WriteFile(path, append(data, []byte("garbage here\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := k.Lookup("10.0.0.5:4222"); err == nil || !strings.Contains(err.Error(), path+":3") {
		t.Fatalf("a malformed line: %v", err)
	}
	if err := k.Pin("x:1", "not-a-key"); err == nil {
		t.Fatal("pinned a malformed key")
	}
}

func TestNodeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222": "127.0.0.1:4222",
		"tls://Node-A":          "node-a:4222",
		"10.0.0.5:4333":         "10.0.0.5:4333",
		"tls://[::1]:4333":      "[::1]:4333",
		"nats://u:p@h:1":        "h:1",
	} {
		if got, err := mesh.NodeAddr(in); err != nil || got != want {
			t.Errorf("NodeAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := mesh.NodeAddr("nats://:4222"); err == nil {
		t.Error("an URL without a host")
	}
}
