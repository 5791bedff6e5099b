// Command gather prints scatter/gather figures: the time for `ping` to be
// gathered from 100, 1,000 and 10,000 responders, with HCTH off and on,
// against a bare nats.go request-to-many baseline in the same run (so the
// figures are ratios), and the commands per second one node's command host
// sustains.
//
// With HCTH on, the client signs the command and verifies every reply's
// signature (in parallel, as replies arrive), and each responder verifies
// the command's signature and signs its reply with its own key, as a node
// does (a node also runs the command through its ledger, about 1 µs more).
//
// Responders are real node.CommandHost instances (the handler path a node
// runs: decode, catalogue validation, run, reply, audit event) on one
// embedded nats-server, spread over in-process connections; the gatherer is
// mesh.Client.GatherSet with a resolved set, so the registry query is not
// part of the figure.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

func main() {
	sizes := flag.String("n", "100,1000,10000", "responder counts")
	runs := flag.Int("runs", 15, "gathers per size (each alternated with a bare one)")
	perConn := flag.Int("per-conn", 100, "responders per NATS connection")
	cps := flag.Duration("cps", 3*time.Second, "how long to measure commands per second (0: skip)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gather:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(*sizes, *runs, *perConn, *cps); err != nil {
		fmt.Fprintln(os.Stderr, "gather:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(sizes string, runs, perConn int, cps time.Duration) error {
	srv, err := server.NewServer(&server.Options{DontListen: true, NoSigs: true, MaxPayload: node.MaxPayload})
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(5 * time.Second) {
		return fmt.Errorf("server not ready")
	}
	conn := func() (*nats.Conn, error) { return nats.Connect("", nats.InProcessServer(srv)) }
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return err
	}
	fmt.Printf("gather ping, %d runs per size, GOMAXPROCS %d, %s\n", runs, runtime.GOMAXPROCS(0), time.Now().Format(time.RFC3339))
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "responders\tbare p50\tHCTH off p50\tp99\tHCTH on p50\tp99\ton/off (p50)\toff/bare\ton/bare\tall answered")
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 60000 {
			return fmt.Errorf("-n %q: want 1..60000", f)
		}
		row, err := measure(conn, cat, n, runs, perConn)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, row)
		tw.Flush()
	}
	if cps > 0 {
		return commandsPerSecond(conn, cat, cps)
	}
	return nil
}

func measure(conn func() (*nats.Conn, error), cat *command.Catalogue, n, runs, perConn int) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var hosts []*node.CommandHost
	var members, signedMembers []wire.Member
	verifier := trust.NewVerifier(0) // shared by the responders: one key, cached once
	var cur *nats.Conn
	for i := 0; i < n; i++ {
		if i%perConn == 0 {
			c, err := conn()
			if err != nil {
				return "", err
			}
			conns = append(conns, c)
			cur = c
		}
		flat, _ := subjects.Flat(uint16(i + 1))
		chev, _ := subjects.New(8, uint16(i+1)) // HCTH off under zone 8, on under zone 9
		h, err := node.NewCommandHost(ctx, cur, chev, "b"+chev.String(), cat, nil, nil)
		if err != nil {
			return "", err
		}
		hosts = append(hosts, h)
		members = append(members, wire.Member{Chevron: chev.String(), Name: "b" + chev.String(), State: wire.StateAlive})
		// The same responder with HCTH, under another swarm root's prefix:
		// its own key, verifying commands and signing replies.
		kp, err := nkeys.CreateUser()
		if err != nil {
			return "", err
		}
		chain, err := trust.NewChain(kp, trust.ChainState{})
		if err != nil {
			return "", err
		}
		pub, _ := kp.PublicKey()
		schev, _ := subjects.New(9, flat.Tokens()[0])
		sh, err := node.NewCommandHost(ctx, cur, schev, "s"+schev.String(), cat, benchGuard{verifier, chain}, nil)
		if err != nil {
			return "", err
		}
		hosts = append(hosts, sh)
		signedMembers = append(signedMembers, wire.Member{Chevron: schev.String(), Name: "s" + schev.String(), State: wire.StateAlive, Pubkey: pub})
		// The bare baseline's responders: a plain subscription answering at once.
		if _, err := cur.Subscribe("bare.ping", func(m *nats.Msg) { _ = m.Respond([]byte(`{"pong":true}`)) }); err != nil {
			return "", err
		}
	}
	defer func() {
		for _, h := range hosts {
			h.Stop()
		}
	}()
	for _, c := range conns {
		if err := c.Flush(); err != nil {
			return "", err
		}
	}
	cnc, err := conn()
	if err != nil {
		return "", err
	}
	defer cnc.Close()
	client := mesh.NewClient(cnc)
	dir, err := os.MkdirTemp("", "gather-bench")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	ckp, _ := nkeys.CreateUser()
	signer, err := mesh.NewSigner(ckp, dir+"/chain", mesh.NodeChainBlock)
	if err != nil {
		return "", err
	}
	signedClient := mesh.NewClient(cnc).WithSigner(signer).WithVerify()
	sel, _ := subjects.ParseSelector("8")
	signedSel, _ := subjects.ParseSelector("9")
	var off, on, bare []time.Duration
	complete := true
	gather := func(c *mesh.Client, sel subjects.Selector, set []wire.Member) (time.Duration, error) {
		t0 := time.Now()
		res, err := c.GatherSet(ctx, mesh.GatherRequest{Selector: sel.String(), Verb: "ping", Timeout: 30 * time.Second}, sel, set, nil)
		d := time.Since(t0)
		if err != nil {
			return d, err
		}
		if res.Summary.OK != n {
			complete = false
		}
		return d, nil
	}
	for r := 0; r < runs+1; r++ {
		d, err := gather(client, sel, members)
		if err != nil {
			return "", err
		}
		ds, err := gather(signedClient, signedSel, signedMembers)
		if err != nil {
			return "", err
		}
		b, ok, err := bareGather(cnc, n)
		if err != nil {
			return "", err
		}
		complete = complete && ok
		if r == 0 {
			continue // warm-up
		}
		off, on, bare = append(off, d), append(on, ds), append(bare, b)
	}
	bp50 := pct(bare, 0.5)
	fp50, fp99 := pct(off, 0.5), pct(off, 0.99)
	np50, np99 := pct(on, 0.5), pct(on, 0.99)
	return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%s\t%.2fx\t%.2fx\t%.2fx\t%v", n, ms(bp50), ms(fp50), ms(fp99), ms(np50), ms(np99),
		float64(np50)/float64(fp50), float64(fp50)/float64(bp50), float64(np50)/float64(bp50), complete), nil
}

// benchGuard is what a node's guard costs per command: verify the
// command's signature, sign the reply.
type benchGuard struct {
	v     *trust.Verifier
	chain *trust.Chain
}

func (g benchGuard) Admit(m *nats.Msg, _ *wire.Request, _ int, _ bool) node.Admission {
	h, err := mesh.ParseSigned(m)
	if err == nil {
		err = g.v.Verify(h, m.Subject, m.Data)
	}
	if err != nil {
		return node.Admission{Claimed: h.From, Deny: &wire.Error{Code: wire.CodeDenied, Msg: err.Error()}}
	}
	return node.Admission{From: h.From}
}

// Approve is never reached: ping is not dangerous.
func (g benchGuard) Approve(context.Context, *nats.Msg, wire.Request, string) *wire.Error {
	return &wire.Error{Code: wire.CodeDenied, Msg: "no approvals in the benchmark"}
}

func (g benchGuard) Sign(m *nats.Msg) error {
	h, err := g.chain.Sign(m.Subject, m.Data)
	if err != nil {
		return err
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	h.SetInto(m.Header)
	return nil
}

// bareGather is the baseline: one publish, n plain responders, wait for n replies.
func bareGather(nc *nats.Conn, n int) (time.Duration, bool, error) {
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, n+16)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return 0, false, err
	}
	defer sub.Unsubscribe()
	_ = sub.SetPendingLimits(-1, -1)
	t0 := time.Now()
	if err := nc.PublishRequest("bare.ping", inbox, []byte(`{}`)); err != nil {
		return 0, false, err
	}
	timeout := time.After(30 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case m := <-ch:
			var v map[string]any
			_ = json.Unmarshal(m.Data, &v) // a client looks at what it gathers
		case <-timeout:
			return time.Since(t0), false, nil
		}
	}
	return time.Since(t0), true, nil
}

// commandsPerSecond drives one command host with concurrent pings.
func commandsPerSecond(conn func() (*nats.Conn, error), cat *command.Catalogue, dur time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hnc, err := conn()
	if err != nil {
		return err
	}
	defer hnc.Close()
	chev, _ := subjects.Flat(1)
	h, err := node.NewCommandHost(ctx, hnc, chev, "rn1", cat, nil, nil)
	if err != nil {
		return err
	}
	defer h.Stop()
	cnc, err := conn()
	if err != nil {
		return err
	}
	defer cnc.Close()
	body, _ := json.Marshal(wire.Request{Verb: "ping", ID: "bench"})
	for _, workers := range []int{1, 16, 64} {
		var done, failed atomic.Int64
		deadline := time.Now().Add(dur)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					m, err := cnc.Request("rn.1.cmd.ping", body, 5*time.Second)
					var res wire.Result
					if err != nil || json.Unmarshal(m.Data, &res) != nil || res.Status != wire.StatusOK {
						failed.Add(1)
						continue
					}
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		fmt.Printf("one node, ping, %2d concurrent requesters: %8.0f commands/s (%d failed)\n",
			workers, float64(done.Load())/dur.Seconds(), failed.Load())
	}
	return nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
