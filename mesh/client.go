package mesh

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// DefaultServer is where clients look for a node.
const DefaultServer = "nats://127.0.0.1:4222"

// Errors a client may return.
var (
	ErrConnect    = errors.New("connect")
	ErrNoResponse = errors.New("no robonet node answered")
	ErrSeed       = errors.New("bad nkey seed")
)

// Options configure a client connection.
type Options struct {
	Server   string        // NATS URL(s), comma-separated; default DefaultServer
	SeedFile string        // nkey seed file (a node data dir's operator.nk)
	Name     string        // connection name shown by nats-server
	Timeout  time.Duration // connect timeout; default 5 s
	// ChainFile keeps the key's HCTH chain position (see Signer); default
	// SeedFile + ".chain".
	ChainFile string
	// NodeKeys are node public keys the client trusts at any address
	// without pinning them: a local node's own (its data dir's node.nk).
	NodeKeys []string
	// KnownNodes is the file of node keys pinned on first use, per server
	// address (KnownNodes; the CLI's is KnownNodesFile()). Empty: nothing
	// is pinned across connections; a client without NodeKeys then trusts
	// the first key its connection proves, and only that one.
	KnownNodes string
	// Notice, when set, is told when the client pins a new node key.
	Notice func(string)
}

// Client is a connection to a swarm through one node.
//
// The node it is connected to is identified by its key: on a TLS port by
// the certificate (trust.ClientCertificate; no CA, the key is checked), and
// on every query by the reply's HCTH signature, which must be that node's
// and bound to the server the client is connected to (ServerName). The key
// must be one of Options.NodeKeys or the one pinned for the address; the
// member list such a reply carries is what command replies are then checked
// against.
type Client struct {
	nc       *nats.Conn
	kp       nkeys.KeyPair
	signer   *Signer         // signs commands and queries (HCTH); nil: unsigned
	verifier *trust.Verifier // checks replies' signatures; nil: replies unchecked
	pin      *nodePin        // the node key queries must be answered with
	// badReplies counts replies dropped for their signature or key.
	badReplies atomic.Uint64
}

// ServerName is the name of the embedded server of the node whose key is
// pub: "rn-" and ten characters of the key (JetStream's Raft peer ids come
// from it, so it may not change with the node's human name). Query replies
// from "the node I am connected to" must be signed by a key with the
// connected server's name.
func ServerName(pub string) string {
	if len(pub) < 11 {
		return ""
	}
	return "rn-" + pub[1:11]
}

// Connect dials a node and authenticates with the nkey in opts.SeedFile.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if opts.Server == "" {
		opts.Server = DefaultServer
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Name == "" {
		opts.Name = "robonet-cli"
	}
	if opts.SeedFile == "" {
		return nil, fmt.Errorf("%w %s: no credentials: pass --nkey FILE or --data DIR of a local node", ErrConnect, opts.Server)
	}
	kp, err := ReadSeed(opts.SeedFile)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrConnect, opts.Server, err)
	}
	pub, _ := kp.PublicKey()
	if d, ok := ctx.Deadline(); ok && time.Until(d) < opts.Timeout {
		opts.Timeout = max(time.Until(d), time.Millisecond)
	}
	pin, secure, err := newNodePin(opts)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(opts.Server, nats.Name(opts.Name), nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix(subjects.Inbox(pub)), pinnedTLS(pin, secure),
		nats.Timeout(opts.Timeout), nats.NoCallbacksAfterClientClose())
	if err != nil {
		switch {
		case pin.lastTLSErr() != nil:
			return nil, fmt.Errorf("%w %s: %w", ErrConnect, opts.Server, pin.lastTLSErr())
		case errors.Is(err, nats.ErrSecureConnWanted):
			return nil, fmt.Errorf("%w %s: the server offers no TLS; robonet nodes serve TLS on every address but loopback, so this client does not send credentials there in clear (an old robonet node, or not a robonet node)", ErrConnect, opts.Server)
		case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"):
			return nil, fmt.Errorf("%w %s: the node does not accept the key in %s (%s…)", ErrConnect, opts.Server, opts.SeedFile, pub[:8])
		case errors.Is(err, nats.ErrNoServers):
			return nil, fmt.Errorf("%w %s: no node is listening there (is `robonet up` running?)", ErrConnect, opts.Server)
		}
		return nil, fmt.Errorf("%w %s: %v", ErrConnect, opts.Server, err)
	}
	if err := settleTLS(nc, pin); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrConnect, opts.Server, err)
	}
	chain := opts.ChainFile
	if chain == "" {
		chain = opts.SeedFile + ".chain"
	}
	signer, err := NewSigner(kp, chain, ClientChainBlock)
	if err != nil && opts.ChainFile == "" {
		// A seed in a read-only place (/etc) keeps its chain in the
		// user's cache instead.
		if dir, derr := os.UserCacheDir(); derr == nil {
			signer, err = NewSigner(kp, filepath.Join(dir, "robonet", pub+".chain"), ClientChainBlock)
		}
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrConnect, opts.Server, err)
	}
	return &Client{nc: nc, kp: kp, signer: signer, verifier: trust.NewVerifier(0), pin: pin}, nil
}

// newNodePin reads opts' trust anchors; secure is set when a server URL is
// not loopback, where the client refuses a connection without TLS.
func newNodePin(opts Options) (*nodePin, bool, error) {
	pin := &nodePin{trusted: map[string]bool{}, notice: opts.Notice}
	for _, k := range opts.NodeKeys {
		if err := trust.CheckKey(k); err != nil {
			return nil, false, fmt.Errorf("%w %s: trusted node key: %w", ErrConnect, opts.Server, err)
		}
		pin.trusted[k] = true
	}
	if opts.KnownNodes != "" {
		pin.known = OpenKnownNodes(opts.KnownNodes)
	}
	secure := false
	for _, u := range strings.Split(opts.Server, ",") {
		if strings.TrimSpace(u) == "" {
			continue
		}
		a, err := NodeAddr(u)
		if err != nil {
			return nil, false, fmt.Errorf("%w %s: %v", ErrConnect, opts.Server, err)
		}
		pin.addrs = append(pin.addrs, a)
		secure = secure || !loopbackURL(u)
	}
	return pin, secure, nil
}

// pinnedTLS is the client's TLS: used whenever the server asks for it (and
// required when secure), checking the node's certificate by its key, not by
// a CA: trust.CheckPeerCertificate, then the pin.
func pinnedTLS(pin *nodePin, secure bool) nats.Option {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // no CA: VerifyConnection checks the node key
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, 0, len(cs.PeerCertificates))
			for _, c := range cs.PeerCertificates {
				raw = append(raw, c.Raw)
			}
			pc, err := trust.CheckPeerCertificate(raw, time.Now())
			if err != nil {
				err = fmt.Errorf("%w: not a robonet node's certificate: %v", ErrNodeKey, err)
				pin.mu.Lock()
				pin.tlsErr = err
				pin.mu.Unlock()
				return err
			}
			return pin.checkTLS(pc.Pub)
		},
	}
	return func(o *nats.Options) error {
		o.TLSConfig = tc
		if secure {
			o.Secure = true
		}
		return nil
	}
}

// settleTLS pins the key a TLS connection proved for the address it was
// made to, and checks that the server is that node's.
func settleTLS(nc *nats.Conn, pin *nodePin) error {
	st, err := nc.TLSConnectionState()
	if err != nil || len(st.PeerCertificates) == 0 {
		return nil // plain (loopback): the first query reply proves the key
	}
	pin.mu.Lock()
	key := pin.tlsKey
	pin.mu.Unlock()
	if srv := nc.ConnectedServerName(); srv != ServerName(key) {
		return fmt.Errorf("%w: the TLS certificate is node %s's (server %s), but the server calls itself %q", ErrNodeKey, key, ServerName(key), srv)
	}
	addr, err := NodeAddr(nc.ConnectedUrl())
	if err != nil {
		return err
	}
	return pin.settle(addr, key)
}

// NewClient wraps an established connection (tests, embedding programs).
// Its commands and queries are unsigned and replies unchecked until
// WithSigner and WithVerify; nodes refuse unsigned commands and queries
// unless they run without HCTH (benchmarks of the bare bus).
func NewClient(nc *nats.Conn) *Client {
	return &Client{nc: nc, pin: &nodePin{trusted: map[string]bool{}}}
}

// WithNodeKey makes c trust only node key pub for query replies (see
// Options.NodeKeys), and returns c.
func (c *Client) WithNodeKey(pub string) *Client {
	c.pin = &nodePin{trusted: map[string]bool{pub: true}}
	return c
}

// NodeKey is the key of the node the client is connected to, as proved by
// its TLS certificate or its first verified query reply ("" before).
func (c *Client) NodeKey() string { return c.pin.current() }

// WithSigner makes c sign what it sends with s, and returns c.
func (c *Client) WithSigner(s *Signer) *Client {
	c.signer = s
	return c
}

// WithVerify makes c check every reply's HCTH signature against the
// answering node's registered key, and returns c.
func (c *Client) WithVerify() *Client {
	c.verifier = trust.NewVerifier(0)
	return c
}

// Signer is the client's signer (nil when unsigned).
func (c *Client) Signer() *Signer { return c.signer }

// KeyPair is the key the client authenticated with (nil for NewClient).
func (c *Client) KeyPair() nkeys.KeyPair { return c.kp }

// Conn is the underlying NATS connection.
func (c *Client) Conn() *nats.Conn { return c.nc }

// Close closes the connection.
func (c *Client) Close() { c.nc.Close() }

// Nodes asks the node the client is connected to for its live registry.
func (c *Client) Nodes(ctx context.Context) ([]wire.Member, error) {
	var out []wire.Member
	err := c.query(ctx, subjects.QueryNodes, &out)
	return out, err
}

// Status asks the node the client is connected to for the swarm's status.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	var out wire.Status
	err := c.query(ctx, subjects.QueryStatus, &out)
	return out, err
}

func (c *Client) query(ctx context.Context, name string, v any) error {
	return c.Query(ctx, name, nil, v)
}

// Query asks the node the client is connected to the query name (rn.sys.*)
// with the JSON of req (nil: empty), and decodes the answer into v. The
// query is signed; with verification on (Connect, WithVerify) the answer
// counts only when signed by the connected node's trusted key: others are
// dropped (BadReplies) while the client waits for the real one.
func (c *Client) Query(ctx context.Context, name string, req any, v any) error {
	srv := c.nc.ConnectedServerName()
	if k := c.pin.current(); srv == "" && k != "" {
		// Reconnecting (a revocation's reload closes every client): the
		// query waits in the buffer for the same node, which it names,
		// rather than going to the queue group.
		srv = ServerName(k)
	}
	ctx, cancel, subj, payload, err := queryStart(ctx, name, srv, req)
	if err != nil {
		return err
	}
	defer cancel()
	data, err := c.request(ctx, subj, srv, payload)
	if err != nil {
		return err
	}
	return decodeReply(subj, data, wire.MaxView, v)
}

// queryStart makes a query's subject (rn.sys.<name>, or .<srv> with a
// server) and payload (the JSON of req; nil: empty), and gives ctx a 5 s
// deadline when it has none; call cancel when done.
func queryStart(ctx context.Context, name, srv string, req any) (_ context.Context, cancel context.CancelFunc, subj string, payload []byte, err error) {
	if req != nil {
		if payload, err = json.Marshal(req); err != nil {
			return ctx, func() {}, "", nil, err
		}
	}
	subj = subjects.Query(name)
	if srv != "" {
		subj = subjects.QueryAt(name, srv)
	}
	cancel = func() {}
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	}
	return ctx, cancel, subj, payload, nil
}

// decodeReply decodes a query's wire.Reply (at most limit bytes) from subj
// into v, or returns the error it carries.
func decodeReply(subj string, data []byte, limit int, v any) error {
	var reply wire.Reply
	if err := wire.DecodeLimit(data, &reply, limit); err != nil {
		return fmt.Errorf("%s: %w", subj, err)
	}
	if reply.Error != nil {
		return fmt.Errorf("%s: %w", subj, reply.Error)
	}
	if err := json.Unmarshal(reply.Data, v); err != nil {
		return fmt.Errorf("%s: decode: %w", subj, err)
	}
	return nil
}

// request publishes one signed query on subj and returns the first reply
// that verifies. A reply that fails its signature or its binding to server
// srv is dropped and counted, and the wait goes on (anyone who sees the
// query may answer its inbox); a key that is not the one trusted for this
// node ends the wait at once with that error.
func (c *Client) request(ctx context.Context, subj, srv string, payload []byte) ([]byte, error) {
	return c.requestChecked(ctx, subj, payload, func(m *nats.Msg) (bool, error) {
		from, err := c.verifyQueryReply(m, srv)
		if err != nil {
			return false, err
		}
		return true, c.settleKey(from)
	})
}

// QueryMember asks one node of the swarm the query name with the JSON of
// req (nil: empty) and decodes its answer into v: the node of server srv
// (rn.sys.<name>.<srv>), or with srv empty whichever node of the queue
// group takes it (rn.sys.<name>). With verification on, the answer counts
// only when signed by one of keys (node keys from a verified registry:
// Nodes); others are dropped while the client waits. Nothing is pinned:
// the answering node need not be the one the client is connected to.
func (c *Client) QueryMember(ctx context.Context, name, srv string, keys []string, req any, v any) error {
	ctx, cancel, subj, payload, err := queryStart(ctx, name, srv, req)
	if err != nil {
		return err
	}
	defer cancel()
	data, err := c.requestChecked(ctx, subj, payload, func(m *nats.Msg) (bool, error) {
		from, err := c.verifyQueryReply(m, srv)
		if err != nil {
			return false, err
		}
		if !slices.Contains(keys, from) {
			return false, fmt.Errorf("%w: reply signed by %s, not by a node asked", ErrNodeKey, from)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return decodeReply(subj, data, wire.MaxMessage, v)
}

// requestChecked publishes one signed query on subj and returns the first
// reply check accepts. With verification off every reply is accepted. A
// reply check refuses (false, err) is dropped and counted and the wait goes
// on; one it accepts with an error (true, err) ends the wait with it.
func (c *Client) requestChecked(ctx context.Context, subj string, payload []byte, check func(*nats.Msg) (bool, error)) ([]byte, error) {
	inbox := c.nc.NewInbox()
	// A small channel: SubscribeSync's would allocate 64k slots per query.
	ch := make(chan *nats.Msg, 64)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", subj, err)
	}
	defer sub.Unsubscribe()
	msg := &nats.Msg{Subject: subj, Reply: inbox, Data: payload}
	if c.signer != nil {
		if err := c.signer.SignMsg(msg); err != nil {
			return nil, fmt.Errorf("sign %s: %w", subj, err)
		}
	}
	if err := c.nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("publish %s: %w", subj, err)
	}
	var dropped error
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			if dropped != nil {
				return nil, fmt.Errorf("%w on %s that verifies (dropped: %w)", ErrNoResponse, subj, dropped)
			}
			return nil, fmt.Errorf("%w on %s: %v", ErrNoResponse, subj, ctx.Err())
		}
		if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
			return nil, fmt.Errorf("%w on %s: %w (no robonet node serves it on this server)", ErrNoResponse, subj, nats.ErrNoResponders)
		}
		if c.verifier == nil {
			return m.Data, nil
		}
		ok, err := check(m)
		if ok && err != nil {
			c.badReplies.Add(1)
			return nil, fmt.Errorf("%s: %w", subj, err)
		}
		if ok {
			return m.Data, nil
		}
		c.badReplies.Add(1)
		dropped = err
	}
}

// verifyQueryReply checks a query reply's signature and, when the query
// went to server srv, that the signer is that server's node; it returns the
// signer.
func (c *Client) verifyQueryReply(m *nats.Msg, srv string) (string, error) {
	h, err := ParseSigned(m)
	if errors.Is(err, ErrUnsigned) {
		return "", fmt.Errorf("%w: unsigned reply (a node older than this client, or not a robonet node)", ErrNodeKey)
	}
	if err != nil {
		return "", err
	}
	if err := c.verifier.Verify(h, m.Subject, m.Data); err != nil {
		return "", err
	}
	if srv != "" && ServerName(h.From) != srv {
		return "", fmt.Errorf("%w: reply signed by %s (server %s), not by the node of server %s the client is connected to", ErrNodeKey, h.From, ServerName(h.From), srv)
	}
	return h.From, nil
}

// settleKey accepts from as the connected node's key, pinning it on first use.
func (c *Client) settleKey(from string) error {
	addr, err := NodeAddr(c.nc.ConnectedUrl())
	if err != nil {
		addr = c.nc.ConnectedUrl()
	}
	return c.pin.settle(addr, from)
}

// Answer is one node's answer to a query every node answers (QueryAll).
type Answer struct {
	Chevron string          `json:"chevron"`
	Name    string          `json:"name"`
	Key     string          `json:"key"` // the verified signer ("" without verification)
	Data    json.RawMessage `json:"data,omitempty"`
	Error   *wire.Error     `json:"error,omitempty"`
}

// Answers are what QueryAll gathered.
type Answers struct {
	Answers []Answer `json:"answers"`
	// Dropped counts replies that did not verify or were not signed by a
	// member's registered key (or repeated one).
	Dropped int `json:"dropped"`
}

// QueryAll publishes the signed query name (rn.sys.<name>, served without a
// queue group) that every node answers, and gathers the answers of members
// (a verified registry: Nodes) until every live one answered or wait
// passed. With verification on, an answer counts only when signed by a
// member's registered key, once per member. No answer at all is an error.
func (c *Client) QueryAll(ctx context.Context, name string, req any, members []wire.Member, wait time.Duration) (Answers, error) {
	var out Answers
	var payload []byte
	if req != nil {
		var err error
		if payload, err = json.Marshal(req); err != nil {
			return out, err
		}
	}
	byKey := map[string]wire.Member{}
	want := 0
	for _, m := range members {
		byKey[m.Pubkey] = m
		if m.State != wire.StateOffline {
			want++
		}
	}
	subj := subjects.Query(name)
	inbox := c.nc.NewInbox()
	ch := make(chan *nats.Msg, want+16)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return out, err
	}
	defer sub.Unsubscribe()
	msg := &nats.Msg{Subject: subj, Reply: inbox, Data: payload}
	if c.signer != nil {
		if err := c.signer.SignMsg(msg); err != nil {
			return out, fmt.Errorf("sign %s: %w", subj, err)
		}
	}
	if err := c.nc.PublishMsg(msg); err != nil {
		return out, fmt.Errorf("publish %s: %w", subj, err)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	seen := map[string]bool{}
	for len(out.Answers) < want {
		select {
		case m := <-ch:
			var rep wire.Reply
			if len(m.Data) > MaxReply || wire.Decode(m.Data, &rep) != nil {
				out.Dropped++
				continue
			}
			a := Answer{Data: rep.Data, Error: rep.Error}
			if c.verifier != nil {
				h, err := ParseSigned(m)
				if err == nil {
					err = c.verifier.Verify(h, m.Subject, m.Data)
				}
				mem, member := byKey[h.From]
				if err != nil || !member || seen[h.From] {
					out.Dropped++
					c.badReplies.Add(1)
					continue
				}
				seen[h.From] = true
				a.Key, a.Chevron, a.Name = h.From, mem.Chevron, mem.Name
			}
			out.Answers = append(out.Answers, a)
		case <-timer.C:
			if len(out.Answers) == 0 {
				return out, fmt.Errorf("%w to %s within %v (%d dropped)", ErrNoResponse, subj, wait, out.Dropped)
			}
			return out, nil
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

// ReadSeed reads a user nkey seed file: the seed alone on a line (other
// lines ignored), the format `nats --nkey` reads.
func ReadSeed(path string) (nkeys.KeyPair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	if len(data) > 4096 {
		return nil, fmt.Errorf("%w: %s is over 4 KiB, not an nkey seed", ErrSeed, path)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if !bytes.HasPrefix(line, []byte("SU")) {
			continue
		}
		kp, err := nkeys.FromSeed(line)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrSeed, path, err)
		}
		return kp, nil
	}
	return nil, fmt.Errorf("%w: %s has no user nkey seed (a line starting with SU)", ErrSeed, path)
}

// jetStream is a JetStream context for the node the client is connected
// to: on an edge (no JetStream of its own) through the swarm's domain,
// which the node's status names; elsewhere the plain API.
func (c *Client) jetStream(ctx context.Context) (jetstream.JetStream, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask the node for its JetStream domain: %w", err)
	}
	if st.Role == wire.NodeRoleEdge && st.JSDomain != "" {
		return jetstream.NewWithDomain(c.nc, st.JSDomain)
	}
	return jetstream.New(c.nc)
}
