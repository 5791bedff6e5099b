package command

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/robonet-mesh/robonet/wire"
)

func fileArgsJSON(t *testing.T, a map[string]any) string {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestFilePutAndGetRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newMemFiles()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Files: store, FileRoots: []string{dir}})
	content := bytes.Repeat([]byte("robonet\x00\xff"), 50_000)
	src := filepath.Join(dir, "src.bin")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}

	res := run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "put", "name": "fw/v1.bin", "path": src}))
	mustOK(t, res)
	put := outputOf[FileReply](t, res)
	want := FileReply{Op: "put", Name: "fw/v1.bin", Path: src, Size: int64(len(content)), SHA256: sum(content)}
	if put != want {
		t.Errorf("put = %+v, want %+v", put, want)
	}
	if !strings.HasPrefix(res.Text, "put "+src+" → fw/v1.bin (") {
		t.Errorf("put text %q", res.Text)
	}

	dst := filepath.Join(dir, "dst.bin")
	res = run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "get", "name": "fw/v1.bin", "path": dst, "mode": "0640", "sha256": strings.ToUpper(sum(content))}))
	mustOK(t, res)
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("fetched file differs (%d bytes, %v)", len(got), err)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	if g := outputOf[FileReply](t, res); g.SHA256 != sum(content) || g.Size != int64(len(content)) || g.Op != "get" {
		t.Errorf("get = %+v", g)
	}

	// An existing file stays unless overwrite=true.
	res = run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "get", "name": "fw/v1.bin", "path": src}))
	mustCode(t, res, wire.CodeFailed)
	if !strings.Contains(res.Error.Msg, "already exists: "+src+" (pass overwrite=true") {
		t.Errorf("message %q", res.Error.Msg)
	}
	os.WriteFile(dst, []byte("old"), 0o644)
	mustOK(t, run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "get", "name": "fw/v1.bin", "path": dst, "overwrite": true})))
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, content) {
		t.Error("overwrite did not replace the file")
	}
	assertNoTemps(t, dir)
}

func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".rn-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestFileChecksFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newMemFiles()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Files: store, MaxFileSize: 1000, FileRoots: []string{dir}})
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("hello"), 0o644)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 1001), 0o644)
	mustOK(t, run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "put", "name": "small", "path": small})))
	store.Put(t.Context(), "huge", bytes.NewReader(make([]byte, 5000)))

	tests := []struct {
		name string
		args map[string]any
		code string
		msg  string
	}{
		{"put expected digest differs", map[string]any{"op": "put", "name": "x", "path": small, "sha256": strings.Repeat("0", 64)},
			wire.CodeFailed, "checksum mismatch: " + small + " has sha256 " + sum([]byte("hello"))},
		{"put too large", map[string]any{"op": "put", "name": "x", "path": big},
			wire.CodeFailed, "message too large: " + big + " is 1001 bytes, limit 1000"},
		{"put a directory", map[string]any{"op": "put", "name": "x", "path": dir},
			wire.CodeBadRequest, "is not a regular file"},
		{"put missing file", map[string]any{"op": "put", "name": "x", "path": filepath.Join(dir, "absent")},
			wire.CodeNotFound, "not found: " + filepath.Join(dir, "absent")},
		{"get unknown object", map[string]any{"op": "get", "name": "absent", "path": filepath.Join(dir, "a")},
			wire.CodeNotFound, `object "absent": not found`},
		{"get expected digest differs", map[string]any{"op": "get", "name": "small", "path": filepath.Join(dir, "b"), "sha256": strings.Repeat("1", 64)},
			wire.CodeFailed, "checksum mismatch: small has sha256 " + sum([]byte("hello"))},
		{"get too large", map[string]any{"op": "get", "name": "huge", "path": filepath.Join(dir, "c")},
			wire.CodeFailed, "message too large: huge is larger than the limit"},
		{"get into missing directory", map[string]any{"op": "get", "name": "small", "path": filepath.Join(dir, "no", "d")},
			wire.CodeNotFound, "not found: " + filepath.Join(dir, "no")},
		{"get over a directory", map[string]any{"op": "get", "name": "small", "path": dir, "overwrite": true},
			wire.CodeFailed, "exists and is not a regular file"},
	}
	for _, tt := range tests {
		res := run(t, c, "file", fileArgsJSON(t, tt.args))
		if res.Status != wire.StatusError || res.Error.Code != tt.code || !strings.Contains(res.Error.Msg, tt.msg) {
			t.Errorf("%s: %+v, want code %s and %q", tt.name, res.Error, tt.code, tt.msg)
		}
	}
	for _, p := range []string{"a", "b", "c"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("failed get left %s behind: %v", p, err)
		}
	}
	assertNoTemps(t, dir)
}

func TestFileGetDetectsCorruptObject(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := newMemFiles()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Files: store, FileRoots: []string{dir}})
	src := filepath.Join(dir, "src")
	os.WriteFile(src, []byte("payload"), 0o644)
	mustOK(t, run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "put", "name": "p", "path": src})))
	store.corrupt("p")
	dst := filepath.Join(dir, "dst")
	res := run(t, c, "file", fileArgsJSON(t, map[string]any{"op": "get", "name": "p", "path": dst}))
	mustCode(t, res, wire.CodeFailed)
	if !strings.Contains(res.Error.Msg, "checksum mismatch: p: the store recorded 7 bytes with sha256 "+sum([]byte("payload"))) {
		t.Errorf("message %q", res.Error.Msg)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("corrupt object was written to %s", dst)
	}
	assertNoTemps(t, dir)
}

func TestFilePutRefusesDevices(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("needs /dev/zero")
	}
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Files: newMemFiles(), FileRoots: []string{"/dev"}})
	res := run(t, c, "file", `{"op":"put","name":"zero","path":"/dev/zero"}`)
	mustCode(t, res, wire.CodeBadRequest)
}

func TestConfigGetAndSet(t *testing.T) {
	t.Parallel()
	store := newMemConfig()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Config: store})

	res := run(t, c, "config", `{"op":"get","key":"log.level"}`)
	mustCode(t, res, wire.CodeNotFound)

	raw, err := c.ArgsFromWords("config", []string{"set", "log.level", "debug"})
	if err != nil {
		t.Fatal(err)
	}
	res = run(t, c, "config", string(raw))
	mustOK(t, res)
	if got := outputOf[ConfigReply](t, res); got != (ConfigReply{Op: "set", Key: "log.level", Value: "debug", Revision: 1}) {
		t.Errorf("set = %+v", got)
	}
	if res.Text != "log.level = debug (revision 1)" {
		t.Errorf("set text %q", res.Text)
	}
	mustOK(t, run(t, c, "config", `{"op":"set","key":"log.level","value":"info"}`))

	res = run(t, c, "config", `{"op":"get","key":"log.level"}`)
	mustOK(t, res)
	if got := outputOf[ConfigReply](t, res); got != (ConfigReply{Op: "get", Key: "log.level", Value: "info", Revision: 2}) {
		t.Errorf("get = %+v", got)
	}
	if res.Text != "info" {
		t.Errorf("get text %q", res.Text)
	}
	res = run(t, c, "config", `{"op":"set","key":"big","value":"`+strings.Repeat("v", MaxConfigValue+1)+`"}`)
	mustCode(t, res, wire.CodeBadRequest)
	if _, _, err := store.Get(t.Context(), "big"); err == nil {
		t.Error("an oversized value reached the store")
	}
}
