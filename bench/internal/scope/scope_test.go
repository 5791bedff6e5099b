package scope

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCloseRunsCleanupsLastFirst(t *testing.T) {
	s := New(t.TempDir(), "bench/test", false)
	var order []int
	s.Cleanup(func() { order = append(order, 1) })
	s.Cleanup(func() {
		order = append(order, 2)
		s.Cleanup(func() { order = append(order, 3) })
	})
	s.Close()
	if want := []int{2, 3, 1}; !slices.Equal(order, want) {
		t.Fatalf("cleanups ran %v, want %v", order, want)
	}
}

func TestTempDirAndName(t *testing.T) {
	root := t.TempDir()
	s := New(root, "bench/test", false)
	if s.Name() != "bench/test" {
		t.Fatalf("Name = %q", s.Name())
	}
	for _, want := range []string{"d1", "d2"} {
		dir := s.TempDir()
		if dir != filepath.Join(root, want) {
			t.Fatalf("TempDir = %s, want %s under %s", dir, want, root)
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			t.Fatalf("%s: %v", dir, err)
		}
	}
}

func TestRecoverTurnsFatalIntoError(t *testing.T) {
	run := func(f func(s *Scope)) (err error) {
		defer Recover(&err)
		f(New(t.TempDir(), "bench/test", false))
		return nil
	}
	if err := run(func(s *Scope) {}); err != nil {
		t.Fatalf("no failure: %v", err)
	}
	if err := run(func(s *Scope) { s.Fatalf("node %d: %s", 2, "down") }); err == nil || err.Error() != "node 2: down" {
		t.Fatalf("Fatalf: %v", err)
	}
	if err := run(func(s *Scope) { s.Errorf("x") }); err == nil || err.Error() != "x" {
		t.Fatalf("Errorf: %v", err)
	}
	other := errors.New("not a failure")
	defer func() {
		if r := recover(); r != other {
			t.Fatalf("other panic: recovered %v", r)
		}
	}()
	_ = run(func(s *Scope) { panic(other) })
	t.Fatal("other panic was swallowed")
}
