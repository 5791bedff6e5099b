package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/bench/internal/proc"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// What the binary shows the outside (spelled as bench/nodefigures does).
const (
	upMarker     = " up as chevron "
	operatorSeed = "operator.nk"
)

// child is one child process: a `robonet up` or a `sim` child.
type child struct {
	*proc.Child
	data   string // robonet data dir
	listen string // client address host:port
	route  string // cluster address, for core members
}

func (p *child) url() string { return "nats://" + p.listen }

// start starts a child in b's group; marker (a substring of an output
// line) makes it ready.
func (b *bench) start(label, bin string, args []string, marker string) (*child, error) {
	c, err := b.ps.Start(label, bin, args, marker)
	if err != nil {
		return nil, err
	}
	return &child{Child: c}, nil
}

// rssMiB reads VmRSS of pid in MiB.
func rssMiB(pid int) (float64, error) {
	b, err := proc.RSSBytes(pid)
	return proc.MiB(b), err
}

func loadAvg() string { return proc.FormatLoad(proc.LoadAvg()) }

// connect opens a client on url with the operator seed of dataDir (the
// founder's is an admin everywhere).
func connect(ctx context.Context, url, dataDir, name string) (*mesh.Client, error) {
	return mesh.Connect(ctx, mesh.Options{Server: url, SeedFile: filepath.Join(dataDir, operatorSeed), Name: name, Timeout: 5 * time.Second})
}

// formed waits until every member of c's view (asked at the connected
// server) is alive and there are n, and every alive member's server says
// the same; it returns the members' servers.
func formed(ctx context.Context, c *mesh.Client, n int, d time.Duration) (time.Time, []string, error) {
	var servers []string
	at, err := poll(ctx, d, 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		ms, err := nodesView(ctx, c, "")
		if err != nil {
			return false, err
		}
		if a := states(ms)[wire.StateAlive]; a != n {
			return false, fmt.Errorf("%d alive", a)
		}
		servers = servers[:0]
		for _, m := range ms {
			servers = append(servers, m.Server)
		}
		for _, srv := range servers {
			ms, err := nodesView(ctx, c, srv)
			if err != nil {
				return false, fmt.Errorf("%s: %w", srv, err)
			}
			if a := states(ms)[wire.StateAlive]; a != n {
				return false, fmt.Errorf("%s sees %d alive", srv, a)
			}
		}
		return true, nil
	})
	return at, servers, err
}

// nodesView asks the node c is connected to for rn.sys.nodes, signed as
// the CLI signs it, and decodes the answer without wire.MaxMessage (1 MiB),
// which mesh.Client.Nodes applies and a registry of a few thousand
// members exceeds. The reply's signature is not checked here.
//
// The query goes to server (the connected one when ""): one client signs
// every query of the bench, since signers of one key with chains of their
// own look like a fork (stale sequences) to the nodes.
func nodesView(ctx context.Context, c *mesh.Client, server string) ([]wire.Member, error) {
	nc := c.Conn()
	if server == "" {
		server = nc.ConnectedServerName()
	}
	subj := subjects.QueryAt(subjects.QueryNodes, server)
	m := &nats.Msg{Subject: subj, Reply: nc.NewInbox()}
	if err := c.Signer().SignMsg(m); err != nil {
		return nil, err
	}
	sub, err := nc.SubscribeSync(m.Reply)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishMsg(m); err != nil {
		return nil, err
	}
	r, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	var reply wire.Reply
	if err := json.Unmarshal(r.Data, &reply); err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	if reply.Error != nil {
		return nil, fmt.Errorf("%s: %w", subj, reply.Error)
	}
	var out []wire.Member
	if err := json.Unmarshal(reply.Data, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	return out, nil
}

// states counts members by state.
func states(ms []wire.Member) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		out[m.State]++
	}
	return out
}

// stateOf returns chev's state in ms ("" when not listed).
func stateOf(ms []wire.Member, chev string) string {
	for _, m := range ms {
		if m.Chevron == chev {
			return m.State
		}
	}
	return ""
}

// poll calls f every `every` until it returns true, an error past the
// deadline, or ctx ends. It returns when f returned true.
func poll(ctx context.Context, d, every time.Duration, f func(ctx context.Context) (bool, error)) (time.Time, error) {
	deadline := time.Now().Add(d)
	var last error
	for {
		// A view of 50,000 members takes the member seconds to build.
		qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		ok, err := f(qctx)
		cancel()
		if ok {
			return time.Now(), nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = errors.New("condition not met")
			}
			return time.Time{}, fmt.Errorf("after %v: %w", d, last)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(every):
		}
	}
}
