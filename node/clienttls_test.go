package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/node"
)

// anyAddr starts one node listening on 0.0.0.0 (a non-loopback address
// without sending a packet off the machine: the test dials it through
// 127.0.0.1, the same listener) with echo allowed, and returns it with the
// loopback address of its client port.
func anyAddr(t *testing.T) (*testmesh.Swarm, string) {
	t.Helper()
	s := testmesh.Start(t, 1, func(_ int, o *node.Options) {
		o.Listen = "0.0.0.0:0"
		o.ExecAllow = []string{"echo"}
		o.ClientNames = []string{"node-a.example"}
	})
	u, err := url.Parse(s.Node(0).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "tls" || !s.Node(0).ClientTLS() {
		t.Fatalf("client URL %s on 0.0.0.0: want tls://", u)
	}
	return s, net.JoinHostPort("127.0.0.1", u.Port())
}

// sniffer relays TCP connections from its own loopback port to target and
// keeps every byte that crosses in either direction, as someone on the
// path would see them.
type sniffer struct {
	addr string
	mu   sync.Mutex
	seen bytes.Buffer
}

func sniff(t *testing.T, target string) *sniffer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sn := &sniffer{addr: l.Addr().String()}
	var wg sync.WaitGroup
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, in, out)
			cmu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); sn.copy(out, in); out.Close() }()
			go func() { defer wg.Done(); sn.copy(in, out); in.Close() }()
		}
	}()
	return sn
}

func (sn *sniffer) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			sn.mu.Lock()
			sn.seen.Write(buf[:n])
			sn.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (sn *sniffer) saw(s string) bool {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	return bytes.Contains(sn.seen.Bytes(), []byte(s))
}

// execThrough runs `exec echo marker` on the node through a client
// connected to server, and checks the node answered with the marker.
func execThrough(t *testing.T, nd *node.Node, server, marker string) {
	t.Helper()
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: server, SeedFile: nd.OperatorSeedPath(), NodeKeys: []string{nd.Pubkey()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	res, err := c.Gather(context.Background(), mesh.GatherRequest{Selector: "all", Verb: "exec",
		Args: json.RawMessage(`{"argv":["echo","` + marker + `"]}`), Timeout: 5 * time.Second}, nil)
	if err != nil || !res.OK() || !strings.Contains(res.Results[0].Text, marker) {
		t.Fatalf("exec through %s: %v %+v", server, err, res.Results)
	}
}

// A node whose --listen is not loopback serves TLS only: a plaintext
// client is refused before it can authenticate; exec output does not cross
// the network in clear (a relay in the path sees no byte of it, where it
// sees it on a plain loopback port); the robonet client accepts the node's
// certificate by its key (pinned on first use, or given), and refuses,
// before sending its credentials, a node whose key is not the pinned one.
func TestNonLoopbackClientPortIsTLSOnly(t *testing.T) {
	s, addr := anyAddr(t)
	nd := s.Node(0)

	// A plaintext client: the server says TLS is required and hangs up on
	// a CONNECT in clear.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	info, err := br.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q, %v: want tls_required", info, err)
	}
	kp, _ := nkeys.FromSeed(mustSeed(t, nd.OperatorSeedPath()))
	pub, _ := kp.PublicKey()
	if _, err := io.WriteString(conn, `CONNECT {"verbose":false,"nkey":"`+pub+`"}`+"\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if strings.Contains(string(rest), "PONG") {
		t.Fatalf("a plaintext client was served: %q", rest)
	}

	// Exec output through a relay: ciphertext only.
	tlsPath := sniff(t, addr)
	execThrough(t, nd, "nats://"+tlsPath.addr, "robonet-secret-output-1")
	if tlsPath.saw("robonet-secret-output-1") || tlsPath.saw("CONNECT") {
		t.Fatal("exec output or the CONNECT crossed the TLS port in clear")
	}
	plain := testmesh.Start(t, 1, func(_ int, o *node.Options) { o.ExecAllow = []string{"echo"} })
	if plain.Node(0).ClientTLS() {
		t.Fatal("a loopback port serves TLS")
	}
	plainPath := sniff(t, strings.TrimPrefix(plain.Node(0).ClientURL(), "nats://"))
	execThrough(t, plain.Node(0), "nats://"+plainPath.addr, "robonet-secret-output-2")
	if !plainPath.saw("robonet-secret-output-2") {
		t.Fatal("the relay did not see the loopback port's plaintext: it sees nothing")
	}

	// Pinned on first use, through TLS.
	known := filepath.Join(t.TempDir(), "known_nodes")
	c, err := mesh.Connect(context.Background(), mesh.Options{Server: "tls://" + addr, SeedFile: nd.OperatorSeedPath(), KnownNodes: known})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeKey() != nd.Pubkey() {
		t.Fatalf("TLS proved key %q, want %s", c.NodeKey(), nd.Pubkey())
	}
	if pinned, ok, _ := mesh.OpenKnownNodes(known).Lookup(addr); !ok || pinned != nd.Pubkey() {
		t.Fatalf("pinned %q %v", pinned, ok)
	}
	if _, err := c.Nodes(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The certificate names what clients that check names dial: every
	// interface's address for 0.0.0.0, localhost, and the extra names.
	st, err := c.Conn().TLSConnectionState()
	if err != nil || len(st.PeerCertificates) != 1 {
		t.Fatalf("TLS state: %v", err)
	}
	cert := st.PeerCertificates[0]
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	for _, name := range []string{"127.0.0.1", "localhost", "node-a.example"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("the client certificate does not verify for %s: %v", name, err)
		}
	}
	if cert.Subject.CommonName != nd.Pubkey() {
		t.Errorf("certificate CN %s, want the node key", cert.Subject.CommonName)
	}
	c.Close()

	// A node that is not the pinned one, and one that is not the given one.
	other, _ := nkeys.CreateUser()
	opub, _ := other.PublicKey()
	wrong := filepath.Join(t.TempDir(), "known_nodes")
	if err := mesh.OpenKnownNodes(wrong).Pin(addr, opub); err != nil {
		t.Fatal(err)
	}
	_, err = mesh.Connect(context.Background(), mesh.Options{Server: "nats://" + addr, SeedFile: nd.OperatorSeedPath(), KnownNodes: wrong})
	var kc *mesh.NodeKeyChangedError
	if !errors.As(err, &kc) || kc.Pinned != opub || kc.Got != nd.Pubkey() || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("a node whose key is not the pinned one: %v", err)
	}
	_, err = mesh.Connect(context.Background(), mesh.Options{Server: "tls://" + addr, SeedFile: nd.OperatorSeedPath(), NodeKeys: []string{opub}})
	if !errors.Is(err, mesh.ErrNodeKey) || !strings.Contains(err.Error(), opub) {
		t.Fatalf("a node whose key is not the given one: %v", err)
	}
}

// A robonet client that must use TLS (a tls:// URL, or any address but
// loopback: mesh's TestSecureUnlessLoopback) refuses a server that offers
// none, with an error that says so, instead of authenticating in clear.
func TestClientRefusesAPlainServerWhereTLSIsDue(t *testing.T) {
	s := testmesh.Start(t, 1)
	nd := s.Node(0)
	u, _ := url.Parse(nd.ClientURL())
	if _, err := mesh.Connect(context.Background(), mesh.Options{Server: "nats://127.0.0.1:" + u.Port(), SeedFile: nd.OperatorSeedPath()}); err != nil {
		t.Fatalf("loopback stays plain: %v", err)
	}
	_, err := mesh.Connect(context.Background(), mesh.Options{Server: "tls://127.0.0.1:" + u.Port(), SeedFile: nd.OperatorSeedPath(), Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "offers no TLS") {
		t.Fatalf("tls:// to a plain port: %v", err)
	}
}

func mustSeed(t *testing.T, path string) []byte {
	t.Helper()
	kp, err := mesh.ReadSeed(path)
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	return seed
}
