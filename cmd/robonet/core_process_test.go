package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// TestBinaryCoreAndEdges runs a core of 3 and two edges as real `robonet
// up` processes: nodes --json gives every node's role; a SIGKILLed edge is
// shown offline within 3 s (the core sees its leaf connection close);
// robonet core add promotes the other edge, which restarts in-process as a
// core member, and robonet core remove makes it an edge again.
func TestBinaryCoreAndEdges(t *testing.T) {
	routes := testmesh.ReservePorts(t, 3)
	join := strings.Join(routes, ",")
	secret, err := trust.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	var core []*proc
	for i := 0; i < 3; i++ {
		args := []string{"--cluster", routes[i], "--join", join, "--swarm", "proc", "--token", secret}
		if i == 0 {
			args = append(args, "--founder") // its operator key is the swarm's admin
		}
		core = append(core, startUp(t, filepath.Join(t.TempDir(), fmt.Sprint("core", i)), args...))
	}
	for _, p := range core {
		p.waitReady(t)
	}
	c0 := core[0]
	// Edge A asks to be one; edge B has a cluster address, so it could be
	// core, but the core is full: it joins as an edge and can be promoted.
	edgeA := startUp(t, filepath.Join(t.TempDir(), "edgeA"), "--edge", "--join", join, "--swarm", "proc", "--token", secret)
	edgeA.waitReady(t)
	edgeB := startUp(t, filepath.Join(t.TempDir(), "edgeB"), "--cluster", freeAddr(t), "--join", join, "--swarm", "proc", "--token", secret)
	edgeB.waitReady(t)
	for _, e := range []*proc{edgeA, edgeB} {
		if !strings.Contains(e.output(), "edge: a leaf node of the core") {
			t.Fatalf("an edge's banner does not say edge:\n%s", e.output())
		}
	}

	// Every node, asked from a core node and from an edge, with its role.
	keyA, keyB := dataDirNodeKey(edgeA.data), dataDirNodeKey(edgeB.data)
	roles := func(p *proc) (map[string]wire.Member, error) {
		out, errOut, code := cli(t, nil, "nodes", "--json", "--server", p.client, "--data", p.data)
		if code != 0 {
			return nil, fmt.Errorf("nodes: exit %d: %s", code, errOut)
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(out), &raw); err != nil {
			return nil, fmt.Errorf("nodes --json: %v: %q", err, out)
		}
		for _, r := range raw {
			if _, ok := r["role"]; !ok {
				return nil, fmt.Errorf("nodes --json: no role in %v", r)
			}
		}
		var ms []wire.Member
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			return nil, err
		}
		by := map[string]wire.Member{}
		for _, m := range ms {
			by[m.Pubkey] = m
		}
		return by, nil
	}
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		for _, p := range []*proc{c0, edgeB} {
			by, err := roles(p)
			if err != nil {
				return err
			}
			cores, edges := 0, 0
			for _, m := range by {
				if m.State != wire.StateAlive {
					return fmt.Errorf("%s is %s", m.Name, m.State)
				}
				switch m.Role {
				case wire.NodeRoleCore:
					cores++
				case wire.NodeRoleEdge:
					edges++
				}
			}
			if cores != 3 || edges != 2 || by[keyA].Role != wire.NodeRoleEdge || by[keyB].Role != wire.NodeRoleEdge {
				return fmt.Errorf("asked of %s: %d core, %d edge alive (want 3 and 2, the edges A and B)", p.data, cores, edges)
			}
		}
		return nil
	})
	out, _, code := cli(t, nil, "nodes", "--server", c0.client, "--data", c0.data)
	if code != 0 || !strings.Contains(out, "ROLE") || !strings.Contains(out, " edge ") || !strings.Contains(out, " core ") {
		t.Fatalf("nodes table:\n%s", out)
	}
	// status on an edge says so, with the core's size and its link.
	out, _, code = cli(t, nil, "status", "--server", edgeB.client, "--data", edgeB.data)
	if code != 0 || !strings.Contains(out, "role       edge") || !strings.Contains(out, "core       3/3 up") {
		t.Fatalf("status on an edge:\n%s", out)
	}

	// SIGKILL edge A: the core sees its leaf connection close.
	killed := time.Now()
	if err := edgeA.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var asked, seen time.Duration
	for asked == 0 {
		at := time.Since(killed)
		if at > 3*time.Second {
			t.Fatalf("edge A not shown offline by a query asked within 3 s of its SIGKILL")
		}
		by, err := roles(c0)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := by[keyA]; ok && m.State == wire.StateOffline {
			asked, seen = at, time.Since(killed)
		}
	}
	t.Logf("edge SIGKILLed: shown offline by a query asked %v after the kill (answered at %v)", asked.Round(time.Millisecond), seen.Round(time.Millisecond))

	// Promote edge B: refused while the core is full, then with room.
	admin := []string{"--server", c0.client, "--data", c0.data}
	_, errOut, code := cli(t, nil, append([]string{"core", "add", "--wait", "0", keyB}, admin...)...)
	if code == 0 || !strings.Contains(errOut, "the core is full: 3 of 3") || !strings.Contains(errOut, "--force") {
		t.Fatalf("core add to a full core: exit %d, %q", code, errOut)
	}
	if _, errOut, code := cli(t, nil, append([]string{"core", "size", "4"}, admin...)...); code != 0 {
		t.Fatalf("core size 4: exit %d: %s", code, errOut)
	}
	coreStatus := func(p *proc) (wire.CoreStatus, error) {
		var st wire.CoreStatus
		out, errOut, code := cli(t, nil, "core", "status", "--json", "--server", p.client, "--data", p.data)
		if code != 0 {
			return st, errors.New(errOut)
		}
		return st, json.Unmarshal([]byte(out), &st)
	}
	testmesh.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		st, err := coreStatus(edgeB) // the core's answer, through the edge
		if err != nil {
			return err
		}
		if st.Size != 4 || !st.Below || st.Live() != 3 {
			return fmt.Errorf("core status after core size 4: %+v", st)
		}
		return nil
	})
	began := time.Now()
	out, errOut, code = cli(t, nil, append([]string{"core", "add", keyB, "--wait", "90s"}, admin...)...)
	if code != 0 || !strings.Contains(out, "is a core member") {
		t.Fatalf("core add: exit %d, %q, %q", code, out, errOut)
	}
	t.Logf("edge promoted: core add returned after %v (restart, routes, JetStream)", time.Since(began).Round(100*time.Millisecond))
	// The registry can show the new role before the restarted process
	// prints its banner: poll for the line.
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(edgeB.output(), "restarted as core") {
			return fmt.Errorf("edge B did not say it restarted as core:\n%s", edgeB.output())
		}
		return nil
	})
	testmesh.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		st, err := coreStatus(c0)
		if err != nil {
			return err
		}
		if st.Size != 4 || st.Live() != 4 || st.Below || st.Above {
			return fmt.Errorf("core status %+v", st)
		}
		for _, m := range st.Members {
			if m.Pubkey == keyB && m.Up {
				return nil
			}
		}
		return fmt.Errorf("core status does not list edge B up: %+v", st)
	})
	by, err := roles(edgeB)
	if err != nil {
		t.Fatal(err)
	}
	if m := by[keyB]; m.Role != wire.NodeRoleCore || m.State != wire.StateAlive || node.MemberRole(m) != wire.NodeRoleCore {
		t.Fatalf("edge B after promotion: %+v", m)
	}

	// And back: core remove asks it itself; it restarts as an edge.
	out, errOut, code = cli(t, nil, append([]string{"core", "remove", keyB, "--wait", "90s"}, admin...)...)
	if code != 0 || !strings.Contains(out, "is an edge") {
		t.Fatalf("core remove: exit %d, %q, %q", code, out, errOut)
	}
	testmesh.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(edgeB.output(), "restarted as edge") {
			return errors.New("B has not said it restarted as an edge")
		}
		return nil
	})
	testmesh.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		st, err := coreStatus(c0)
		if err != nil {
			return err
		}
		if st.Size != 4 || st.Live() != 3 || !st.Below {
			return fmt.Errorf("core status after core remove: %+v", st)
		}
		return nil
	})
}
