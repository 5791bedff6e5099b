package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// XKeyFile holds the node's curve key (nkeys xkey, mode 0600): members
// seal a rotated swarm secret to it, so the secret never crosses the
// network in the clear, not even inside the mesh where observers listen.
const XKeyFile = "node.xk"

// RotateReply says which members took the new secret.
type RotateReply struct {
	Rotated []string `json:"rotated"`          // names of the members that saved it (this node included)
	Failed  []string `json:"failed,omitempty"` // "name: why" for the others
}

// sealedSecret carries a new swarm secret to one member.
type sealedSecret struct {
	From   string `json:"from"`   // the sender's xkey
	Sealed []byte `json:"sealed"` // nkeys Seal of the 32 bytes to the recipient's xkey
}

// xkey loads or creates the node's curve key.
func (d *dataDir) xkey() (nkeys.KeyPair, error) {
	path := d.file(XKeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromCurveSeed(bytes.TrimSpace(b))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrDataDir, path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s: %v", ErrDataDir, path, err)
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, append(seed, '\n'), 0o600, true); err != nil {
		return nil, err
	}
	return kp, nil
}

// serveRotation answers rotate (on the node asked) and secret (on every
// member, addressed by server name).
func (n *Node) serveRotation() error {
	if n.routes == nil {
		return nil
	}
	reply := func(m *nats.Msg, v any, err error) {
		var r wire.Reply
		if err != nil {
			r.Error = &wire.Error{Code: wire.CodeBadRequest, Msg: err.Error()}
		} else {
			r.Data, _ = json.Marshal(v)
		}
		out, _ := json.Marshal(r)
		_ = n.respond(m, out)
	}
	if _, err := n.nc.Subscribe(subjects.QueryAt(subjects.QueryRotate, n.ServerName()), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		v, err := n.rotateSecret(n.ctx)
		reply(m, v, err)
	}); err != nil {
		return err
	}
	_, err := n.nc.Subscribe(subjects.QueryAt(subjects.QuerySecret, n.ServerName()), func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		reply(m, struct{}{}, n.receiveSecret(m))
	})
	return err
}

// rotateSecret makes a new swarm secret and seals it to every registered
// member with an xkey; it takes effect here once sent. Members that are
// down keep the old secret: they still route (members are admitted by
// key), but cannot check proofs or tokens made with the new one until they
// get it (rotate again once they are back).
func (n *Node) rotateSecret(ctx context.Context) (RotateReply, error) {
	var out RotateReply
	if n.routes.currentSecret() == nil {
		return out, fmt.Errorf("node %s holds no swarm secret (admitted by a token): ask a node that does", n.name)
	}
	text, err := trust.GenerateSecret()
	if err != nil {
		return out, err
	}
	secret, _ := trust.ParseSecret(text)
	n.ids.mu.Lock()
	var peers []wire.NodeInfo
	for _, in := range n.ids.infos {
		if in.Pubkey != n.pub && in.XKey != "" {
			if _, bad := n.ids.revoked[in.Pubkey]; !bad {
				peers = append(peers, in)
			}
		}
	}
	n.ids.mu.Unlock()
	sort.Slice(peers, func(i, j int) bool { return subjects.CompareText(peers[i].Chevron, peers[j].Chevron) < 0 })
	for _, p := range peers {
		if err := n.sendSecret(ctx, p, secret); err != nil {
			out.Failed = append(out.Failed, fmt.Sprintf("%s: %v", p.Name, err))
			continue
		}
		out.Rotated = append(out.Rotated, p.Name)
	}
	if err := n.routes.rotate(secret); err != nil {
		return out, err
	}
	out.Rotated = append(out.Rotated, n.name)
	n.log.Warn("swarm secret rotated", "members", len(out.Rotated), "failed", len(out.Failed))
	return out, nil
}

func (n *Node) sendSecret(ctx context.Context, p wire.NodeInfo, secret []byte) error {
	sealed, err := n.xkp.Seal(secret, p.XKey)
	if err != nil {
		return err
	}
	xpub, _ := n.xkp.PublicKey()
	data, _ := json.Marshal(sealedSecret{From: xpub, Sealed: sealed})
	m := &nats.Msg{Subject: subjects.QueryAt(subjects.QuerySecret, p.Server), Data: data}
	if err := n.signer.SignMsg(m); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := n.nc.RequestMsgWithContext(cctx, m)
	if err != nil {
		return err
	}
	var r wire.Reply
	if err := wire.Decode(resp.Data, &r); err != nil {
		return err
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

// receiveSecret takes a sealed secret from a member that holds one.
func (n *Node) receiveSecret(m *nats.Msg) error {
	h, err := mesh.ParseSigned(m)
	if err != nil {
		return err
	}
	if role, ok := n.roleOf(h.From); !ok || role != wire.RoleNode || h.From == n.pub {
		return fmt.Errorf("a new secret must come from a member node, not %s", h.From)
	}
	if drop, err := n.observe(h, m.Subject, m.Data, time.Now()); drop || err != nil {
		return fmt.Errorf("refused: %v", err)
	}
	var ss sealedSecret
	if err := wire.Decode(m.Data, &ss); err != nil {
		return err
	}
	chev, _ := n.ids.nodeChevron(h.From)
	n.ids.mu.Lock()
	want := n.ids.infos[chev.String()].XKey
	n.ids.mu.Unlock()
	if want == "" || ss.From != want {
		return fmt.Errorf("sealed by xkey %q, but %s registered %q", clip(ss.From, 64), chev, want)
	}
	secret, err := n.xkp.Open(ss.Sealed, ss.From)
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	if len(secret) != trust.SecretSize {
		return fmt.Errorf("secret of %d bytes", len(secret))
	}
	if err := n.routes.rotate(secret); err != nil {
		return err
	}
	n.log.Warn("swarm secret rotated", "by", chev.String())
	return nil
}

func (n *Node) xkeyPub() string {
	if n.xkp == nil {
		return ""
	}
	p, _ := n.xkp.PublicKey()
	return p
}
