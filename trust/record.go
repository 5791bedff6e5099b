package trust

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/wire"
)

// ErrRecord wraps every reason a signed record does not verify.
var ErrRecord = errors.New("trust: bad signed record")

// recordTag separates record signatures from every other signature a key
// makes (HCTH messages sign a different layout), so no signed message can
// pass for a record or the other way round.
const recordTag = "rn-record-v1\x00"

// MaxRecord is the largest record body SignRecord and OpenRecord accept.
const MaxRecord = 64 << 10

// SignedRecord is how rn_users, rn_revoked and rn_approvals records are
// stored: the record's JSON, the public key that signed it and the
// signature over recordTag, bucket, key and the record bytes. Binding the
// bucket and key means a signed record cannot be replayed under another
// name.
type SignedRecord struct {
	Rec json.RawMessage `json:"rec"`
	By  string          `json:"by"`
	Sig string          `json:"sig"` // base64url, no padding
}

func recordInput(bucket, key string, rec []byte) []byte {
	b := make([]byte, 0, len(recordTag)+len(bucket)+len(key)+len(rec)+2)
	b = append(b, recordTag...)
	b = append(b, bucket...)
	b = append(b, 0)
	b = append(b, key...)
	b = append(b, 0)
	return append(b, rec...)
}

// SignRecord wraps rec (JSON) for bucket and key, signed by kp.
func SignRecord(kp nkeys.KeyPair, bucket, key string, rec []byte) ([]byte, error) {
	if len(rec) > MaxRecord || !json.Valid(rec) {
		return nil, fmt.Errorf("%w: record for %s/%s is not JSON of at most %d bytes", ErrRecord, bucket, key, MaxRecord)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecord, err)
	}
	sig, err := kp.Sign(recordInput(bucket, key, rec))
	if err != nil {
		return nil, fmt.Errorf("%w: sign: %v", ErrRecord, err)
	}
	return json.Marshal(SignedRecord{Rec: rec, By: pub, Sig: base64.RawURLEncoding.EncodeToString(sig)})
}

// OpenRecord checks a stored record of bucket and key: well-formed, signed
// by the user or server key it names, over this bucket and key. It returns
// the record's JSON and the signer; whether the signer may write the record
// is the caller's decision.
func OpenRecord(bucket, key string, data []byte) (rec []byte, by string, err error) {
	if len(data) > 2*MaxRecord {
		return nil, "", fmt.Errorf("%w: %s/%s: %d bytes", ErrRecord, bucket, key, len(data))
	}
	var sr SignedRecord
	if err := json.Unmarshal(data, &sr); err != nil {
		return nil, "", fmt.Errorf("%w: %s/%s: not a signed record: %v", ErrRecord, bucket, key, err)
	}
	if len(sr.Rec) == 0 || sr.By == "" || sr.Sig == "" {
		return nil, "", fmt.Errorf("%w: %s/%s: unsigned (no rec, by or sig)", ErrRecord, bucket, key)
	}
	if !nkeys.IsValidPublicUserKey(sr.By) && !nkeys.IsValidPublicServerKey(sr.By) {
		return nil, "", fmt.Errorf("%w: %s/%s: signer %q is not a user or server key", ErrRecord, bucket, key, clipKey(sr.By))
	}
	sig, err := base64.RawURLEncoding.DecodeString(sr.Sig)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s/%s: signature is not base64url: %v", ErrRecord, bucket, key, err)
	}
	kp, err := nkeys.FromPublicKey(sr.By)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %s/%s: %v", ErrRecord, bucket, key, err)
	}
	if err := kp.Verify(recordInput(bucket, key, sr.Rec), sig); err != nil {
		return nil, "", fmt.Errorf("%w: %s/%s: signature by %s does not verify", ErrRecord, bucket, key, sr.By)
	}
	return sr.Rec, sr.By, nil
}

func clipKey(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// UserRecord is an rn_users record whose signature verified, with the key
// that signed it.
type UserRecord struct {
	User wire.User
	By   string
}

// Admins returns the keys whose signatures make records in a swarm: the
// founder's ("" for none yet), and, to a fixpoint, every admin user whose
// record an admin signed. Nodes and clients judge records by it alike. A
// revocation is not considered here: it takes a key's own access away,
// not the records it signed while it was an admin.
func Admins(founder string, recs []UserRecord) map[string]bool {
	admins := map[string]bool{}
	if founder != "" {
		admins[founder] = true
	}
	for grew := true; grew; {
		grew = false
		for _, r := range recs {
			if r.User.Role == wire.RoleAdmin && !admins[r.User.Nkey] && admins[r.By] {
				admins[r.User.Nkey], grew = true, true
			}
		}
	}
	return admins
}
