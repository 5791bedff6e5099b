package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

func gather(t *testing.T, c *mesh.Client, sel, verb string, args string) mesh.GatherResult {
	t.Helper()
	var raw json.RawMessage
	if args != "" {
		raw = json.RawMessage(args)
	}
	res, err := c.Gather(context.Background(), mesh.GatherRequest{Selector: sel, Verb: verb, Args: raw, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("gather %s %s: %v", sel, verb, err)
	}
	return res
}

func statuses(res mesh.GatherResult) map[string]string {
	out := map[string]string{}
	for _, r := range res.Results {
		out[r.Chevron] = r.Status
	}
	return out
}

func TestGatherAcrossASwarm(t *testing.T) {
	s := testmesh.Start(t, 3,
		testmesh.WithChevrons("3.12.1", "3.12.2", "3.13.1"),
		testmesh.WithCaps([]string{"ai", "gpu"}, []string{"ai"}, nil),
		func(i int, o *node.Options) { o.ExecAllow = []string{"echo"} })
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)

	// A whole prefix: one publish, both nodes under it answer.
	res := gather(t, c, "3.12", "ping", "")
	if got := statuses(res); len(got) != 2 || got["3.12.1"] != "ok" || got["3.12.2"] != "ok" || !res.OK() {
		t.Fatalf("3.12 ping = %v (%s)", got, res.Summary.Line)
	}
	// Capability selectors.
	if got := statuses(gather(t, c, "caps=ai", "caps", "")); len(got) != 2 || got["3.13.1"] != "" {
		t.Fatalf("caps=ai = %v", got)
	}
	if got := statuses(gather(t, c, "caps=gpu,ai", "ping", "")); len(got) != 1 || got["3.12.1"] != "ok" {
		t.Fatalf("caps=gpu,ai = %v", got)
	}
	// A name.
	if got := statuses(gather(t, c, s.Node(2).Name(), "ping", "")); len(got) != 1 || got["3.13.1"] != "ok" {
		t.Fatalf("by name = %v", got)
	}
	// exec: allow-listed runs, anything else is denied.
	res = gather(t, c, "all", "exec", `{"argv":["echo","hello"]}`)
	for _, r := range res.Results {
		if r.Status != "ok" || r.Text == "" {
			t.Fatalf("exec echo on %s: %+v", r.Chevron, r)
		}
	}
	res = gather(t, c, "all", "exec", `{"argv":["rm","-rf","/nonexistent"]}`)
	if res.Summary.Denied != 3 {
		t.Fatalf("dangerous exec: %s", res.Summary.Line)
	}
	// Bad arguments: a clear error from every node, which keeps serving.
	res = gather(t, c, "all", "gauge", `{"metric":"gpu"}`)
	if res.Summary.Error != 3 || res.Results[0].Code == "" {
		t.Fatalf("bad args: %+v", res.Results)
	}
	if !gather(t, c, "all", "ping", "").OK() {
		t.Fatal("nodes stopped serving after bad input")
	}
	// Nothing matched: the error names the selector.
	_, err := c.Gather(context.Background(), mesh.GatherRequest{Selector: "caps=tpu", Verb: "ping"}, nil)
	if !errors.Is(err, mesh.ErrNoMatch) {
		t.Fatalf("caps=tpu: %v", err)
	}
	// Batching and limits.
	res, err = c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Batch: 1, Timeout: 5 * time.Second}, nil)
	if err != nil || !res.OK() || res.Summary.Total != 3 {
		t.Fatalf("batch 1: %v %s", err, res.Summary.Line)
	}
	res, err = c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Limit: 2, Timeout: 5 * time.Second}, nil)
	if err != nil || res.Summary.Total != 2 {
		t.Fatalf("limit 2: %v %s", err, res.Summary.Line)
	}
}

func TestGatherReportsKilledNodeAsOfflineOrTimeout(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	victim := s.Node(2).Chevron().String()
	// Kill a node while a long command runs on it: its slot must end as
	// timeout or offline, never hang past the timeout.
	s.Node(2) // keep a reference for the chevron only
	done := make(chan mesh.GatherResult, 1)
	go func() {
		res, _ := c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "gauge",
			Args: json.RawMessage(`{"metric":"cpu","interval":"2s"}`), Timeout: 4 * time.Second}, nil)
		done <- res
	}()
	s.Kill(2)
	var res mesh.GatherResult
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("gather hung")
	}
	if st := statuses(res)[victim]; st != mesh.StatusTimeout && st != mesh.StatusOffline {
		t.Fatalf("killed node status %q (%s)", st, res.Summary.Line)
	}
	// Once the registry knows, the node is reported offline without a wait.
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		res := gather(t, c, "all", "ping", "")
		if st := statuses(res)[victim]; st != mesh.StatusOffline {
			return errors.New("victim is " + st)
		}
		return nil
	})
}

// file and config go through the swarm's buckets: what one node stores,
// another reads; every verb runs for real on every node.
func TestEveryVerbAcrossNodes(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	for _, verb := range []string{"ping", "info", "caps", "status", "gauge", "scan"} {
		res := gather(t, c, "all", verb, "")
		if !res.OK() {
			t.Errorf("%s: %s %+v", verb, res.Summary.Line, res.Results)
		}
	}
	// config: set through node 1, read on node 3.
	one, three := s.Node(0).Chevron().String(), s.Node(2).Chevron().String()
	if res := gather(t, c, one, "config", `{"op":"set","key":"site.motd","value":"hello swarm"}`); !res.OK() {
		t.Fatalf("config set: %+v", res.Results)
	}
	res := gather(t, c, three, "config", `{"op":"get","key":"site.motd"}`)
	if !res.OK() || !json.Valid(res.Results[0].Output) || !bytesContain(res.Results[0].Output, "hello swarm") {
		t.Fatalf("config get on another node: %+v", res.Results)
	}
	// file: put from node 1's disk, get onto node 3's disk, checksums kept.
	src := filepath.Join(s.Node(0).FileRoots()[0], "src.txt")
	if err := os.WriteFile(src, []byte("payload for the swarm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	put := gather(t, c, one, "file", fmt.Sprintf(`{"op":"put","name":"motd.txt","path":%q}`, src))
	if !put.OK() {
		t.Fatalf("file put: %+v", put.Results)
	}
	dst := filepath.Join(s.Node(2).FileRoots()[0], "dst.txt")
	get := gather(t, c, three, "file", fmt.Sprintf(`{"op":"get","name":"motd.txt","path":%q}`, dst))
	if !get.OK() {
		t.Fatalf("file get: %+v", get.Results)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "payload for the swarm\n" {
		t.Fatalf("fetched %q, %v", b, err)
	}
	var pr, gr struct {
		SHA256 string `json:"sha256"`
	}
	_ = json.Unmarshal(put.Results[0].Output, &pr)
	_ = json.Unmarshal(get.Results[0].Output, &gr)
	if pr.SHA256 == "" || pr.SHA256 != gr.SHA256 {
		t.Fatalf("checksums: put %q get %q", pr.SHA256, gr.SHA256)
	}
	// An unknown file: a clear error, not a hang.
	res = gather(t, c, three, "file", fmt.Sprintf(`{"op":"get","name":"nope.txt","path":%q}`, filepath.Join(s.Node(2).FileRoots()[0], "x")))
	if res.Summary.Error != 1 || res.Results[0].Code != "not_found" {
		t.Fatalf("missing file: %+v", res.Results)
	}
}

func bytesContain(b []byte, s string) bool { return strings.Contains(string(b), s) }

// TestFileCannotReachTheDataDir is the attack of issue 9 on real nodes: put
// a node's operator seed into the store from one node, write over another
// node's seed. Both are refused naming the file roots; the seeds stay.
func TestFileCannotReachTheDataDir(t *testing.T) {
	s := testmesh.Start(t, 2)
	s.WaitAlive(20 * time.Second)
	c := s.Client(0)
	one, two := s.Node(0), s.Node(1)
	for _, seed := range []string{"operator.nk", "node.nk", "swarm.secret"} {
		path := filepath.Join(one.DataDir(), seed)
		res := gather(t, c, one.Chevron().String(), "file", fmt.Sprintf(`{"op":"put","name":"loot","path":%q}`, path))
		if res.Summary.Error != 1 || res.Results[0].Code != "bad_request" || !strings.Contains(res.Results[0].Error, one.FileRoots()[0]) {
			t.Errorf("put %s: %+v", seed, res.Results)
		}
	}
	// Something legitimate is in the store, and cannot land on a seed.
	src := filepath.Join(one.FileRoots()[0], "motd")
	if err := os.WriteFile(src, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := gather(t, c, one.Chevron().String(), "file", fmt.Sprintf(`{"op":"put","name":"motd","path":%q}`, src)); !res.OK() {
		t.Fatalf("legitimate put: %+v", res.Results)
	}
	target := filepath.Join(two.DataDir(), "operator.nk")
	before, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	res := gather(t, c, two.Chevron().String(), "file", fmt.Sprintf(`{"op":"get","name":"motd","path":%q,"overwrite":true}`, target))
	if res.Summary.Error != 1 || res.Results[0].Code != "bad_request" {
		t.Errorf("get over a seed: %+v", res.Results)
	}
	if after, _ := os.ReadFile(target); string(after) != string(before) {
		t.Error("the operator seed was overwritten")
	}
}
