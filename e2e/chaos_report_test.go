//go:build e2e

package e2e

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/subjects"
)

// The end of a chaos run: the recorder's files read into the history,
// the figures and the checker's verdict.

// finish stops the load and the recorder, reads the durable audit
// records, writes the history, computes the figures and runs the checker.
func (c *chaosLab) finish() {
	t := c.t
	for _, a := range c.loads {
		st := a.must(t, agentOp{Op: "unload", TimeoutMs: 5000}).Load
		t.Logf("load %s: %d sent, %d not sent (no connection or a publish error), %d replies, %d new connections after one closed",
			a.name, st.Sent, st.PubErrors, st.Replies, st.Reconnects)
	}
	// Audit records follow their replies: let the last ones arrive.
	settleAudits := time.Now().Add(2 * time.Second)
	for time.Now().Before(settleAudits) {
		time.Sleep(pollEvery) // a grace period, not a condition: records may still be on their way
	}
	c.watchTo = time.Now()
	for name, w := range c.watch {
		if o := w.do(t, agentOp{Op: "unrecord", Subject: "rn.*.evt.audit"}); o.Err != "" {
			t.Errorf("watcher %s: %s", name, o.Err)
		}
	}
	c.stopProbes()
	// The observer's key is the admin of its own node only: read the
	// durable records through that node's watcher.
	var reader *agent
	if n := c.byName(c.observer()); n.running() {
		reader = c.watch[n.name]
	}
	stored := filepath.Join(c.dir, "stored.jsonl")
	if reader != nil {
		o := reader.do(t, agentOp{Op: "audits", Subject: "rn." + c.chev["h1"] + ".evt." + subjects.EvtAudit,
			File: stored, TimeoutMs: 60000})
		if o.Err != "" {
			c.hist.note("durable audit records not read: %s", o.Err)
			t.Logf("durable audit records not read (the checker uses the live ones only): %s", o.Err)
		} else {
			c.hist.Stream = o.Stream
			t.Logf("read %d audit records from stream %s", o.Count, o.Stream)
		}
	}
	c.load()
	path := filepath.Join(c.lab.dir, "chaos-history.json")
	if err := c.hist.write(path); err != nil {
		t.Errorf("write history: %v", err)
	}
	t.Cleanup(func() { keepHistory(t, path) })
	c.figures()
	if n := unverifiable(c.hist); n > 0 {
		t.Logf("audit check: %d (command, node) pairs answered ok have no audit record, but no watcher was connected around them and no durable stream holds the records: not judged", n)
	}
	vs := check(c.hist)
	if len(vs) == 0 {
		t.Logf("chaos checker: no violation (%d commands, %d replies, %d views, %d faults, %d live and %d stored audit records)",
			len(c.hist.Sent), len(c.hist.Replies), len(c.hist.Views), len(c.hist.Faults), len(c.hist.Live), len(c.hist.Stored))
		return
	}
	counts := map[string]int{}
	for _, v := range vs {
		counts[v.Check]++
	}
	var b strings.Builder
	for i, v := range vs {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … %d more", len(vs)-20)
			break
		}
		fmt.Fprintf(&b, "\n  %v", v)
	}
	t.Errorf("chaos checker: %d violations %v; first: %v; history %s%s", len(vs), counts, vs[0], path, b.String())
}

// keepHistory copies the history where it outlives the test's temp dir
// when the test failed or E2E_LOG_DIR is set.
func keepHistory(t *testing.T, path string) {
	dir := os.Getenv("E2E_LOG_DIR")
	if dir == "" && !t.Failed() {
		return
	}
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("keep history: %v", err)
		return
	}
	dst := filepath.Join(dir, fmt.Sprintf("rn-chaos-%s-%d.json", strings.ReplaceAll(t.Name(), "/", "_"), os.Getpid()))
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.WriteFile(dst, data, 0o644)
	}
	if err != nil {
		t.Errorf("keep history: %v", err)
		return
	}
	t.Logf("chaos history kept: %s", dst)
}

// load reads the agents' files into the history.
func (c *chaosLab) load() {
	t := c.t
	for _, cl := range []string{"a", "b"} {
		err := readLines(filepath.Join(c.dir, "load-"+cl+".jsonl"), func(l loadLine) {
			switch l.K {
			case "s":
				c.hist.Sent = append(c.hist.Sent, sentCmd{ID: l.ID, Client: cl, At: l.At, Target: "rn.cmd.ping", Err: l.Err, Via: l.Via})
			case "r":
				c.hist.Replies = append(c.hist.Replies, replyRec{ID: l.ID, Client: cl, Chevron: l.Chevron, Status: l.Status, Code: l.Code, Msg: l.Msg, At: l.At})
			}
		})
		if err != nil {
			t.Errorf("load file %s: %v", cl, err)
		}
	}
	for _, n := range c.nodes {
		span := watchSpan{Watcher: n.name, From: c.watchFrom}
		up := true
		err := readLines(filepath.Join(c.dir, "live-"+n.name+".jsonl"), func(l auditLine) {
			switch {
			case l.K == "down" && up:
				span.To, up = l.At, false
				c.hist.Watched = append(c.hist.Watched, span)
			case l.K == "up" && !up:
				span.From, up = l.At, true
			case l.K == "":
				c.hist.Live = append(c.hist.Live, c.audit(l, n.name))
			}
		})
		if up {
			span.To = c.watchTo
			c.hist.Watched = append(c.hist.Watched, span)
		}
		if err != nil {
			t.Errorf("live audits of %s: %v", n.name, err)
		}
	}
	if err := readLines(filepath.Join(c.dir, "stored.jsonl"), func(l auditLine) {
		c.hist.Stored = append(c.hist.Stored, c.audit(l, ""))
	}); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stored audits: %v", err)
	}
}

func (c *chaosLab) audit(l auditLine, watcher string) chaosAudit {
	a := chaosAudit{ID: l.ID, MsgID: l.MsgID, Status: l.Status, Watcher: watcher, Seq: l.Seq, At: l.At}
	if chev, _, ok := subjects.ParseEvent(l.Subject); ok {
		a.Chevron = chev.String()
	}
	return a
}

// readLines decodes a file of JSON lines, calling each for every line.
func readLines[T any](path string, each func(T)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				return fmt.Errorf("%s: %v", path, jerr)
			}
			each(v)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// figures computes, per fault, the time from the fault to the first
// command answered ok by every node it did not touch, and the command
// errors of the whole run and of the rolling restart.
func (c *chaosLab) figures() {
	t, h := c.t, c.hist
	type cmdInfo struct {
		sent time.Time
		via  string               // the name of the node the client was connected to
		ok   map[string]time.Time // chevron → reply time
	}
	nodeAt := map[string]string{} // host ip → node name
	for _, n := range c.nodes {
		nodeAt[n.host.ip] = n.name
	}
	cmds := map[string]*cmdInfo{}
	var order []string
	for _, s := range h.Sent {
		k := s.Client + "/" + s.ID
		host, _, _ := net.SplitHostPort(s.Via)
		cmds[k] = &cmdInfo{sent: s.At, via: nodeAt[host], ok: map[string]time.Time{}}
		order = append(order, k)
	}
	slices.SortFunc(order, func(a, b string) int { return cmds[a].sent.Compare(cmds[b].sent) })
	for _, r := range h.Replies {
		if ci := cmds[r.Client+"/"+r.ID]; ci != nil && r.Status == "ok" {
			if _, seen := ci.ok[r.Chevron]; !seen {
				ci.ok[r.Chevron] = r.At
			}
		}
	}
	// firstAnswered is how long after f the first command sent after it
	// (by a client connected elsewhere than f's node, when elsewhere) was
	// answered ok by every node f did not touch; -1 if none was.
	firstAnswered := func(f faultRec, elsewhere bool) time.Duration {
		for _, k := range order {
			ci := cmds[k]
			if ci.sent.Before(f.At) || (elsewhere && (ci.via == "" || ci.via == f.Node)) {
				continue
			}
			var last time.Time
			all := true
			for name, chev := range h.Chevrons {
				if name == f.Node {
					continue
				}
				at, ok := ci.ok[chev]
				if !ok {
					all = false
					break
				}
				if at.After(last) {
					last = at
				}
			}
			if all {
				return last.Sub(f.At)
			}
		}
		return -1
	}
	for _, f := range h.Faults {
		if f.Node == "" {
			continue
		}
		if d := firstAnswered(f, true); d >= 0 {
			record(t, f.Kind+": fault → first command of a client on another node answered ok by all survivors", d, "")
		} else {
			t.Logf("%s of %s: no later command of a client on another node was answered ok by all survivors", f.Kind, f.Node)
		}
		if d := firstAnswered(f, false); d >= 0 {
			record(t, f.Kind+": fault → first command of any client answered ok by all survivors", d, "")
		}
	}
	c.leaderlessFigures()
	msgs := map[string]int{}
	for _, r := range h.Replies {
		if r.Status != "ok" {
			msgs[fmt.Sprintf("%s/%s from chevron %s: %s", r.Status, r.Code, r.Chevron, r.Msg)]++
		}
	}
	for m, n := range msgs {
		t.Logf("error replies: %d× %s", n, m)
	}
	sum := summarize(h)
	t.Logf("commands: %d sent (%d publish errors), %d ok replies, %d error replies %v",
		sum.sent, sum.pubErrors, sum.okReplies, sum.errReplies, sum.errByCode)
	for _, f := range h.Faults {
		if f.Kind != "rolling restart (window)" {
			continue
		}
		errs, pub, short := 0, 0, 0
		for _, s := range h.Sent {
			if s.At.Before(f.At) || s.At.After(f.Undone) {
				continue
			}
			if s.Err != "" {
				pub++
			}
			if len(cmds[s.Client+"/"+s.ID].ok) < len(h.Chevrons) {
				short++
			}
		}
		for _, r := range h.Replies {
			if ci := cmds[r.Client+"/"+r.ID]; ci != nil && !ci.sent.Before(f.At) && !ci.sent.After(f.Undone) && r.Status != "ok" {
				errs++
			}
		}
		t.Logf("rolling restart: %d error replies, %d publish errors, %d commands not answered ok by all three (a node was down for part of it)",
			errs, pub, short)
	}
}

// leaderlessFigures records, per fault, the longest stretch in which a
// node no fault touched showed no leader, from the fault until it healed
// (a fault that never healed: until the next one).
func (c *chaosLab) leaderlessFigures() {
	t, h := c.t, c.hist
	for i, f := range h.Faults {
		if f.Node == "" {
			continue
		}
		end := f.Healed
		if end.IsZero() && i+1 < len(h.Faults) {
			end = h.Faults[i+1].At
		}
		var worst time.Duration
		var worstNode string
		for name := range h.Chevrons {
			if name == f.Node {
				continue
			}
			var from time.Time
			for _, v := range h.Views {
				if v.Node != name || v.Start.Before(f.At) || v.Start.After(end) || v.Err != "" {
					continue
				}
				switch {
				case v.Leader == "" && from.IsZero():
					from = v.Start
				case v.Leader != "" && !from.IsZero():
					if d := v.Start.Sub(from); d > worst {
						worst, worstNode = d, name
					}
					from = time.Time{}
				}
			}
		}
		record(t, fmt.Sprintf("%s of %s: longest a survivor showed no leader (%s)", f.Kind, f.Node, cmp.Or(worstNode, "none")), worst, "")
	}
}
