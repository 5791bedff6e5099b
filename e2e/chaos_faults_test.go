//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The chaos suite's faults: each injected, measured, undone and healed.

// kill SIGKILLs the leader or a follower, measures the failover, starts it
// again on its data dir and waits for the heal.
func (c *chaosLab) kill(role string) error {
	p, err := c.current()
	if err != nil {
		return err
	}
	target := c.byName(p.leader.Name)
	if role == "follower" {
		target = c.others(target)[rand.IntN(2)]
	}
	return c.killNode(target, "SIGKILL "+role, p)
}

func (c *chaosLab) killNode(target *node, what string, p picture) error {
	survivors := c.others(target)
	f := c.hist.fault(what, target.name)
	t0 := c.hist.Faults[f].At
	target.signal(syscall.SIGKILL)
	target.waitExit(10 * time.Second)
	old, token := "", p.token-1 // a follower's death keeps the lease
	if target.name == p.leader.Name {
		old, token = p.leader.Chevron, p.token
	}
	d, err := c.waitFor(detectTimeout, what+": survivors name one leader", survivors, t0, newLeader(survivors, old, token, target.name))
	if err != nil {
		return err
	}
	record(c.t, what+": fault → all survivors name the same leader", d, "≤3s")
	c.hist.undone(f)
	if err := c.restart(target); err != nil {
		return err
	}
	return c.heal(f, what)
}

// restart starts n again on its data dir and waits until it is up. A
// start that exits before it is up is a product bug: it is reported, and
// the node is started again (twice at most) so the run goes on.
func (c *chaosLab) restart(n *node) error {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		n.start()
		if err = waitUp(n, upTimeout); err == nil {
			return nil
		}
		c.t.Errorf("%s: start %d on its data dir failed: %v", n.name, n.runs, err)
		c.hist.note("%s: start %d on its data dir failed: %v", n.name, n.runs, err)
	}
	return err
}

// waitUp waits until n's current run prints its up line; it returns an
// error if the process exits first or timeout passes.
func waitUp(n *node, timeout time.Duration) error {
	stdout, stderr := n.logs[len(n.logs)-2], n.logs[len(n.logs)-1]
	deadline := time.Now().Add(timeout)
	for {
		if data, _ := os.ReadFile(stdout); upLine.Match(data) {
			return nil
		}
		if !n.running() {
			return fmt.Errorf("exited before it was up (%v): %s", n.waitErr, n.tail(stderr, 5))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not up after %s: %s", timeout, n.tail(stderr, 5))
		}
		time.Sleep(pollEvery)
	}
}

// freezeLeader stops the leader (SIGSTOP) for chaosFreeze, measuring the
// failover, then resumes it.
func (c *chaosLab) freezeLeader() error {
	p, err := c.current()
	if err != nil {
		return err
	}
	target := c.byName(p.leader.Name)
	survivors := c.others(target)
	f := c.hist.fault("freeze leader", target.name)
	t0 := c.hist.Faults[f].At
	target.signal(syscall.SIGSTOP)
	d, err := c.waitFor(detectTimeout, "freeze: survivors name a new leader", survivors, t0,
		newLeader(survivors, p.leader.Chevron, p.token, target.name))
	if err != nil {
		target.signal(syscall.SIGCONT)
		c.hist.undone(f)
		return err
	}
	record(c.t, "freeze leader: fault → all survivors name the same new leader", d, "≤5s")
	time.Sleep(time.Until(t0.Add(chaosFreeze))) // the freeze lasts chaosFreeze: a schedule, not a condition
	target.signal(syscall.SIGCONT)
	c.hist.undone(f)
	runs := target.runs
	if err := c.heal(f, "freeze leader"); err != nil {
		return err
	}
	if target.runs != runs || !target.running() {
		return fmt.Errorf("%s did not survive its freeze", target.name)
	}
	return nil
}

// partitionLeader drops every packet of the leader's link, measures the
// failover, and restores it.
func (c *chaosLab) partitionLeader() error {
	p, err := c.current()
	if err != nil {
		return err
	}
	target := c.byName(p.leader.Name)
	survivors := c.others(target)
	f := c.hist.fault("partition leader", target.name)
	t0 := c.hist.Faults[f].At
	target.host.dropAll()
	d, err := c.waitFor(detectTimeout, "partition: majority names a new leader", survivors, t0,
		newLeader(survivors, p.leader.Chevron, p.token, target.name))
	if err == nil {
		record(c.t, "partition leader: fault → majority names the same new leader", d, "≤5s")
		// The cut-off node must give the lease up and see itself alone.
		d, err = c.waitFor(detectTimeout, "partition: the isolated leader stops claiming", []*node{target}, t0,
			func(vs map[string]chaosView) error {
				v := vs[target.name]
				if v.err != nil {
					return v.err
				}
				if v.asView().selfLeader() {
					return fmt.Errorf("%s still claims the lease", target.name)
				}
				return nil
			})
		if err == nil {
			record(c.t, "partition leader: fault → the isolated node no longer claims", d, "")
		}
	}
	target.host.undrop()
	c.hist.undone(f)
	if err != nil {
		return err
	}
	return c.heal(f, "partition leader")
}

// killMetaLeader SIGKILLs the JetStream meta leader when it is not the
// lease holder (else it is logged and skipped: the leader's death is its
// own scenario).
func (c *chaosLab) killMetaLeader() error {
	p, err := c.current()
	if err != nil {
		return err
	}
	c.mu.Lock()
	meta := c.latest[c.nodes[0].name].st.MetaLeader
	c.mu.Unlock()
	var target *node
	for name, m := range p.members {
		if m.Server != "" && m.Server == meta {
			target = c.byName(name)
		}
	}
	if target == nil {
		return fmt.Errorf("meta leader %q is no member's server", meta)
	}
	if target.name == p.leader.Name {
		c.t.Logf("the meta leader %s is the lease holder: skipping (that is the SIGKILL leader scenario)", target.name)
		c.hist.note("SIGKILL meta leader skipped: the meta leader %s held the lease", target.name)
		return nil
	}
	c.metaKilled = true
	return c.killNode(target, "SIGKILL meta leader", p)
}

// rollingRestart stops every node in turn with SIGTERM (lame duck), starts
// it again on its data dir and waits until the swarm agrees and survives
// the loss of one again, followers first.
func (c *chaosLab) rollingRestart() error {
	p, err := c.current()
	if err != nil {
		return err
	}
	order := c.others(c.byName(p.leader.Name))
	order = append(order, c.byName(p.leader.Name))
	began := time.Now()
	for _, n := range order {
		f := c.hist.fault("rolling restart", n.name)
		n.signal(syscall.SIGTERM)
		ps := n.waitExit(exitTimeout)
		if ps.ExitCode() != 0 {
			c.t.Errorf("%s after SIGTERM: %s, want exit code 0", n.name, exitSummary(ps))
		}
		c.hist.undone(f)
		if err := c.restart(n); err != nil {
			return err
		}
		if err := c.heal(f, "rolling restart of "+n.name); err != nil {
			return err
		}
	}
	c.hist.mu.Lock()
	c.hist.Faults = append(c.hist.Faults, faultRec{Kind: "rolling restart (window)", Node: "", At: began,
		Undone: time.Now(), Healed: time.Now()})
	c.hist.mu.Unlock()
	record(c.t, "rolling restart: all three, SIGTERM → agree and survive loss after the last", time.Since(began), "")
	return nil
}

// diskFull fills h3's tmpfs data dir, holds it full under load for 10 s,
// frees it and checks the node heals without a restart.
func (c *chaosLab) diskFull() error {
	n := c.byName("h3")
	runs := n.runs
	f := c.hist.fault("disk full", n.name)
	fill := filepath.Join(c.tmpfs, "chaos-fill")
	written, err := fillDisk(fill)
	if err != nil {
		_ = os.Remove(fill)
		c.hist.undone(f)
		return fmt.Errorf("fill %s: %w", c.tmpfs, err)
	}
	c.t.Logf("disk full: wrote %d MiB to %s", written>>20, fill)
	t0 := time.Now()
	time.Sleep(time.Until(t0.Add(chaosFreeze))) // the disk stays full this long under load: a schedule
	c.mu.Lock()
	v := c.latest[n.name]
	c.mu.Unlock()
	c.t.Logf("disk full: %s's last probe: %v (err %v)", n.name, v.asView(), v.err)
	if err := os.Remove(fill); err != nil {
		return err
	}
	c.hist.undone(f)
	if !n.running() {
		return fmt.Errorf("%s did not survive its full disk (it exited: %s)", n.name, exitSummary(n.cmd.ProcessState))
	}
	if err := c.healWithin(f, "disk full", diskHealWait); err != nil {
		// It does not heal by itself (the checker reports it): the
		// operator's remedy, a restart, so the run can go on.
		c.t.Logf("disk full: %v", err)
		c.hist.note("disk full: %s did not heal without a restart: %v", n.name, err)
		g := c.hist.fault("restart after disk full", n.name)
		n.signal(syscall.SIGTERM)
		n.waitExit(exitTimeout)
		c.hist.undone(g)
		if err := c.restart(n); err != nil {
			return err
		}
		return c.heal(g, "restart after disk full")
	}
	if n.runs != runs {
		return fmt.Errorf("%s restarted during its full disk", n.name)
	}
	return nil
}

// fillDisk writes zeros to path until the file system is full and returns
// how many bytes it wrote.
func fillDisk(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// chaosFileSize is the file killed mid-transfer: big enough that a put
// takes a while on this machine, small enough for h3's tmpfs to hold its
// replica (every object is kept R3).
const chaosFileSize = 96 << 20

// fileKill kills a node during a `file` transfer, twice: the source in the
// middle of its put (no other node may then get a file, partial or not,
// under that name), and the destination in the middle of its get (after
// its restart the destination path holds nothing or the whole file, never
// part of it).
func (c *chaosLab) fileKill() error {
	p, err := c.current()
	if err != nil {
		return err
	}
	// Source and destination: neither the leader nor h3 (its tmpfs).
	var pair []*node
	for _, n := range c.nodes {
		if n.name != "h3" {
			pair = append(pair, n)
		}
	}
	src, dst := pair[0], pair[1]
	if src.name == p.leader.Name {
		src, dst = dst, src
	}
	// Each round its own object and file names: a soak repeats this.
	c.fileRound++
	obj := fmt.Sprintf("chaos-big-%d", c.fileRound)
	big, sum, err := writeRandom(filepath.Join(src.data, "files"), obj+".bin", chaosFileSize)
	if err != nil {
		return err
	}
	dstPath := filepath.Join(dst.data, "files", obj+".bin")
	if err := os.MkdirAll(filepath.Dir(dstPath), 0o755); err != nil {
		return err
	}

	// 1. The source dies during its put; the command is sent from dst.
	f := c.hist.fault("SIGKILL during file put (source)", src.name)
	put := c.fileCmd(dst, 8*time.Second, c.chev[src.name], "op=put", "name="+obj, "path="+big)
	killAfter(src, 700*time.Millisecond)
	res := <-put
	c.t.Logf("file put on %s killed mid-way: %s", src.name, res)
	if strings.Contains(res, ": ok") {
		c.hist.note("the put finished before its source was killed: the source-kill half is inconclusive")
		c.t.Logf("the put finished before %s was killed: inconclusive", src.name)
	}
	got := <-c.fileCmd(dst, 20*time.Second, c.chev[dst.name], "op=get", "name="+obj, "path="+dstPath, "sha256="+sum)
	c.t.Logf("file get on %s after the source died: %s", dst.name, got)
	if fi, err := os.Stat(dstPath); err == nil {
		data, _ := os.ReadFile(dstPath)
		if fileSum(data) != sum || fi.Size() != chaosFileSize {
			c.t.Errorf("after its source died mid-put, %s got a partial file at %s: %d bytes, sha256 %s (want %d bytes, %s)",
				dst.name, dstPath, fi.Size(), fileSum(data), chaosFileSize, sum)
		}
		_ = os.Remove(dstPath)
	}
	c.hist.undone(f)
	if err := c.restart(src); err != nil {
		return err
	}
	if err := c.heal(f, "SIGKILL during file put"); err != nil {
		return err
	}

	// 2. The destination dies during its get of a complete object.
	if r := <-c.fileCmd(src, 40*time.Second, c.chev[src.name], "op=put", "name="+obj, "path="+big); !strings.Contains(r, ": ok") {
		return fmt.Errorf("file put on %s: %s", src.name, r)
	}
	f = c.hist.fault("SIGKILL during file get (destination)", dst.name)
	get := c.fileCmd(src, 8*time.Second, c.chev[dst.name], "op=get", "name="+obj, "path="+dstPath, "sha256="+sum)
	killAfter(dst, 700*time.Millisecond)
	c.t.Logf("file get on %s killed mid-way: %s", dst.name, <-get)
	c.hist.undone(f)
	if err := c.restart(dst); err != nil {
		return err
	}
	if fi, err := os.Stat(dstPath); err == nil {
		data, _ := os.ReadFile(dstPath)
		if fileSum(data) != sum {
			c.t.Errorf("after %s died mid-get, %s holds %d bytes with sha256 %s (want all %d bytes, %s, or nothing)",
				dst.name, dstPath, fi.Size(), fileSum(data), chaosFileSize, sum)
		} else {
			c.t.Logf("the get finished before %s was killed", dst.name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dstPath), "."+obj+".bin.rn-*")); len(left) > 0 {
		c.t.Logf("after the killed get, its temporary file stays (not at the destination name): %v", left)
		c.hist.note("a get killed mid-way leaves its temporary file: %v", left)
	}
	return c.heal(f, "SIGKILL during file get")
}

// fileCmd runs `robonet run <target> file <args>` on n in the background
// and sends its output and error on the channel.
func (c *chaosLab) fileCmd(n *node, wait time.Duration, target string, args ...string) <-chan string {
	out := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait+20*time.Second)
		defer cancel()
		full := append([]string{"run", target, "file"}, args...)
		full = append(full, "--timeout", wait.String(), "--json", "--server", "nats://127.0.0.1:"+clientPort,
			"--data", n.data, "--nkey", c.seeds[c.observer()])
		b, err := n.host.exec(ctx, full...)
		var g gathered
		if json.Unmarshal(b, &g) == nil && len(g.Results) > 0 {
			var parts []string
			for _, r := range g.Results {
				parts = append(parts, fmt.Sprintf("%s: %s %s", r.Name, r.Status, r.Error))
			}
			out <- strings.Join(parts, "; ")
			return
		}
		out <- fmt.Sprintf("%s (err %v)", clip(b), err)
	}()
	return out
}

// killAfter SIGKILLs n after d: the fault lands while a transfer runs.
func killAfter(n *node, d time.Duration) {
	time.Sleep(d) // the fault's schedule, not a wait for a condition
	n.signal(syscall.SIGKILL)
	n.waitExit(10 * time.Second)
}

// writeRandom writes size random bytes to dir/name and returns the path
// and their sha256.
func writeRandom(dir, name string, size int) (string, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	for i := 0; i+8 <= len(data); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	path := filepath.Join(dir, name)
	return path, fileSum(data), os.WriteFile(path, data, 0o644)
}

func fileSum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}
