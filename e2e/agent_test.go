//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// The agent is the suite's own test binary re-executed inside a host's
// namespace (like the fake servers) when agentSeedEnv names an nkey seed
// file. It connects to the node there (nats://127.0.0.1:4222, the loopback
// client port) as that key and does what the test asks, one JSON line per
// request on stdin, answering one JSON line per request on stdout, and
// streaming what it subscribed to as event lines. It is how the trust
// scenarios watch audit, alert and trust events and produce what no CLI
// command sends: unsigned, forged, tampered and replayed commands, a clone's
// forked heartbeat, a flood of properly signed commands.
const (
	agentSeedEnv = "RN_E2E_AGENT_SEED"
	// agentNodeEnv is the public key of the node the agent connects to:
	// its client port serves TLS with a certificate for that key.
	agentNodeEnv = "RN_E2E_AGENT_NODE"
	// agentServerEnv, when set, is the NATS URL list the agent connects to
	// instead of the loopback client port (the chaos clients connect to
	// every node from a host of their own); agentNodeEnv then lists every
	// node's key, comma-separated.
	agentServerEnv = "RN_E2E_AGENT_SERVER"
)

// agentOp is one request to an agent.
type agentOp struct {
	ID int    `json:"id"`
	Op string `json:"op"` // sub, unsub, send, count, flood, stop, fork, kv, leaders, stream

	Subject string              `json:"subject,omitempty"`
	Data    []byte              `json:"data,omitempty"`
	Header  map[string][]string `json:"header,omitempty"`
	// Sign for send: "" publishes Data with Header as given (unsigned, or
	// a captured message's headers); "stranger" signs with a fresh key no
	// one knows; "own" with the agent's key. Claim then overwrites Rn-From.
	Sign  string `json:"sign,omitempty"`
	Claim string `json:"claim,omitempty"`
	// Expect is how many replies send waits for (0: none; count reads them
	// later), until TimeoutMs.
	Expect    int    `json:"expect,omitempty"`
	TimeoutMs int64  `json:"timeout_ms,omitempty"`
	Inbox     string `json:"inbox,omitempty"`   // count
	Rate      int    `json:"rate,omitempty"`    // flood: messages per second
	Bucket    string `json:"bucket,omitempty"`  // kv
	Chevron   string `json:"chevron,omitempty"` // fork
	// File is where load, record and audits write their JSON lines
	// (chaos_agent_test.go), Client names a load's commands.
	File   string `json:"file,omitempty"`
	Client string `json:"client,omitempty"`
}

// agentOut is one line an agent prints: the answer to request ID, or
// (ID 0) an event or the ready line.
type agentOut struct {
	ID    int    `json:"id,omitempty"`
	Ready bool   `json:"ready,omitempty"`
	Key   string `json:"key,omitempty"` // the agent's key (ready), the stranger's or the forged key (send, fork)
	Err   string `json:"err,omitempty"`

	Event   *agentEvent       `json:"event,omitempty"`
	Replies []wire.Result     `json:"replies,omitempty"` // send
	Inbox   string            `json:"inbox,omitempty"`   // send
	Count   int               `json:"count"`             // count
	Flood   *floodStats       `json:"flood,omitempty"`   // flood progress events, stop
	Records map[string][]byte `json:"records,omitempty"` // kv: key → value; leaders: stream → leader
	Seq     uint64            `json:"seq,omitempty"`     // fork: the seq forged
	Dups    int               `json:"dups,omitempty"`    // stream: messages whose subject and body another had
	Load    *loadStats        `json:"load,omitempty"`    // unload
	Stream  string            `json:"stream,omitempty"`  // audits: the stream read
}

// agentEvent is a message the agent received on a subscription.
type agentEvent struct {
	Subject string              `json:"subject"`
	Header  map[string][]string `json:"header,omitempty"`
	Data    []byte              `json:"data"`
	At      time.Time           `json:"at"`
}

// floodStats counts a flood's messages and the answers by status (and
// error code: "error/unavailable").
type floodStats struct {
	Sent    int            `json:"sent"`
	Errors  int            `json:"publish_errors"`
	Answers map[string]int `json:"answers"`
	Took    time.Duration  `json:"took"`
}

// busy counts the answers that said the node had no room for the command.
func (f floodStats) busy() int {
	n := 0
	for k, v := range f.Answers {
		if strings.Contains(k, "busy") || strings.HasSuffix(k, "/"+wire.CodeUnavailable) {
			n += v
		}
	}
	return n
}

// runAgent is the whole program when the test binary runs as an agent.
func runAgent(seedFile, nodeKey string) int {
	a, err := newAgentProc(seedFile, nodeKey, os.Getenv(agentServerEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	defer a.c.Close()
	a.emit(agentOut{Ready: true, Key: a.pub})
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		var op agentOp
		if err := json.Unmarshal(sc.Bytes(), &op); err != nil {
			a.emit(agentOut{Err: fmt.Sprintf("bad request %q: %v", sc.Text(), err)})
			continue
		}
		wg.Go(func() {
			out := a.do(op)
			out.ID = op.ID
			a.emit(out)
		})
	}
	wg.Wait()
	return 0
}

// agentProc is the agent's state, in its own process.
type agentProc struct {
	kp  nkeys.KeyPair
	pub string
	c   *mesh.Client // signs with the key's own chain (Client.Signer)
	nc  *nats.Conn
	// connOpts connects again (a load opens its own connections).
	connOpts mesh.Options

	outMu sync.Mutex // guards out
	out   *json.Encoder

	mu      sync.Mutex // guards subs, inboxes, flood, load, records
	subs    map[string]*nats.Subscription
	inboxes map[string]*inbox
	flood   *flood
	load    *load
	records map[string]*recorder // by subject

	seq atomic.Int64 // numbers inboxes
}

// inbox collects the replies to one send.
type inbox struct {
	mu   sync.Mutex
	got  []wire.Result
	more chan struct{} // signalled (without blocking) on every reply
}

// newAgentProc connects as the key in seedFile to the node on loopback
// (servers ""), or to the comma-separated servers, checking the
// certificate against nodeKeys (comma-separated) as robonet's CLI does.
func newAgentProc(seedFile, nodeKeys, servers string) (*agentProc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if servers == "" {
		servers = "nats://127.0.0.1:" + clientPort
	}
	c, err := mesh.Connect(ctx, mesh.Options{Server: servers, SeedFile: seedFile,
		Name: "rn-e2e-agent", NodeKeys: strings.Split(nodeKeys, ",")})
	if err != nil {
		return nil, err
	}
	pub, _ := c.KeyPair().PublicKey()
	return &agentProc{kp: c.KeyPair(), pub: pub, c: c, nc: c.Conn(), out: json.NewEncoder(os.Stdout),
		connOpts: mesh.Options{Server: servers, SeedFile: seedFile, Name: "rn-e2e-agent", NodeKeys: strings.Split(nodeKeys, ",")},
		subs:     map[string]*nats.Subscription{}, inboxes: map[string]*inbox{}, records: map[string]*recorder{}}, nil
}

func (a *agentProc) emit(o agentOut) {
	a.outMu.Lock()
	defer a.outMu.Unlock()
	_ = a.out.Encode(o)
}

func (a *agentProc) do(op agentOp) agentOut {
	timeout := time.Duration(op.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	var out agentOut
	var err error
	switch op.Op {
	case "sub":
		err = a.sub(op.Subject)
	case "unsub":
		a.mu.Lock()
		if s := a.subs[op.Subject]; s != nil {
			err = s.Unsubscribe()
			delete(a.subs, op.Subject)
		}
		a.mu.Unlock()
	case "send":
		out, err = a.send(op, timeout)
	case "count":
		a.mu.Lock()
		in := a.inboxes[op.Inbox]
		a.mu.Unlock()
		if in == nil {
			err = fmt.Errorf("no inbox %q", op.Inbox)
			break
		}
		in.mu.Lock()
		out.Count = len(in.got)
		in.mu.Unlock()
	case "flood":
		err = a.startFlood(op)
	case "stop":
		out.Flood, err = a.stopFlood()
	case "fork":
		out, err = a.fork(op.Chevron, timeout)
	case "kv":
		out.Records, err = a.kv(op.Bucket, timeout)
	case "leaders":
		out.Records, err = a.leaders(timeout)
	case "stream":
		out.Count, out.Dups, err = a.streamCount(op.Bucket, op.Subject, timeout)
	case "load":
		err = a.startLoad(op)
	case "unload":
		out.Load, err = a.stopLoad(timeout)
	case "record":
		err = a.startRecord(op.Subject, op.File)
	case "unrecord":
		out.Count, err = a.stopRecord(op.Subject)
	case "audits":
		out.Stream, out.Count, err = a.readAudits(op.Subject, op.File, timeout)
	default:
		err = fmt.Errorf("unknown op %q", op.Op)
	}
	if err != nil {
		out.Err = err.Error()
	}
	return out
}

// sub streams every message on subject as an event line.
func (a *agentProc) sub(subject string) error {
	s, err := a.nc.Subscribe(subject, func(m *nats.Msg) {
		a.emit(agentOut{Event: &agentEvent{Subject: m.Subject, Header: m.Header, Data: m.Data, At: time.Now()}})
	})
	if err != nil {
		return err
	}
	_ = s.SetPendingLimits(-1, -1)
	a.mu.Lock()
	a.subs[subject] = s
	a.mu.Unlock()
	return a.nc.Flush()
}

// ownSigner is the agent key's HCTH signer (its chain file beside the seed).
func (a *agentProc) ownSigner() (*mesh.Signer, error) {
	if s := a.c.Signer(); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("the client has no signer")
}

// send publishes one request and gathers op.Expect replies.
func (a *agentProc) send(op agentOp, timeout time.Duration) (agentOut, error) {
	var out agentOut
	m := &nats.Msg{Subject: op.Subject, Data: op.Data, Header: nats.Header{}}
	for k, v := range op.Header {
		m.Header[k] = v
	}
	switch op.Sign {
	case "":
	case "stranger":
		kp, err := nkeys.CreateUser()
		if err != nil {
			return out, err
		}
		out.Key, _ = kp.PublicKey()
		dir, err := os.MkdirTemp("", "rn-e2e-stranger-")
		if err != nil {
			return out, err
		}
		defer os.RemoveAll(dir)
		s, err := mesh.NewSigner(kp, filepath.Join(dir, "chain"), 0)
		if err != nil {
			return out, err
		}
		if err := s.SignMsg(m); err != nil {
			return out, err
		}
	case "own":
		s, err := a.ownSigner()
		if err != nil {
			return out, err
		}
		if err := s.SignMsg(m); err != nil {
			return out, err
		}
		out.Key = a.pub
	default:
		return out, fmt.Errorf("sign %q", op.Sign)
	}
	if op.Claim != "" {
		m.Header.Set(wire.HdrFrom, op.Claim)
	}
	in := &inbox{more: make(chan struct{}, 1)}
	m.Reply = fmt.Sprintf("%s.e2e.%d", subjects.Inbox(a.pub), a.seq.Add(1))
	s, err := a.nc.Subscribe(m.Reply, func(r *nats.Msg) {
		var res wire.Result
		if json.Unmarshal(r.Data, &res) != nil {
			res = wire.Result{Status: "undecodable", Text: string(r.Data)}
		}
		in.mu.Lock()
		in.got = append(in.got, res)
		in.mu.Unlock()
		select {
		case in.more <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return out, err
	}
	a.mu.Lock()
	a.inboxes[m.Reply] = in
	a.mu.Unlock()
	if err := a.nc.PublishMsg(m); err != nil {
		return out, err
	}
	if err := a.nc.Flush(); err != nil {
		return out, err
	}
	out.Inbox = m.Reply
	if op.Expect == 0 {
		return out, nil // the subscription stays: count reads it
	}
	defer s.Unsubscribe()
	deadline := time.After(timeout)
	for {
		in.mu.Lock()
		n := len(in.got)
		in.mu.Unlock()
		if n >= op.Expect {
			break
		}
		select {
		case <-in.more:
		case <-deadline:
			in.mu.Lock()
			out.Replies = append([]wire.Result(nil), in.got...)
			in.mu.Unlock()
			return out, fmt.Errorf("%d of %d replies after %v", n, op.Expect, timeout)
		}
	}
	in.mu.Lock()
	out.Replies = append([]wire.Result(nil), in.got...)
	in.mu.Unlock()
	return out, nil
}

// flood is a running flood of signed commands.
type flood struct {
	stop chan struct{}
	done chan floodStats
}

// startFlood publishes op.Data (a wire.Request; each copy gets its own
// id) to op.Subject op.Rate times a second, signed with the agent's key,
// until stop (at most two minutes), printing its progress every 500 ms.
func (a *agentProc) startFlood(op agentOp) error {
	var body map[string]any
	if err := json.Unmarshal(op.Data, &body); err != nil {
		return fmt.Errorf("flood body: %w", err)
	}
	if op.Rate <= 0 || op.Rate > 1000 {
		return fmt.Errorf("flood rate %d", op.Rate)
	}
	signer, err := a.ownSigner()
	if err != nil {
		return err
	}
	prefix := subjects.Inbox(a.pub) + ".flood"
	var mu sync.Mutex
	st := floodStats{Answers: map[string]int{}}
	sub, err := a.nc.Subscribe(prefix+".>", func(r *nats.Msg) {
		var res wire.Result
		k := "undecodable"
		if json.Unmarshal(r.Data, &res) == nil {
			k = res.Status
			if res.Error != nil {
				k += "/" + res.Error.Code
				if strings.Contains(res.Error.Msg, "busy") {
					k += "/busy"
				}
			}
		}
		mu.Lock()
		st.Answers[k]++
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	f := &flood{stop: make(chan struct{}), done: make(chan floodStats, 1)}
	a.mu.Lock()
	if a.flood != nil {
		a.mu.Unlock()
		_ = sub.Unsubscribe()
		return fmt.Errorf("a flood is running")
	}
	a.flood = f
	a.mu.Unlock()
	snapshot := func() floodStats {
		mu.Lock()
		defer mu.Unlock()
		c := st
		c.Answers = map[string]int{}
		for k, v := range st.Answers {
			c.Answers[k] = v
		}
		return c
	}
	go func() {
		began := time.Now()
		tick := time.NewTicker(time.Second / time.Duration(op.Rate))
		defer tick.Stop()
		progress := time.NewTicker(500 * time.Millisecond)
		defer progress.Stop()
		sending := tick.C
		limit := time.After(2 * time.Minute)
		for i := 0; ; i++ {
			select {
			case <-progress.C:
				s := snapshot()
				s.Took = time.Since(began)
				a.emit(agentOut{Flood: &s})
				continue
			case <-f.stop:
				_ = sub.Unsubscribe()
				s := snapshot()
				s.Took = time.Since(began)
				f.done <- s
				return
			case <-limit:
				sending = nil // a test that forgot to stop it
				continue
			case <-sending:
			}
			id := fmt.Sprintf("flood-%d", i)
			body["id"] = id
			data, _ := json.Marshal(body)
			m := &nats.Msg{Subject: op.Subject, Reply: prefix + "." + id, Data: data}
			err := signer.SignMsg(m)
			if err == nil {
				err = a.nc.PublishMsg(m)
			}
			mu.Lock()
			st.Sent++
			if err != nil {
				st.Errors++
			}
			mu.Unlock()
		}
	}()
	return nil
}

func (a *agentProc) stopFlood() (*floodStats, error) {
	a.mu.Lock()
	f := a.flood
	a.flood = nil
	a.mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("no flood running")
	}
	close(f.stop)
	s := <-f.done
	return &s, nil
}

// fork is what a clone of a node's key does: it takes the node's next
// heartbeat off the wire and publishes another heartbeat for the following
// seq, continuing the node's chain, so the node's own next message forks it.
func (a *agentProc) fork(chev string, timeout time.Duration) (agentOut, error) {
	var out agentOut
	subj := subjects.Root + "." + chev + ".evt." + subjects.EvtHeartbeat
	s, err := a.nc.SubscribeSync(subj)
	if err != nil {
		return out, err
	}
	defer s.Unsubscribe()
	m, err := s.NextMsg(timeout)
	if err != nil {
		return out, fmt.Errorf("no heartbeat on %s: %w", subj, err)
	}
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return out, err
	}
	if h.From != a.pub {
		return out, fmt.Errorf("heartbeat on %s signed by %s, not the cloned key %s", subj, h.From, a.pub)
	}
	clone, err := trust.NewChain(a.kp, trust.ChainState{Seq: h.Seq, Head: trust.ChainHash(h.Prev, h.Seq, m.Subject, m.Data)})
	if err != nil {
		return out, err
	}
	var hb map[string]any
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		return out, err
	}
	if seq, ok := hb["seq"].(float64); ok {
		hb["seq"] = seq + 1
	}
	hb["sent"] = time.Now().UTC()
	data, _ := json.Marshal(hb)
	ch, err := clone.Sign(subj, data)
	if err != nil {
		return out, err
	}
	forged := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	ch.SetInto(forged.Header)
	if err := a.nc.PublishMsg(forged); err != nil {
		return out, err
	}
	out.Key, out.Seq = a.pub, ch.Seq
	return out, a.nc.Flush()
}

// kv reads every key of bucket (as stored: signed records).
func (a *agentProc) kv(bucket string, timeout time.Duration) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		out[k] = e.Value()
	}
	return out, nil
}

// streamCount reads every message of stream (Bucket names it) whose
// subject matches filter ("" for all) and returns how many there are and
// how many repeat an earlier one's subject and body exactly (a duplicate:
// events carry their own ids and times, so two genuine ones never match).
func (a *agentProc) streamCount(stream, filter string, timeout time.Duration) (n, dups int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	js, err := jetstream.New(a.nc)
	if err != nil {
		return 0, 0, err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	cfg := jetstream.OrderedConsumerConfig{}
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	left := info.NumPending
	seen := map[string]bool{}
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 256)), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return n, dups, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			k := m.Subject() + "\x00" + string(m.Data())
			if seen[k] {
				dups++
			}
			seen[k] = true
			n++
		}
		if err := batch.Error(); err != nil {
			return n, dups, err
		}
		if got == 0 {
			return n, dups, fmt.Errorf("stream %s: %d messages pending but none delivered", stream, left)
		}
		left -= uint64(got)
	}
	return n, dups, nil
}

// leaders lists every stream with its leader's server name ("" when it
// has none): JetStream's STREAM.LIST, which the meta leader answers.
func (a *agentProc) leaders(timeout time.Duration) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	l := js.ListStreams(ctx)
	for si := range l.Info() {
		leader := ""
		if si.Cluster != nil {
			leader = si.Cluster.Leader
		}
		out[si.Config.Name] = []byte(leader)
	}
	return out, l.Err()
}

// agent is the test's handle on an agent process.
type agent struct {
	name string
	key  string // the key it connected as

	inMu sync.Mutex // guards in and next
	in   *json.Encoder
	next int

	mu      sync.Mutex // guards waiting, events
	waiting map[int]chan agentOut
	events  []agentEvent
	flood   *floodStats // the last progress line

	stderr bytes.Buffer
	read   chan struct{} // closed when stdout ends
}

// startAgent runs an agent in n's namespace connected to n as the key in
// seed, waits until it is connected, and stops it in t.Cleanup.
func startAgent(t *testing.T, n *node, name, seed string) *agent {
	t.Helper()
	return startAgentOn(t, n.host, name, seed, "", n)
}

// startAgentOn runs an agent in h's namespace as the key in seed,
// connected to servers (a comma-separated URL list; "" for the node on
// h's loopback) whose certificates must carry one of the nodes' keys.
func startAgentOn(t *testing.T, h *host, name, seed, servers string, nodes ...*node) *agent {
	t.Helper()
	var keys []string
	for _, n := range nodes {
		nk, err := mesh.ReadSeed(filepath.Join(n.data, "node.nk"))
		if err != nil {
			t.Fatal(err)
		}
		k, _ := nk.PublicKey()
		keys = append(keys, k)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{name: name, waiting: map[int]chan agentOut{}, read: make(chan struct{})}
	cmd := exec.Command(ipBin, "netns", "exec", h.ns, self)
	cmd.Env = append(childEnv(), agentSeedEnv+"="+seed, agentNodeEnv+"="+strings.Join(keys, ","))
	if servers != "" {
		cmd.Env = append(cmd.Env, agentServerEnv+"="+servers)
	}
	cmd.Stderr = &a.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start agent %s: %v", name, err)
	}
	a.in = json.NewEncoder(stdin)
	ready := make(chan string, 1)
	go func() {
		defer close(a.read)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var o agentOut
			if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
				continue
			}
			a.mu.Lock()
			switch {
			case o.Ready:
				ready <- o.Key
			case o.ID != 0:
				if ch := a.waiting[o.ID]; ch != nil {
					ch <- o
					delete(a.waiting, o.ID)
				}
			case o.Event != nil:
				a.events = append(a.events, *o.Event)
			case o.Flood != nil:
				a.flood = o.Flood
			case o.Err != "":
				a.stderr.WriteString("agent: " + o.Err + "\n")
			}
			a.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Process.Kill()
		<-a.read
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("agent %s stderr:\n%s", name, a.stderr.String())
		}
	})
	select {
	case a.key = <-ready:
	case <-a.read:
		t.Fatalf("agent %s in %s exited: %s", name, h.ns, bytes.TrimSpace(a.stderr.Bytes()))
	case <-time.After(30 * time.Second):
		t.Fatalf("agent %s in %s: not connected after 30s: %s", name, h.ns, bytes.TrimSpace(a.stderr.Bytes()))
	}
	return a
}

// do sends op and waits for its answer; an error the agent reports comes
// back in out.Err for the caller to judge.
func (a *agent) do(t *testing.T, op agentOp) agentOut {
	t.Helper()
	ch := make(chan agentOut, 1)
	a.inMu.Lock()
	a.next++
	op.ID = a.next
	a.mu.Lock()
	a.waiting[op.ID] = ch
	a.mu.Unlock()
	err := a.in.Encode(op)
	a.inMu.Unlock()
	if err != nil {
		t.Fatalf("agent %s: %v", a.name, err)
	}
	wait := time.Duration(op.TimeoutMs)*time.Millisecond + 30*time.Second
	select {
	case o := <-ch:
		return o
	case <-a.read:
		t.Fatalf("agent %s exited during %s: %s", a.name, op.Op, bytes.TrimSpace(a.stderr.Bytes()))
	case <-time.After(wait):
		t.Fatalf("agent %s: no answer to %s after %v", a.name, op.Op, wait)
	}
	return agentOut{}
}

// must is do that fails the test when the agent reports an error.
func (a *agent) must(t *testing.T, op agentOp) agentOut {
	t.Helper()
	o := a.do(t, op)
	if o.Err != "" {
		t.Fatalf("agent %s: %s %s: %s", a.name, op.Op, op.Subject, o.Err)
	}
	return o
}

// eventsSince returns the events received at or after t0 whose subject
// matches the pattern match (a NATS subject with * and >).
func (a *agent) eventsSince(t0 time.Time, match string) []agentEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []agentEvent
	for _, e := range a.events {
		if !e.At.Before(t0) && subjectMatches(match, e.Subject) {
			out = append(out, e)
		}
	}
	return out
}

// floodProgress is the flood's last progress line.
func (a *agent) floodProgress() floodStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.flood == nil {
		return floodStats{}
	}
	return *a.flood
}

// subjectMatches reports whether subject matches pattern (tokens, * for
// one, > for the rest).
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}
