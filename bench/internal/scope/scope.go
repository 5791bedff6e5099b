// Package scope is the testing.TB that internal/testmesh's helpers take, for
// a bench program rather than a test: temp dirs under one root, cleanups run
// by Close (last registered first), log lines to stderr with verbose, and
// Fatal as a panic that Recover, deferred in the program's run, turns back
// into an error. Every bench program that drives testmesh uses this one.
package scope

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Scope is a testing.TB for a program. Only the methods below are called by
// testmesh; the embedded interface is nil and stands for the rest.
type Scope struct {
	testing.TB
	root    string
	name    string
	verbose bool

	mu       sync.Mutex // guards the fields below
	cleanups []func()
	dirs     int
}

// New returns a Scope whose temp dirs are made under root (which must
// exist), whose Name is name (the program, e.g. "bench/proxy"), and which
// logs to stderr when verbose.
func New(root, name string, verbose bool) *Scope {
	return &Scope{root: root, name: name, verbose: verbose}
}

// failure is what Fatal panics with; Recover turns it back into an error.
type failure struct{ msg string }

func (f failure) Error() string { return f.msg }

// Recover, deferred directly (defer scope.Recover(&err)), turns a panic
// from Fatal, Fatalf or Errorf into *errp (the fatal message as the error)
// and lets any other panic go on.
func Recover(errp *error) {
	if r := recover(); r != nil {
		f, ok := r.(failure)
		if !ok {
			panic(r)
		}
		*errp = f
	}
}

func (s *Scope) Helper()      {}
func (s *Scope) Name() string { return s.name }
func (s *Scope) Failed() bool { return false }

func (s *Scope) Log(args ...any) {
	if s.verbose {
		fmt.Fprintln(os.Stderr, args...)
	}
}

func (s *Scope) Logf(format string, args ...any) { s.Log(fmt.Sprintf(format, args...)) }

func (s *Scope) Fatal(args ...any) { panic(failure{fmt.Sprint(args...)}) }

func (s *Scope) Fatalf(format string, args ...any) { panic(failure{fmt.Sprintf(format, args...)}) }

// Errorf is Fatalf: a program has no way to go on after a failed check.
func (s *Scope) Errorf(format string, args ...any) { s.Fatalf(format, args...) }

func (s *Scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

// TempDir makes a fresh dir under the root (d1, d2, ...).
func (s *Scope) TempDir() string {
	s.mu.Lock()
	s.dirs++
	dir := filepath.Join(s.root, fmt.Sprintf("d%d", s.dirs))
	s.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.Fatal(err)
	}
	return dir
}

// Close runs the cleanups, last registered first, including any a cleanup
// registers while it runs.
func (s *Scope) Close() {
	for {
		s.mu.Lock()
		if len(s.cleanups) == 0 {
			s.mu.Unlock()
			return
		}
		f := s.cleanups[len(s.cleanups)-1]
		s.cleanups = s.cleanups[:len(s.cleanups)-1]
		s.mu.Unlock()
		f()
	}
}
