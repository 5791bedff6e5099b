package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
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
}

// Client is a connection to a swarm through one node.
type Client struct {
	nc       *nats.Conn
	kp       nkeys.KeyPair
	signer   *Signer         // signs commands (HCTH); nil: unsigned
	verifier *trust.Verifier // checks replies' signatures; nil: replies unchecked
	// badReplies counts replies dropped for their signature.
	badReplies atomic.Uint64
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
	nc, err := nats.Connect(opts.Server, nats.Name(opts.Name), nats.Nkey(pub, kp.Sign),
		nats.CustomInboxPrefix(subjects.Inbox(pub)),
		nats.Timeout(opts.Timeout), nats.NoCallbacksAfterClientClose())
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"):
			return nil, fmt.Errorf("%w %s: the node does not accept the key in %s (%s…)", ErrConnect, opts.Server, opts.SeedFile, pub[:8])
		case errors.Is(err, nats.ErrNoServers):
			return nil, fmt.Errorf("%w %s: no node is listening there (is `robonet up` running?)", ErrConnect, opts.Server)
		}
		return nil, fmt.Errorf("%w %s: %v", ErrConnect, opts.Server, err)
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
	return &Client{nc: nc, kp: kp, signer: signer, verifier: trust.NewVerifier(0)}, nil
}

// NewClient wraps an established connection (tests, embedding programs).
// Its commands are unsigned and replies unchecked until WithSigner and
// WithVerify; nodes refuse unsigned commands unless they run without HCTH
// (benchmarks of the bare bus).
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc} }

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
// with the JSON of req (nil: empty), and decodes the answer into v.
func (c *Client) Query(ctx context.Context, name string, req any, v any) error {
	var payload []byte
	if req != nil {
		var err error
		if payload, err = json.Marshal(req); err != nil {
			return err
		}
	}
	subj := subjects.Query(name)
	if srv := c.nc.ConnectedServerName(); srv != "" {
		subj = subjects.QueryAt(name, srv)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := c.nc.RequestWithContext(ctx, subj, payload)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%w on %s: the server has no robonet node behind it", ErrNoResponse, subj)
		}
		return fmt.Errorf("%w on %s: %v", ErrNoResponse, subj, err)
	}
	var reply wire.Reply
	if err := wire.Decode(msg.Data, &reply); err != nil {
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
