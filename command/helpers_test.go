package command

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// newCatalogue builds a catalogue and fails the test on error.
func newCatalogue(t testing.TB, opts Options) *Catalogue {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// run runs verb with args (JSON text; "" for none) under a 30 s deadline.
func run(t testing.TB, c *Catalogue, verb, args string) wire.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	return c.Run(ctx, wire.Request{Verb: verb, Args: raw, ID: "t-1"})
}

// mustOK fails unless res is ok.
func mustOK(t testing.TB, res wire.Result) {
	t.Helper()
	if res.Status != wire.StatusOK {
		t.Fatalf("status %q, error %+v, output %.300s", res.Status, res.Error, res.Output)
	}
}

// mustCode fails unless res is an error with code.
func mustCode(t testing.TB, res wire.Result, code string) {
	t.Helper()
	if res.Status != wire.StatusError || res.Error == nil || res.Error.Code != code {
		t.Fatalf("want error code %q, got status %q error %+v", code, res.Status, res.Error)
	}
}

// outputOf decodes a result's output.
func outputOf[T any](t testing.TB, res wire.Result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(res.Output, &v); err != nil {
		t.Fatalf("output %.300s: %v", res.Output, err)
	}
	return v
}

// checkFor polls cond until it holds or the deadline passes.
func checkFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeScript writes an executable shell script into dir.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// testHost is a Host with fixed answers.
type testHost struct {
	status any
	caps   []string
	offset time.Duration
	known  bool
}

func (h testHost) Status() any                        { return h.status }
func (h testHost) Caps() []string                     { return h.caps }
func (h testHost) ClockOffset() (time.Duration, bool) { return h.offset, h.known }

// memFiles is an in-memory FileStore: what the node does over rn_files,
// without NATS.
type memFiles struct {
	mu      sync.Mutex
	objects map[string]memObject
}

type memObject struct {
	data   []byte
	digest string // recorded at put time, as the object store does
}

func newMemFiles() *memFiles { return &memFiles{objects: map[string]memObject{}} }

func (m *memFiles) Put(ctx context.Context, name string, r io.Reader) (string, int64, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", 0, err
	}
	sum := sha256.Sum256(data)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[name] = memObject{data: data, digest: hex.EncodeToString(sum[:])}
	return hex.EncodeToString(sum[:]), int64(len(data)), nil
}

func (m *memFiles) Get(ctx context.Context, name string, w io.Writer) (string, int64, error) {
	m.mu.Lock()
	o, ok := m.objects[name]
	m.mu.Unlock()
	if !ok {
		return "", 0, fmt.Errorf("object %q: %w", name, ErrNotFound)
	}
	n, err := io.Copy(w, bytes.NewReader(o.data))
	if err != nil {
		return "", n, err
	}
	return o.digest, int64(len(o.data)), nil
}

// corrupt flips a bit of a stored object, keeping its recorded digest.
func (m *memFiles) corrupt(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.objects[name]
	o.data = bytes.Clone(o.data)
	o.data[0] ^= 1
	m.objects[name] = o
}

// memConfig is an in-memory ConfigStore with revisions like a KV bucket.
type memConfig struct {
	mu   sync.Mutex
	rev  uint64
	keys map[string]memValue
}

type memValue struct {
	value []byte
	rev   uint64
}

func newMemConfig() *memConfig { return &memConfig{keys: map[string]memValue{}} }

func (m *memConfig) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.keys[key]
	if !ok {
		return nil, 0, fmt.Errorf("key %q: %w", key, ErrNotFound)
	}
	return bytes.Clone(v.value), v.rev, nil
}

func (m *memConfig) Set(ctx context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.keys[key] = memValue{value: bytes.Clone(value), rev: m.rev}
	return m.rev, nil
}
