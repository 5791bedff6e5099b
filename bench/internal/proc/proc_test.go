package proc

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// A child is ready at its marker line, whichever stream prints it, and its
// tail and exit status are there once it exited.
func TestChildReadyAtMarkerAndTail(t *testing.T) {
	var g Group
	t.Cleanup(g.Close)
	c, err := g.Start("sh", "/bin/sh", []string{"-c", "echo one; echo up as chevron 7 >&2; echo two; exit 3"}, "up as chevron")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(context.Background(), time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := c.ReadyLine(); got != "up as chevron 7" {
		t.Fatalf("ReadyLine = %q", got)
	}
	if c.ReadyAt().Before(c.Began) {
		t.Fatalf("ReadyAt %v before Began %v", c.ReadyAt(), c.Began)
	}
	select {
	case <-c.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("not exited")
	}
	if c.Err() == nil || c.ExitedAt().IsZero() {
		t.Fatalf("Err = %v, ExitedAt = %v; want exit status 3 and a time", c.Err(), c.ExitedAt())
	}
	if got, want := c.Tail(), "one | up as chevron 7 | two"; got != want {
		t.Fatalf("Tail = %q, want %q", got, want)
	}
}

// A child that exits without its marker line is not ready, and says why.
func TestChildExitedBeforeReady(t *testing.T) {
	var g Group
	t.Cleanup(g.Close)
	c, err := g.Start("quitter", "/bin/sh", []string{"-c", "echo bad flag; exit 2"}, "up as chevron")
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitReady(context.Background(), time.Now().Add(10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "quitter exited before ready") || !strings.Contains(err.Error(), "bad flag") {
		t.Fatalf("WaitReady = %v", err)
	}
}

// Close kills every child and refuses new ones.
func TestGroupCloseKillsChildren(t *testing.T) {
	var g Group
	c, err := g.Start("sleeper", "sleep", []string{"60"}, "") // not via sh: a forked sleep would hold the output pipe open after sh is killed
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	select {
	case <-c.Exited():
	default:
		t.Fatal("child still running after Close")
	}
	if _, err := g.Start("late", "/bin/sh", []string{"-c", "true"}, ""); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestReadsOwnCPUAndRSS(t *testing.T) {
	if _, err := CPUTicks(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss, err := RSSBytes(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("RSSBytes = %d, %v", rss, err)
	}
	if addrs, err := LocalAddrs(2); err != nil || len(addrs) != 2 || addrs[0] == addrs[1] {
		t.Fatalf("LocalAddrs = %v, %v", addrs, err)
	}
}
