package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrAdmission is wrapped when a route peer is refused.
var ErrAdmission = errors.New("route refused")

// routeAuth admits route peers. Routes are mutual TLS with certificates
// made from each node's nkey (trust.NodeCertificate); this node checks the
// peer's certificate itself and admits a key that is a registered member,
// or proves the swarm secret, or carries a valid one-time token that is
// unused or was used by that same key (and, for a token bound to a key, is
// that key's). Revoked keys are refused first.
type routeAuth struct {
	n    *Node
	cred string // "secret", "token" or "member": how this node was admitted

	mu     sync.RWMutex      // guards secret, cert, plain, used and known
	used   map[string]string // token id → the key that used it, as learnt here
	known  map[string]bool   // member keys saved in KnownMembersFile by the last run
	secret []byte            // nil on a node admitted by a token: it admits members only
	cert   tls.Certificate   // with this node's credential: shown when it dials
	plain  tls.Certificate   // without a token: shown when it accepts (see tlsConfig)
}

// currentSecret is the swarm secret this node holds (nil: none).
func (ra *routeAuth) currentSecret() []byte {
	if ra == nil {
		return nil
	}
	ra.mu.RLock()
	defer ra.mu.RUnlock()
	return ra.secret
}

// rotate replaces the secret: saved first, then used for new routes (live
// routes stay up: their peers were admitted already).
func (ra *routeAuth) rotate(s []byte) error {
	cert, err := trust.NodeCertificate(ra.n.kp, trust.RouteCredential{Proof: trust.RouteProof(s, ra.n.pub)}, time.Now())
	if err != nil {
		return err
	}
	if err := ra.n.dd.saveSecret(s); err != nil {
		return err
	}
	ra.mu.Lock()
	ra.secret, ra.cert, ra.plain = s, cert, cert
	ra.mu.Unlock()
	return nil
}

// credential resolves --token and the data dir into this node's route
// credential, saving a new secret when it is given or generated.
func (n *Node) credential() (*routeAuth, error) {
	ra := &routeAuth{n: n}
	saved, err := n.dd.loadSecret()
	if err != nil {
		return nil, err
	}
	tok := n.opts.Token
	var cred trust.RouteCredential
	switch {
	case strings.HasPrefix(tok, trust.SecretPrefix):
		s, err := trust.ParseSecret(tok)
		if err != nil {
			return nil, fmt.Errorf("%w: --token: %v", ErrOptions, err)
		}
		if saved != nil && string(saved) != string(s) {
			return nil, fmt.Errorf("%w: --token: %s already holds another swarm secret (%s); use that data dir's swarm, or another --data",
				ErrOptions, n.opts.DataDir, SecretFile)
		}
		if saved == nil {
			if err := n.dd.saveSecret(s); err != nil {
				return nil, err
			}
		}
		ra.secret = s
	case strings.HasPrefix(tok, trust.TokenPrefix):
		if saved != nil {
			return nil, fmt.Errorf("%w: --token: a one-time token, but %s already holds the swarm secret", ErrOptions, n.opts.DataDir)
		}
		c, err := trust.InspectToken(tok)
		if err != nil {
			return nil, fmt.Errorf("%w: --token: %v", ErrOptions, err)
		}
		// Said here rather than as a refused route the joiner cannot read.
		if err := c.CheckKey(n.pub); err != nil {
			return nil, fmt.Errorf("%w: --token: %v (the key in %s); ask for a token for this node's key", ErrOptions, err, n.dd.file(NodeSeedFile))
		}
		cred.Token = tok
		ra.cred = "token"
	case tok != "":
		return nil, fmt.Errorf("%w: --token: want a swarm secret (%s…) or a join token (%s…)", ErrOptions, trust.SecretPrefix, trust.TokenPrefix)
	case saved != nil:
		ra.secret = saved
	case len(n.opts.Join) == 0 && !n.edge:
		// A founder with no credential: a new swarm, with a new secret.
		text, err := trust.GenerateSecret()
		if err != nil {
			return nil, err
		}
		s, _ := trust.ParseSecret(text)
		if err := n.dd.saveSecret(s); err != nil {
			return nil, err
		}
		ra.secret = s
		n.log.Info("new swarm secret: start other nodes with --token $(cat FILE), or issue one-time tokens with `robonet token create`",
			"file", n.dd.file(SecretFile))
	default:
		st, _ := n.dd.loadState()
		if st.Chevron == "" {
			return nil, fmt.Errorf("%w: --join needs --token: the swarm secret, or a one-time token from `robonet token create`", ErrOptions)
		}
		ra.cred = "member" // admitted before: members know this key
	}
	if ra.secret != nil {
		cred.Proof = trust.RouteProof(ra.secret, n.pub)
		ra.cred = "secret"
	}
	cert, err := trust.NodeCertificate(n.kp, cred, time.Now())
	if err != nil {
		return nil, fmt.Errorf("route certificate: %w", err)
	}
	ra.cert, ra.plain = cert, cert
	ra.known = n.dd.loadKnownMembers()
	if cred.Token != "" {
		if ra.plain, err = trust.NodeCertificate(n.kp, trust.RouteCredential{}, time.Now()); err != nil {
			return nil, fmt.Errorf("route certificate: %w", err)
		}
	}
	return ra, nil
}

// tlsConfig is the routes' TLS: TLS 1.3, both sides present their node
// certificate, and verify (below) replaces chain verification. A one-time
// token travels only in the certificate this node shows when it dials: in
// TLS 1.3 the accepting side shows its certificate before it has checked
// the dialer, so a token there would go to anyone who connects. Session
// tickets are off because a resumed session skips VerifyPeerCertificate.
func (ra *routeAuth) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			ra.mu.RLock()
			defer ra.mu.RUnlock()
			c := ra.plain
			return &c, nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			ra.mu.RLock()
			defer ra.mu.RUnlock()
			c := ra.cert
			return &c, nil
		},
		ClientAuth:             tls.RequireAnyClientCert,
		InsecureSkipVerify:     true, // no CA: VerifyPeerCertificate decides
		VerifyPeerCertificate:  ra.verify,
		SessionTicketsDisabled: true,
	}
}

func (ra *routeAuth) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	n := ra.n
	now := time.Now()
	pc, err := trust.CheckPeerCertificate(raw, now)
	if err != nil {
		n.log.Warn("route refused", "err", err)
		return fmt.Errorf("%w: %v", ErrAdmission, err)
	}
	if err := ra.admit(pc, now); err != nil {
		n.log.Warn("route refused", "key", pc.Pub, "err", err)
		return err
	}
	return nil
}

func (ra *routeAuth) admit(pc trust.PeerCert, now time.Time) error {
	n := ra.n
	if n.ids.isRevoked(pc.Pub) {
		return fmt.Errorf("%w: key %s is revoked", ErrAdmission, pc.Pub)
	}
	if pc.Pub == n.pub {
		return nil // a route to ourselves, which nats-server then drops
	}
	if _, ok := n.ids.nodeChevron(pc.Pub); ok {
		return nil
	}
	if ra.knownMember(pc.Pub) {
		// A member this node knew when it last ran: a node restarting
		// after a rotation it missed holds the old secret, so it cannot
		// check the members' proofs until it has read its new one.
		return nil
	}
	secret := ra.currentSecret()
	if secret == nil {
		if n.selfChev().IsZero() {
			// A node without the secret (joining with a token, or a
			// token-admitted member restarting) knows no members until it
			// has joined: it trusts the nodes it reaches first, as ssh does
			// a new host. The members it reaches check it properly.
			return nil
		}
		// A member that holds the secret checked the newcomer's token and
		// recorded its use, signed (rn_tokens "key.<pub>"): that record
		// admits it here too. Without this, every node colonized before
		// refused every node colonized after (nats-server gossips all
		// routes), and retried the refusal in a loop.
		if ra.tokenAdmitted(pc.Pub) {
			return nil
		}
		return fmt.Errorf("%w: key %s is not a member (yet), and this node (admitted by a token) cannot check secrets or tokens", ErrAdmission, pc.Pub)
	}
	if len(pc.Cred.Proof) > 0 {
		if trust.CheckRouteProof(secret, pc.Pub, pc.Cred.Proof) {
			return nil
		}
		return fmt.Errorf("%w: key %s: proof of the swarm secret does not verify (another swarm's secret?)", ErrAdmission, pc.Pub)
	}
	if pc.Cred.Token != "" {
		c, err := trust.ParseToken(pc.Cred.Token, secret, now)
		if err != nil {
			return fmt.Errorf("%w: key %s: %v", ErrAdmission, pc.Pub, err)
		}
		// Before useToken: a refused key must not use up the bound key's token.
		if err := c.CheckKey(pc.Pub); err != nil {
			return fmt.Errorf("%w: %v", ErrAdmission, err)
		}
		return ra.useToken(c.ID, pc.Pub, pc.Cred.Token)
	}
	// A node admitted by a token shows it only when it dials; when a member
	// dials it (nats-server's gossip makes every member do so), it is known
	// by the token's record of its key.
	if ra.tokenAdmitted(pc.Pub) {
		return nil
	}
	return fmt.Errorf("%w: key %s is not a member and shows no secret or token", ErrAdmission, pc.Pub)
}

// routeTLSTimeout bounds a route's TLS handshake; admitBudget, inside it,
// bounds the JetStream reads and writes that admitting a token needs. Both
// cover a stall of several seconds: when a swarm grows from two to three
// members, the leader raises every bucket from R1 to R3, and each stream
// takes no writes until its new group has elected a leader. A second
// joiner arriving then (colonizing hosts at once) must wait, not be told
// its token is wrong.
const (
	routeTLSTimeout = 12 * time.Second
	admitBudget     = 10 * time.Second
)

// transientJS reports whether a JetStream error may pass on its own (no
// answer in time, no stream leader yet) rather than being an answer.
func transientJS(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code == 503 // JetStream (or the stream's group) temporarily unavailable
	}
	return strings.Contains(err.Error(), "(code 10008)") // the same, through LeaderKV
}

// retryJS runs op (each try bounded by a slice of ctx) until it succeeds,
// fails with an answer, or ctx ends.
func retryJS(ctx context.Context, op func(ctx context.Context) error) error {
	wait := 100 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := op(tctx)
		cancel()
		if err == nil || !transientJS(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// tokenAdmitted reports whether a one-time token admitted pub (rn_tokens
// holds "key.<pub>" for each use, and the token's id names the same key).
func (ra *routeAuth) tokenAdmitted(pub string) bool {
	ra.mu.RLock()
	ok := ra.used["key."+pub] != ""
	ra.mu.RUnlock()
	if ok {
		return true
	}
	if ra.n.tokensKV.Load() == nil || ra.n.leaderRead == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ra.n.ctx, admitBudget)
	defer cancel()
	u, ok := ra.readUse(ctx, "key."+pub)
	if !ok || u.Pubkey != pub {
		return false
	}
	byID, ok := ra.readUse(ctx, u.ID)
	if !ok || byID.Pubkey != pub {
		return false
	}
	ra.remember("key."+pub, u.ID)
	return true
}

// readUse reads and checks one rn_tokens record: signed by a registered
// member for this key, and, when this node holds the swarm secret, naming
// a token that was valid under it when it was used.
func (ra *routeAuth) readUse(ctx context.Context, key string) (wire.TokenUse, bool) {
	var e mesh.KVEntry
	var found bool
	err := retryJS(ctx, func(ctx context.Context) (err error) {
		e, found, err = ra.n.leaderRead.Last(ctx, "KV_"+BucketTokens, "$KV."+BucketTokens+"."+key)
		return err
	})
	if err != nil || !found {
		return wire.TokenUse{}, false
	}
	u, err := ra.openUse(key, e.Value)
	if err != nil {
		ra.n.badRecord(BucketTokens, key, err)
		return wire.TokenUse{}, false
	}
	return u, true
}

func (ra *routeAuth) openUse(key string, data []byte) (wire.TokenUse, error) {
	var u wire.TokenUse
	rec, by, err := trust.OpenRecord(BucketTokens, key, data)
	if err != nil {
		return u, err
	}
	if _, member := ra.n.ids.nodeChevron(by); !member {
		return u, fmt.Errorf("token use signed by %s, not a member node", by)
	}
	if err := wire.Decode(rec, &u); err != nil {
		return u, err
	}
	if key != u.ID && key != "key."+u.Pubkey {
		return u, fmt.Errorf("token use for %s (key %s) stored under %s", u.ID, clip(u.Pubkey, 64), key)
	}
	if secret := ra.currentSecret(); secret != nil {
		c, err := trust.ParseToken(u.Token, secret, u.At)
		if err != nil && !errors.Is(err, trust.ErrTokenMAC) {
			return u, fmt.Errorf("token use %s: %v", u.ID, err)
		}
		// A MAC under another secret is a token of an earlier one (rotated
		// since): the signer's word stands for it.
		if err == nil && c.ID != u.ID {
			return u, fmt.Errorf("token use %s carries token %s", u.ID, c.ID)
		}
	}
	return u, nil
}

// useToken records that token id admitted pub; the same key may use it
// again (it routes to every member), another key may not.
func (ra *routeAuth) useToken(id, pub, token string) error {
	ra.mu.RLock()
	seen := ra.used[id]
	ra.mu.RUnlock()
	if seen != "" {
		if seen == pub {
			return nil
		}
		return fmt.Errorf("%w: one-time token %s was already used by another key", ErrAdmission, id)
	}
	kv := ra.n.tokensKV.Load()
	if kv == nil {
		return fmt.Errorf("%w: one-time token %s: the swarm's state is not available yet", ErrAdmission, id)
	}
	ctx, cancel := context.WithTimeout(ra.n.ctx, admitBudget)
	defer cancel()
	rec, _ := json.Marshal(wire.TokenUse{ID: id, Pubkey: pub, Token: token, At: time.Now().UTC()})
	byID, err := trust.SignRecord(ra.n.kp, BucketTokens, id, rec)
	if err != nil {
		return fmt.Errorf("%w: one-time token %s: %v", ErrAdmission, id, err)
	}
	// A try that timed out may have been written: the retry then finds
	// the key taken, and reads whose it is below.
	err = retryJS(ctx, func(ctx context.Context) error {
		_, err := (*kv).Create(ctx, id, byID)
		return err
	})
	if err == nil {
		byKey, _ := trust.SignRecord(ra.n.kp, BucketTokens, "key."+pub, rec)
		if err := retryJS(ctx, func(ctx context.Context) error {
			_, err := (*kv).Put(ctx, "key."+pub, byKey)
			return err
		}); err != nil {
			ra.n.log.Warn("record token key", "id", id, "err", err)
		}
		ra.n.log.Info("one-time token used", "id", id, "key", pub)
		ra.remember(id, pub)
		ra.remember("key."+pub, id)
		return nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: one-time token %s: %v", ErrAdmission, id, err)
	}
	u, ok := ra.readUse(ctx, id)
	if !ok {
		return fmt.Errorf("%w: one-time token %s: its record is not readable yet or does not verify", ErrAdmission, id)
	}
	ra.remember(id, u.Pubkey)
	if u.Pubkey == pub {
		return nil
	}
	return fmt.Errorf("%w: one-time token %s was already used by another key", ErrAdmission, id)
}

// remember keeps which key used token id, so the joiner's further routes
// (it dials every member) need no JetStream read during their handshake.
func (ra *routeAuth) remember(id, pub string) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	if ra.used == nil || len(ra.used) > 4096 {
		ra.used = map[string]string{}
	}
	ra.used[id] = pub
}

// spkiPin is nats-server's pin for a node key: the hex SHA-256 of the
// certificate's SubjectPublicKeyInfo, which for our certificates is the
// nkey's ed25519 key.
func spkiPin(pub string) (string, error) {
	raw, err := nkeys.Decode(nkeys.PrefixByteServer, []byte(pub))
	if err != nil {
		if raw, err = nkeys.Decode(nkeys.PrefixByteUser, []byte(pub)); err != nil {
			return "", err
		}
	}
	der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(raw))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// revokedRouteUp reports whether a route to a revoked key is connected.
func (n *Node) revokedRouteUp() bool {
	rz, err := n.srv.Routez(nil)
	if err != nil {
		return false
	}
	n.ids.mu.Lock()
	names := map[string]bool{}
	for pub := range n.ids.revoked {
		if len(pub) > 11 {
			names[serverName(pub)] = true
		}
	}
	n.ids.mu.Unlock()
	for _, r := range rz.Routes {
		if names[r.RemoteName] {
			return true
		}
	}
	return false
}

// memberPins pins every registered, unrevoked node: a reload with them
// makes nats-server close routes whose certificate is not among them
// (recheckPinnedCerts), which is how a revoked node is cut off at once.
func (n *Node) memberPins() server.PinnedCertSet {
	set := server.PinnedCertSet{}
	add := func(pub string) {
		if p, err := spkiPin(pub); err == nil {
			set[p] = struct{}{}
		}
	}
	add(n.pub)
	n.ids.mu.Lock()
	for pub := range n.ids.keyChev {
		if _, bad := n.ids.revoked[pub]; !bad {
			add(pub)
		}
	}
	n.ids.mu.Unlock()
	return set
}

// SecretFile holds the swarm secret in the data dir (mode 0600).
const SecretFile = "swarm.secret"

func (d *dataDir) loadSecret() ([]byte, error) {
	b, err := os.ReadFile(d.file(SecretFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := trust.ParseSecret(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.file(SecretFile), err)
	}
	return s, nil
}

func (d *dataDir) saveSecret(s []byte) error {
	text := trust.FormatSecret(s)
	return writeFileAtomic(d.file(SecretFile), []byte(text+"\n"), 0o600, false)
}

// Joined says how this node was admitted, for its NodeInfo.
func (ra *routeAuth) joined() string {
	if ra == nil {
		return ""
	}
	return ra.cred
}
