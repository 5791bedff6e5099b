package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// Lines a sim child prints on stdout for its parent.
const (
	simReadyLine = "sim ready"
	simRegLine   = "sim registered"
)

// simEdge is one simulated edge: its own node key, HCTH chain, registry
// entry, heartbeat and command host. It shares its NATS connection with
// other simulated edges of the same process (see runSim).
type simEdge struct {
	chev   subjects.Chevron
	name   string
	kp     nkeys.KeyPair
	pub    string
	signer *mesh.Signer
	nc     *nats.Conn
	host   *node.CommandHost
	seq    uint64
	start  time.Time
}

// runSim is the `sim` subcommand: it stands for edges -from … -to under
// chevron prefix -prefix, connected to the core's client ports -urls with
// the founder's operator key (-seed), -perconn edges per connection.
func runSim(args []string) int {
	fs := flag.NewFlagSet("sim", flag.ExitOnError)
	urls := fs.String("urls", "", "core client URLs, comma-separated")
	seed := fs.String("seed", "", "the founder's operator seed file")
	prefix := fs.String("prefix", "9000", "chevron prefix of the simulated edges")
	from := fs.Int("from", 1, "first edge number")
	to := fs.Int("to", 100, "last edge number")
	perConn := fs.Int("perconn", 100, "edges per NATS connection")
	hb := fs.Duration("hb", 5*time.Second, "heartbeat interval")
	dir := fs.String("dir", "", "directory for the edges' chain files")
	par := fs.Int("par", 64, "registrations in flight")
	rate := fs.Float64("rate", 0, "registrations per second (0: as fast as -par allows)")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := simMain(ctx, strings.Split(*urls, ","), *seed, *prefix, *from, *to, *perConn, *hb, *dir, *par, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "sim:", err)
		return 1
	}
	return 0
}

func simMain(ctx context.Context, urls []string, seed, prefix string, from, to, perConn int, hb time.Duration, dir string, par int, rate float64) error {
	if from > to || perConn < 1 || len(urls) == 0 {
		return fmt.Errorf("bad range %d..%d / perconn %d / urls %q", from, to, perConn, urls)
	}
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return err
	}
	// One connection per perConn edges, spread over the core members.
	n := to - from + 1
	var conns []*nats.Conn
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for i := 0; i < (n+perConn-1)/perConn; i++ {
		url := urls[i%len(urls)]
		// The operator key's chain file is this child's own: several
		// processes sharing one chain would fork it. These connections
		// never sign with it anyway (the edges sign with their own keys).
		c, err := mesh.Connect(ctx, mesh.Options{Server: url, SeedFile: seed, ChainFile: filepath.Join(dir, "operator.chain"),
			Name: fmt.Sprintf("scale-sim-%d-%d", from, i), Timeout: 10 * time.Second})
		if err != nil {
			return fmt.Errorf("connect %s: %w", url, err)
		}
		conns = append(conns, c.Conn())
	}
	edges := make([]*simEdge, n)
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	began := time.Now()
	var pace <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		pace = t.C
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		if pace != nil {
			<-pace
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			e, err := newSimEdge(ctx, conns[i/perConn], prefix, from+i, cat, dir)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			edges[i] = e
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, nc := range conns {
		if err := nc.Flush(); err != nil {
			return err
		}
	}
	fmt.Printf("%s %d in %.3f s\n", simRegLine, n, time.Since(began).Seconds())
	// Heartbeats: one loop for the process, each edge beating every hb
	// at its own phase (spread evenly), each with its own key and chain.
	go beatAll(ctx, edges, hb)
	fmt.Println(simReadyLine)
	<-ctx.Done()
	for _, e := range edges {
		e.host.Stop()
	}
	return nil
}

// newSimEdge makes a key and chain, registers the edge in rn_nodes as a
// node registers itself (a record signed by its own key, Create: first
// claim wins) and starts its command host.
func newSimEdge(ctx context.Context, nc *nats.Conn, prefix string, num int, cat *command.Catalogue, dir string) (*simEdge, error) {
	chev, err := subjects.Parse(fmt.Sprintf("%s.%d", prefix, num))
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := kp.PublicKey()
	signer, err := mesh.NewSigner(kp, filepath.Join(dir, chev.String()+".chain"), mesh.NodeChainBlock)
	if err != nil {
		return nil, err
	}
	e := &simEdge{chev: chev, name: "sim" + chev.String(), kp: kp, pub: pub, signer: signer, nc: nc, start: time.Now().UTC()}
	info := wire.NodeInfo{Chevron: chev.String(), Name: e.name, Pubkey: pub, Server: mesh.ServerName(pub),
		Caps: []string{}, Tags: map[string]string{"sim": "1"}, Version: node.Version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Started: e.start, Joined: "secret", Role: wire.NodeRoleEdge}
	rec, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	data, err := trust.SignRecord(kp, node.BucketNodes, chev.String(), rec)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var kv jetstream.KeyValue
		kv, err = js.KeyValue(cctx, node.BucketNodes)
		if err == nil {
			_, err = kv.Create(cctx, chev.String(), data)
		}
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) || attempt >= 3 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("register %s: %w", chev, err)
	}
	guard := simGuard{verify: trust.NewVerifier(0), signer: signer}
	if e.host, err = node.NewCommandHost(ctx, nc, chev, e.name, cat, guard, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// beatAll sends every edge's heartbeat once per interval, spread evenly
// over it, until ctx ends. The first round goes out at once.
func beatAll(ctx context.Context, edges []*simEdge, every time.Duration) {
	step := every / time.Duration(max(1, len(edges)))
	t := time.NewTicker(max(step, time.Millisecond))
	defer t.Stop()
	for _, e := range edges {
		e.beat(every)
	}
	per := max(1, int(time.Millisecond*time.Duration(len(edges))/every)) // edges per tick when step < 1 ms
	i := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range per {
			edges[i].beat(every)
			i = (i + 1) % len(edges)
		}
	}
}

func (e *simEdge) beat(every time.Duration) {
	e.seq++
	hb := wire.Heartbeat{Chevron: e.chev.String(), Name: e.name, Pubkey: e.pub, Server: mesh.ServerName(e.pub),
		Seq: e.seq, Sent: time.Now().UTC(), Started: e.start, Version: node.Version, Role: wire.NodeRoleEdge, EveryMs: every.Milliseconds()}
	data, _ := json.Marshal(hb)
	m := &nats.Msg{Subject: subjects.Event(e.chev, subjects.EvtHeartbeat), Data: data}
	if e.signer.SignMsg(m) == nil {
		_ = e.nc.PublishMsg(m)
	}
}

// simGuard is a simulated edge's trust layer: it verifies the requester's
// HCTH signature and signs replies with the edge's own key; it skips the
// node's ledger, role and tier checks (bench/federation's responders do
// the same).
type simGuard struct {
	verify *trust.Verifier
	signer *mesh.Signer
}

func (g simGuard) Admit(m *nats.Msg, _ *wire.Request, _ int, _ bool) node.Admission {
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return node.Admission{Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
	}
	if err := g.verify.Verify(h, m.Subject, m.Data); err != nil {
		return node.Admission{Claimed: h.From, Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
	}
	return node.Admission{From: h.From}
}

func (g simGuard) Approve(context.Context, *nats.Msg, wire.Request, string) *wire.Error {
	return &wire.Error{Code: wire.CodeDenied, Msg: "no approvals in the benchmark"}
}

func (g simGuard) Sign(m *nats.Msg) error { return g.signer.SignMsg(m) }

// waitLine reads sc until a line starting with prefix, and returns it.
func waitLine(sc *bufio.Scanner, prefix string) (string, error) {
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, prefix) {
			return l, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no " + prefix + " line before EOF")
}
