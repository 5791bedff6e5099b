package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ErrRotate wraps every reason a secret rotation could not be written.
var ErrRotate = errors.New("rotate")

// Rotation is what RotateSecret wrote: the epoch every member must reach,
// and the members it sealed the new secret to.
type Rotation struct {
	Epoch   int64             `json:"epoch"`
	Members []wire.NodeInfo   `json:"-"`
	Skipped map[string]string `json:"skipped,omitempty"` // chevron → why no secret was sealed to it
}

// RegisteredNodes reads rn_nodes and returns the registrations whose
// signature holds (each is signed by the node key it names, for the
// chevron it is stored under); the others are named in bad.
func (ids *Identities) RegisteredNodes(ctx context.Context) (nodes []wire.NodeInfo, bad []string, err error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	keys, err := ids.nodes.ListKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", NodesBucket, err)
	}
	for k := range keys.Keys() {
		e, found, err := ids.read.Last(ctx, "KV_"+NodesBucket, "$KV."+NodesBucket+"."+k)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			continue
		}
		info, err := OpenNodeRecord(k, e.Value)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", k, err))
			continue
		}
		nodes = append(nodes, info)
	}
	sort.Slice(nodes, func(i, j int) bool { return subjects.CompareText(nodes[i].Chevron, nodes[j].Chevron) < 0 })
	return nodes, bad, nil
}

// OpenNodeRecord checks one rn_nodes record: signed by the node key it
// names, for the chevron it is stored under. Nodes and clients check
// registrations with it.
func OpenNodeRecord(key string, data []byte) (wire.NodeInfo, error) {
	var info wire.NodeInfo
	rec, by, err := trust.OpenRecord(NodesBucket, key, data)
	if err != nil {
		return info, err
	}
	if err := wire.Decode(rec, &info); err != nil {
		return info, fmt.Errorf("registration %s: %w", key, err)
	}
	if info.Chevron != key {
		return info, fmt.Errorf("registration under %s names chevron %q", key, clipText(info.Chevron, 64))
	}
	if info.Pubkey != by {
		return info, fmt.Errorf("registration %s names key %s but is signed by %s", key, clipText(info.Pubkey, 64), by)
	}
	return info, nil
}

// RotateSecret makes a new swarm secret here, in the admin's process, and
// writes it to rn_secrets for every registered, unrevoked member, sealed to
// the member's curve key and signed with the admin's key. Members install
// it when they read their record, at once or when they are next up; the
// secret itself never leaves this process in the clear, and no node chooses
// it. The records' epoch is now; members report the epoch they hold in
// their heartbeats (wire.Member.SecretEpoch).
func (ids *Identities) RotateSecret(ctx context.Context, now time.Time) (Rotation, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	rot := Rotation{Epoch: now.UnixNano(), Skipped: map[string]string{}}
	nodes, bad, err := ids.RegisteredNodes(ctx)
	if err != nil {
		return rot, fmt.Errorf("%w: %v", ErrRotate, err)
	}
	for _, b := range bad {
		chev, _, _ := strings.Cut(b, ":")
		rot.Skipped[chev] = "its registration does not verify"
	}
	admins, revoked, err := ids.swarmAdmins(ctx)
	if err != nil {
		return rot, fmt.Errorf("%w: %v", ErrRotate, err)
	}
	me, _ := ids.kp.PublicKey()
	if !admins[me] || revoked[me] {
		return rot, fmt.Errorf("%w: key %s is not a swarm admin (or is revoked): members would ignore the rotation", ErrNotAdmin, me)
	}
	text, err := trust.GenerateSecret()
	if err != nil {
		return rot, fmt.Errorf("%w: %v", ErrRotate, err)
	}
	secret, err := trust.ParseSecret(text)
	if err != nil {
		return rot, fmt.Errorf("%w: %v", ErrRotate, err)
	}
	// One curve key per rotation: members check the admin's signature on
	// the record, not who sealed it.
	xkp, err := nkeys.CreateCurveKeys()
	if err != nil {
		return rot, fmt.Errorf("%w: %v", ErrRotate, err)
	}
	xpub, _ := xkp.PublicKey()
	for _, in := range nodes {
		switch {
		case revoked[in.Pubkey]:
			rot.Skipped[in.Chevron] = "its key is revoked"
			continue
		case in.XKey == "":
			rot.Skipped[in.Chevron] = "it registered no curve key (xkey)"
			continue
		}
		sealed, err := xkp.Seal(secret, in.XKey)
		if err != nil {
			rot.Skipped[in.Chevron] = fmt.Sprintf("seal to its xkey: %v", err)
			continue
		}
		rec, _ := json.Marshal(wire.SealedSecret{Member: in.Pubkey, Epoch: rot.Epoch, From: xpub, Sealed: sealed, At: now.UTC()})
		data, err := trust.SignRecord(ids.kp, SecretsBucket, in.Pubkey, rec)
		if err != nil {
			return rot, fmt.Errorf("%w: %v", ErrRotate, err)
		}
		if _, err := ids.secrets.Put(ctx, in.Pubkey, data); err != nil {
			return rot, fmt.Errorf("%w: write %s's record: %v", ErrRotate, in.Chevron, err)
		}
		rot.Members = append(rot.Members, in)
	}
	if len(rot.Members) == 0 {
		return rot, fmt.Errorf("%w: no registered member to send a secret to", ErrRotate)
	}
	return rot, nil
}

// revokedKeys is the set of keys revoked as nodes judge it: by a record
// an admin signed, or one carrying a fork proof of its key. Records anyone
// else wrote are not counted (they change nothing on the nodes either).
func (ids *Identities) revokedKeys(ctx context.Context, admins map[string]bool) (map[string]bool, error) {
	out := map[string]bool{}
	keys, err := ids.revoked.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return out, nil
		}
		return nil, err
	}
	for k := range keys.Keys() {
		pub, _, _ := strings.Cut(k, ".")
		e, found, err := ids.read.Last(ctx, "KV_"+RevokedBucket, "$KV."+RevokedBucket+"."+k)
		if err != nil {
			return nil, err
		}
		if !found {
			continue
		}
		rec, by, err := trust.OpenRecord(RevokedBucket, k, e.Value)
		var r wire.Revocation
		if err != nil || wire.Decode(rec, &r) != nil || r.Pubkey != pub {
			continue
		}
		if admins[by] || (r.Proof != nil && r.Proof.Key == pub && trust.VerifyForkProof(r.Proof) == nil) {
			out[pub] = true
		}
	}
	return out, nil
}
