package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// scope is the testing.TB internal/testmesh takes, for a program: temp dirs
// under one root, cleanups run by close (last registered first), logs to
// stderr with -v, Fatal as a panic that run recovers into an error. The
// embedded interface is nil and stands for the methods testmesh never calls.
type scope struct {
	testing.TB
	root    string
	verbose bool

	mu       sync.Mutex // guards cleanups and dirs
	cleanups []func()
	dirs     int
}

type failure struct{ msg string }

func (f failure) Error() string { return f.msg }

func (s *scope) Helper()      {}
func (s *scope) Name() string { return "bench/proxy" }
func (s *scope) Failed() bool { return false }
func (s *scope) Log(args ...any) {
	if s.verbose {
		fmt.Fprintln(os.Stderr, args...)
	}
}
func (s *scope) Logf(format string, args ...any)   { s.Log(fmt.Sprintf(format, args...)) }
func (s *scope) Fatal(args ...any)                 { panic(failure{fmt.Sprint(args...)}) }
func (s *scope) Fatalf(format string, args ...any) { panic(failure{fmt.Sprintf(format, args...)}) }
func (s *scope) Errorf(format string, args ...any) { s.Fatalf(format, args...) }

func (s *scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanups = append(s.cleanups, f)
}

func (s *scope) TempDir() string {
	s.mu.Lock()
	s.dirs++
	dir := filepath.Join(s.root, fmt.Sprintf("d%d", s.dirs))
	s.mu.Unlock()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.Fatal(err)
	}
	return dir
}

func (s *scope) close() {
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
