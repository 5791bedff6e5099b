package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// replyTally counts the replies one flooding client gets, per node.
type replyTally struct {
	mu     sync.Mutex
	byNode map[string]map[string]int // chevron → status/code → count
	odd    []string                  // replies that are neither ok nor the caller's own busy
}

func (r *replyTally) add(m *nats.Msg) {
	var res wire.Result
	if err := json.Unmarshal(m.Data, &res); err != nil {
		r.mu.Lock()
		r.odd = append(r.odd, string(m.Data))
		r.mu.Unlock()
		return
	}
	kind := res.Status
	if res.Error != nil {
		kind += "/" + res.Error.Code
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byNode[res.Chevron] == nil {
		r.byNode[res.Chevron] = map[string]int{}
	}
	r.byNode[res.Chevron][kind]++
	// Busy for this caller names its own quota or rate, never the node's
	// limit: the flood is bounded by what the flooder may take.
	ownBusy := res.Error != nil && res.Error.Code == wire.CodeUnavailable &&
		strings.Contains(res.Error.Msg, "busy for this caller") &&
		(strings.Contains(res.Error.Msg, "its quota is 32 at once") || strings.Contains(res.Error.Msg, "its rate of 50 commands/s (burst 100)"))
	if res.Status != wire.StatusOK && !ownBusy {
		r.odd = append(r.odd, fmt.Sprintf("%s: %s %+v", res.Chevron, res.Status, res.Error))
	}
}

// every reports whether each of chevs has at least one reply of kind.
func (r *replyTally) every(chevs []string, kind string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chevs {
		if r.byNode[c][kind] == 0 {
			return fmt.Errorf("node %s: no %s reply yet (%v)", c, kind, r.byNode[c])
		}
	}
	return nil
}

// An observer floods `gauge interval=5s` on rn.cmd.gauge, 100 a second,
// signed with its own key so every node admits it. Each node runs at most
// its quota of the observer's gauges (32) and answers the rest busy, naming
// the observer's own quota or rate, so an operator's `run all ping` meanwhile
// gets ok from every node, and a key no node knows gets denied from every
// node. Before the host was fair, the flood held all
// 256 slots of every node and everyone, admins included, got busy.
func TestObserverFloodLeavesOtherCallersServed(t *testing.T) {
	s := testmesh.Start(t, 3)
	s.WaitAlive(30 * time.Second)
	obs := s.User(0, "olga", wire.RoleObserver)
	op := s.User(1, "oscar", wire.RoleOperator)
	chevs := []string{s.Node(0).Chevron().String(), s.Node(1).Chevron().String(), s.Node(2).Chevron().String()}

	tally := &replyTally{byNode: map[string]map[string]int{}}
	inbox := obs.Conn().NewInbox()
	sub, err := obs.Conn().Subscribe(inbox, tally.add)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)

	ctx, stop := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	var sent int
	flood.Add(1)
	go func() {
		defer flood.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			body, _ := json.Marshal(wire.Request{Verb: "gauge", Args: json.RawMessage(`{"interval":"5s"}`), ID: fmt.Sprint("g", i), TimeoutMs: 10000})
			m := &nats.Msg{Subject: "rn.cmd.gauge", Reply: inbox, Data: body}
			if err := obs.Signer().SignMsg(m); err != nil {
				t.Error(err)
				return
			}
			if err := obs.Conn().PublishMsg(m); err != nil {
				t.Error(err)
				return
			}
			sent = i + 1
		}
	}()
	defer func() { stop(); flood.Wait() }()

	// The flood is on: every node has turned the observer away at least
	// once (with the shared slots of old, only once all 256 were taken).
	testmesh.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		return tally.every(chevs, wire.StatusError+"/"+wire.CodeUnavailable)
	})
	for i := 0; i < 5; i++ {
		res, err := op.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "ping", Timeout: 5 * time.Second}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Summary.OK != 3 || res.Summary.Total != 3 {
			t.Fatalf("run all ping during the flood, try %d: %s %+v", i+1, res.Summary.Line, res.Results)
		}
	}
	// A key no node knows is told so at once, flood or not: the refusal
	// needs no slot.
	stranger, _ := nkeys.CreateUser()
	ss, err := mesh.NewSigner(stranger, filepath.Join(t.TempDir(), "s"), 0)
	if err != nil {
		t.Fatal(err)
	}
	sres, err := strangerGather(t, s.Client(0), ss, 5*time.Second)
	if err != nil || sres.Summary.Denied != 3 {
		t.Fatalf("an unknown key during the flood: %s %+v %v", sres.Summary.Line, sres.Results, err)
	}
	// The observer was really admitted: its gauges run, and finish.
	testmesh.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		return tally.every(chevs, wire.StatusOK)
	})
	stop()
	flood.Wait()
	tally.mu.Lock()
	defer tally.mu.Unlock()
	if len(tally.odd) > 0 {
		t.Fatalf("%d replies to the observer other than ok or its own busy, e.g. %q", len(tally.odd), tally.odd[0])
	}
	t.Logf("observer sent %d gauges to the swarm; replies per node: %v", sent, tally.byNode)
}
