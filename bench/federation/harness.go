package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/bench/internal/scope"
	"github.com/robonet-mesh/robonet/federation"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// check is testmesh.CheckFor: poll f until nil, fail after timeout.
func check(s *scope.Scope, timeout time.Duration, f func() error) {
	testmesh.CheckFor(s, timeout, 20*time.Millisecond, f)
}

// features are the federated features beside one node, started as
// cmd/robonet starts them (startFederation, startFedCommands): the
// directory on its own feature connection, the ambassador, and on a hub's
// nodes the authority publisher that hands the hub's users down.
type features struct {
	node *node.Node
	dir  *federation.Directory
	amb  *federation.Ambassador
}

// startFeatures starts the features beside every running node of sw and
// registers their shutdown (which runs before the nodes', cleanups being
// last-first).
func startFeatures(s *scope.Scope, sw *testmesh.Swarm, log *slog.Logger) []*features {
	var out []*features
	for _, nd := range sw.Live() {
		f, stop, err := startNodeFeatures(nd, log)
		s.Cleanup(stop)
		if err != nil {
			s.Fatalf("features of %s: %v", nd.Chevron(), err)
		}
		out = append(out, f)
	}
	return out
}

func startNodeFeatures(nd *node.Node, log *slog.Logger) (*features, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stops []func()
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	shut := func(f func(context.Context) error) func() {
		return func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = f(sctx)
		}
	}
	fc, err := nd.FeatureConn("directory")
	if err != nil {
		return nil, stop, err
	}
	stops = append(stops, fc.Close)
	d, err := federation.NewDirectory(federation.DirectoryOptions{
		Conn: fc, Signer: nd.Signer(), Local: nd, Prefix: nd.SwarmPrefix().String(),
		Parent: nd.ParentPrefix, Hub: nd.IsHub(), Links: func() []federation.Link { return leafLinks(nd) },
		Logger: log.With("feature", "directory"),
	})
	if err == nil {
		err = d.Start(ctx)
	}
	if err != nil {
		return nil, stop, fmt.Errorf("directory: %w", err)
	}
	stops = append(stops, shut(d.Shutdown))
	amb, err := federation.NewAmbassador(federation.AmbassadorOptions{Node: nd, Logger: log})
	if err == nil {
		err = amb.Start(ctx)
	}
	if err != nil {
		return nil, stop, fmt.Errorf("ambassador: %w", err)
	}
	stops = append(stops, shut(amb.Shutdown))
	if nd.IsHub() {
		pub, err := federation.NewAuthority(federation.AuthorityOptions{Node: nd, Logger: log})
		if err == nil {
			err = pub.Start(ctx)
		}
		if err != nil {
			return nil, stop, fmt.Errorf("authority: %w", err)
		}
		stops = append(stops, shut(pub.Shutdown))
	}
	return &features{node: nd, dir: d, amb: amb}, stop, nil
}

// leafLinks is cmd/robonet's: the node's leaf connections as the
// directory reports them.
func leafLinks(n *node.Node) []federation.Link {
	var out []federation.Link
	for _, l := range n.LeafLinks() {
		out = append(out, federation.Link{Swarm: l.Swarm, Server: l.Server, Domain: l.Domain, Up: l.Up, Outbound: l.Outbound,
			RTTMs: float64(l.RTT.Microseconds()) / 1000, Since: l.Since, InMsgs: l.InMsgs, OutMsgs: l.OutMsgs})
	}
	return out
}

// waitServing waits until every ambassador of fs is in its swarm's queue
// group.
func waitServing(s *scope.Scope, fs []*features) {
	check(s, 30*time.Second, func() error {
		for _, f := range fs {
			if !f.amb.Serving() {
				return fmt.Errorf("the ambassador of %s does not serve yet", f.node.Chevron())
			}
		}
		return nil
	})
}

// waitHears waits until the directory beside f shows every swarm of
// prefixes with its link up.
func waitHears(s *scope.Scope, f *features, prefixes ...string) {
	check(s, 30*time.Second, func() error {
		for _, p := range prefixes {
			st, ok := f.dir.Swarm(p)
			if !ok || st.Link != federation.LinkUp {
				return fmt.Errorf("the directory of %s shows %s as %q (known %v)", f.node.Chevron(), p, st.Link, ok)
			}
		}
		return nil
	})
}

// hubUser adds an admin user to hub (through its founder, node 0), waits
// until every node of every swarm in below knows the key (the authority
// hands it down), and connects it to at: a requester of the hub's that
// works from any swarm below it. Each user has its own key and chain file,
// so two requesters never share a chain.
func hubUser(s *scope.Scope, hub *testmesh.Swarm, name string, at *node.Node, below ...*testmesh.Swarm) *mesh.Client {
	kp, err := nkeys.CreateUser()
	if err != nil {
		s.Fatalf("user %s: %v", name, err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	path := filepath.Join(s.TempDir(), name+".nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		s.Fatalf("user %s: %v", name, err)
	}
	admin := hub.Client(0)
	// Right after a hub starts, its JetStream may not answer yet: try
	// again, and take "exists" after a try that wrote the record but
	// did not see every node apply it (the wait below covers that).
	tried := false
	check(s, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ids, err := admin.Identities(ctx)
		if err != nil {
			return fmt.Errorf("the hub's identities: %w", err)
		}
		_, err = ids.AddUser(ctx, name, "admin", pub, "", time.Now())
		var partial *mesh.NotEverywhereError
		if err == nil || errors.As(err, &partial) || (tried && strings.Contains(err.Error(), "exists")) {
			return nil
		}
		tried = true
		return fmt.Errorf("add user %s: %w", name, err)
	})
	check(s, 30*time.Second, func() error {
		for _, sw := range append([]*testmesh.Swarm{hub}, below...) {
			for _, nd := range sw.Live() {
				if r, ok := nd.RoleOf(pub); !ok || r != "admin" {
					return fmt.Errorf("node %s does not know user %s yet", nd.Chevron(), name)
				}
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := mesh.Connect(ctx, mesh.Options{Server: at.ClientURL(), SeedFile: path})
	if err != nil {
		s.Fatalf("connect user %s to %s: %v", name, at.Chevron(), err)
	}
	s.Cleanup(c.Close)
	return c
}

// delayProxy forwards every connection it accepts to target, each chunk
// held for delay in each direction (a round trip takes 2×delay more),
// without limiting throughput: chunks are timestamped as they are read and
// written once their time has come (bench/colonize's proxy, closable).
type delayProxy struct {
	ln    net.Listener
	delay time.Duration

	mu    sync.Mutex // guards conns
	conns []net.Conn
	wg    sync.WaitGroup
}

func startDelayProxy(s *scope.Scope, target string, delay time.Duration) *delayProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Fatal(err)
	}
	p := &delayProxy{ln: ln, delay: delay}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go p.copy(out, in)
			go p.copy(in, out)
		}
	}()
	s.Cleanup(p.close)
	return p
}

func (p *delayProxy) addr() string { return p.ln.Addr().String() }

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

type chunk struct {
	at   time.Time
	data []byte
}

func (p *delayProxy) copy(dst, src net.Conn) {
	defer p.wg.Done()
	q := make(chan chunk, 4096)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{at: time.Now().Add(p.delay), data: buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	for range q { // let the reader end
	}
}

// leafTargets are the addresses children dial for hub: its nodes' leaf
// listeners, each behind a delay proxy of rtt/2 each way when rtt > 0.
func leafTargets(s *scope.Scope, hub *testmesh.Swarm, rtt time.Duration) []string {
	addrs := hub.LeafAddrs()
	if rtt <= 0 {
		return addrs
	}
	var out []string
	for _, a := range addrs {
		out = append(out, startDelayProxy(s, a, rtt/2).addr())
	}
	return out
}

// startChild starts a child swarm of n nodes under prefix whose nodes dial
// parents, admitted with a fresh token of hub's, and waits until every node
// is linked.
func startChild(s *scope.Scope, hub *testmesh.Swarm, parents []string, n int, prefix string, opts ...testmesh.Option) *testmesh.Swarm {
	tok := hub.FederationToken(15*time.Minute, prefix)
	sw := testmesh.StartSwarm(s, n, prefix, append([]testmesh.Option{testmesh.WithFederate(parents, tok)}, opts...)...)
	sw.WaitLinked(60 * time.Second)
	return sw
}
