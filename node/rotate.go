package node

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// XKeyFile holds the node's curve key (nkeys xkey, mode 0600): members
// seal a rotated swarm secret to it, so the secret never crosses the
// network in the clear, not even inside the mesh where observers listen.
const XKeyFile = "node.xk"

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

// EpochFile keeps the epoch of the last rotated secret this node installed.
const EpochFile = "secret.epoch"

// secretEpoch is the epoch of the rotated secret this node holds (0: none).
func (d *dataDir) secretEpoch() int64 {
	b, err := os.ReadFile(d.file(EpochFile))
	if err != nil {
		return 0
	}
	e, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || e < 0 {
		return 0
	}
	return e
}

// onSecretEntry installs a rotated swarm secret meant for this node: a
// record in rn_secrets under its key, signed by a current admin, newer than
// the one it holds, sealed to its xkey. A member that was down when the
// admin rotated finds its record when it is back. Anything else is ignored
// and counted: no member, and no one who can write the KV, can choose the
// secret (the sealing is the admin's; the signature is checked here).
// It reports false when the record may verify later (its signer not yet
// known as an admin while rn_users is still being read).
func (n *Node) onSecretEntry(e jetstream.KeyValueEntry) (settled bool) {
	if e == nil || e.Key() != n.pub || e.Operation() != jetstream.KeyValuePut {
		return true
	}
	rec, by, err := trust.OpenRecord(BucketSecrets, e.Key(), e.Value())
	if err != nil {
		n.badRecord(BucketSecrets, e.Key(), err)
		return true
	}
	var ss wire.SealedSecret
	if err := wire.Decode(rec, &ss); err != nil || ss.Member != n.pub {
		n.badRecord(BucketSecrets, e.Key(), fmt.Errorf("not a sealed secret for %s: %v", n.pub, err))
		return true
	}
	if role, ok := n.ids.role(by); !ok || role != wire.RoleAdmin || n.ids.isRevoked(by) {
		if n.ids.founderKey() == "" {
			return false // the admin chain is not read yet
		}
		n.badRecord(BucketSecrets, e.Key(), fmt.Errorf("rotation signed by %s, who is not an admin of this swarm", by))
		return true
	}
	held := n.dd.secretEpoch()
	if ss.Epoch <= held {
		return true // installed before (or older)
	}
	secret, err := n.xkp.Open(ss.Sealed, ss.From)
	if err != nil {
		n.badRecord(BucketSecrets, e.Key(), fmt.Errorf("sealed secret does not open with this node's xkey: %v", err))
		return true
	}
	if len(secret) != trust.SecretSize {
		n.badRecord(BucketSecrets, e.Key(), fmt.Errorf("sealed secret of %d bytes, want %d", len(secret), trust.SecretSize))
		return true
	}
	if n.routes == nil {
		return true // a single node: no routes to admit
	}
	if err := n.routes.rotate(secret); err != nil {
		n.log.Error("install rotated swarm secret", "err", err)
		return false
	}
	if err := writeFileAtomic(n.dd.file(EpochFile), []byte(strconv.FormatInt(ss.Epoch, 10)+"\n"), 0o600, false); err != nil {
		n.log.Error("save secret epoch", "err", err)
	}
	n.secretEpoch.Store(ss.Epoch)
	n.log.Warn("swarm secret rotated", "by", by, "epoch", ss.Epoch)
	return true
}

func (n *Node) xkeyPub() string {
	if n.xkp == nil {
		return ""
	}
	p, _ := n.xkp.PublicKey()
	return p
}
