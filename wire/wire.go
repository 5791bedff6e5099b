// Package wire owns the JSON message types and header names that cross the
// network between robonet nodes and clients, and the wire version. It is the
// contract that `nats sub` readers and other implementations rely on: field
// names here never change meaning; new fields are added, old ones kept.
//
// It does not build subjects (package subjects) or send anything (package mesh).
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the wire version every robonet message carries in HdrVer.
const Version = "rn/1"

// Header names carried by every message a node or operator sends (HCTH).
const (
	HdrVer  = "Rn-Ver"
	HdrFrom = "Rn-From"
	HdrSeq  = "Rn-Seq"
	HdrPrev = "Rn-Prev"
	HdrSig  = "Rn-Sig"
)

// HdrApproval carries the id of the rn_approvals record that authorises a
// dangerous command; it is covered by nothing but the record itself, which
// names the verb and the digest of the arguments it approves.
const HdrApproval = "Rn-Approval"

// MaxMessage is the largest robonet payload a node accepts from the network
// unless a message type documents a larger limit.
const MaxMessage = 1 << 20

// Member states as shown by `robonet nodes`.
const (
	StateAlive   = "alive"   // heartbeats arriving
	StateSuspect = "suspect" // heartbeats late, route still up
	StateOffline = "offline" // registered but not live: crashed, partitioned, or stopped
	StateLeaving = "leaving" // shutting down cleanly
)

// Endpoints are where a node can be reached.
type Endpoints struct {
	Client  string `json:"client,omitempty"`  // NATS client listen address
	Cluster string `json:"cluster,omitempty"` // NATS route listen address, empty for a single node
}

// NodeInfo is a node's durable declaration, kept in the rn_nodes bucket under
// its chevron: written on join and on change, never for liveness.
type NodeInfo struct {
	Chevron   string            `json:"chevron"`
	Name      string            `json:"name"`
	Pubkey    string            `json:"pubkey"`
	Server    string            `json:"server"` // the embedded nats-server's name (stable, from the key)
	Caps      []string          `json:"caps"`
	Tags      map[string]string `json:"tags"`
	Version   string            `json:"version"`
	OS        string            `json:"os,omitempty"`
	Arch      string            `json:"arch,omitempty"`
	Endpoints Endpoints         `json:"endpoints"`
	Started   time.Time         `json:"started"`
	// Operator is the public key of the node's local operator (the nkey in
	// its data dir): an admin identity every node accepts.
	Operator string `json:"operator,omitempty"`
	// Joined says how the node was admitted: "secret", "token" or "member".
	Joined string `json:"joined,omitempty"`
	// XKey is the node's curve public key (nkeys xkey): a rotated swarm
	// secret is sealed to it.
	XKey string `json:"xkey,omitempty"`
	// Founding says the node founds the swarm (started with --founder or
	// with no one to join): other nodes then leave the founder record to it.
	Founding bool `json:"founding,omitempty"`
	// Role is NodeRoleCore or NodeRoleEdge ("" from nodes older than roles: core).
	Role string `json:"role,omitempty"`
}

// Roles of the identities a swarm knows.
const (
	RoleAdmin    = "admin"    // everything, including users, tokens and revocation
	RoleOperator = "operator" // commands of every tier, macros, approvals
	RoleObserver = "observer" // subscribe rn.>, publish only read-verb commands and queries
	RoleNode     = "node"     // a member node's own key
)

// User is a person or program allowed to connect, stored in rn_users under
// its name.
type User struct {
	Name  string    `json:"name"`
	Role  string    `json:"role"`
	Nkey  string    `json:"nkey"` // public user key, 'U…'
	Added time.Time `json:"added"`
	By    string    `json:"by,omitempty"` // public key of the admin who added it
}

// Revocation is stored in rn_revoked under the revoked public key.
type Revocation struct {
	Pubkey  string    `json:"pubkey"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	By      string    `json:"by,omitempty"`
	Chevron string    `json:"chevron,omitempty"`
	// Proof, when set, is the evidence that Pubkey forked its chain: any
	// node can check it, so a revocation carrying one needs no admin.
	Proof *ForkProof `json:"proof,omitempty"`
}

// Evidence is one HCTH-signed message reduced to what its signature covers
// (trust.VerifyEvidence checks it).
type Evidence struct {
	Ver     string `json:"ver"`
	Seq     uint64 `json:"seq"`
	Prev    string `json:"prev"`    // the previous chain hash, 64 hex digits
	Subject string `json:"subject"` // the subject the message was signed for
	Digest  string `json:"digest"`  // SHA-256 of the payload, 64 hex digits
	Sig     string `json:"sig"`     // base64url ed25519 signature, as in Rn-Sig
}

// ForkProof shows that Key signed two messages that cannot both be on one
// chain: the same seq with different contents, or B at seq A.Seq+1 naming a
// predecessor other than A.
type ForkProof struct {
	Key string   `json:"key"`
	A   Evidence `json:"a"`
	B   Evidence `json:"b"`
}

// Heartbeat is published on rn.<chevron>.evt.hb every second.
type Heartbeat struct {
	Chevron string    `json:"chevron"`
	Name    string    `json:"name"`
	Pubkey  string    `json:"pubkey"`
	Server  string    `json:"server"`
	Seq     uint64    `json:"seq"`
	Sent    time.Time `json:"sent"`
	Started time.Time `json:"started"`
	Load    float64   `json:"load"` // 1-minute load average divided by CPUs
	Leader  bool      `json:"leader"`
	Version string    `json:"version"`
	// CPU, Mem and Disk are the node's gauges as fractions 0..1 (busy CPU,
	// used memory, used space of the data dir's filesystem), for peers'
	// Sentinels; absent from nodes that do not measure them.
	CPU  float64 `json:"cpu,omitempty"`
	Mem  float64 `json:"mem,omitempty"`
	Disk float64 `json:"disk,omitempty"`
	// SecretEpoch is the epoch of the swarm secret the node holds (0: none
	// rotated to it, or it holds none), so an admin sees who has a rotation.
	SecretEpoch int64 `json:"secret_epoch,omitempty"`
	// UsersRev is the rn_users revision the node has applied: a user
	// added at revision r works on every node whose UsersRev ≥ r.
	UsersRev uint64 `json:"users_rev,omitempty"`
	// Role is NodeRoleCore or NodeRoleEdge.
	Role string `json:"role,omitempty"`
	// EveryMs is the sender's heartbeat interval in milliseconds: receivers
	// judge its staleness against it (edges beat every 5 s, core nodes every
	// second). 0: the receiver's own timing.
	EveryMs int64 `json:"every_ms,omitempty"`
}

// Alert is a Sentinel finding a node publishes on rn.<its chevron>.evt.alert
// about a peer (a node's chevron, or a user's key).
type Alert struct {
	Kind     string    `json:"kind"`              // "alert"
	Peer     string    `json:"peer"`              // chevron of a node, or a key
	Chevron  string    `json:"chevron,omitempty"` // the peer's chevron when it is a node
	By       string    `json:"by"`                // the reporting node's chevron
	Signal   string    `json:"signal"`            // msg_rate, cmd_rate, cmd_mix, reply_latency, hb_jitter, cpu, mem, disk
	Score    float64   `json:"score"`
	Value    float64   `json:"value"`
	Baseline float64   `json:"baseline"`
	Level    string    `json:"level"`            // alert, quarantine, disconnect
	Action   string    `json:"action,omitempty"` // what the reporter did: quarantined, revoked
	Detail   string    `json:"detail,omitempty"`
	Time     time.Time `json:"time"`
}

// Member is one row of the live registry: the declaration joined with what
// liveness says. `robonet nodes --json` prints an array of these.
type Member struct {
	Chevron  string            `json:"chevron"`
	Name     string            `json:"name"`
	Pubkey   string            `json:"pubkey"`
	Server   string            `json:"server"`
	State    string            `json:"state"`
	Leader   bool              `json:"leader"`
	Caps     []string          `json:"caps"`
	Tags     map[string]string `json:"tags"`
	Load     float64           `json:"load"`
	Version  string            `json:"version"`
	Started  time.Time         `json:"started"`
	LastSeen time.Time         `json:"last_seen,omitzero"`
	OS       string            `json:"os,omitempty"`
	Arch     string            `json:"arch,omitempty"`
	Client   string            `json:"client,omitempty"`
	// SecretEpoch: the epoch of the rotated swarm secret the member holds
	// (its heartbeat's), 0 when none was rotated to it.
	SecretEpoch int64 `json:"secret_epoch,omitempty"`
	// UsersRev is the rn_users revision the node has applied: a user
	// added at revision r works on every node whose UsersRev ≥ r.
	UsersRev uint64 `json:"users_rev,omitempty"`
	// Tier is the node's HCTH trust tier, 0 (read-only) to 3 (critical), as
	// the swarm judges it: the lower median of what the answering node's
	// ledger and each live member's latest TierView give the node's key,
	// never the node's view of itself; 0 when the answering node has the key
	// quarantined or revoked (a proven fork quarantines it on every member
	// at once), or when nobody has judged it yet. Selectors' trust>=N match
	// on it.
	Tier int `json:"tier"`
	// Role is NodeRoleCore or NodeRoleEdge.
	Role string `json:"role,omitempty"`
}

// TierView is one node's judgement of the other nodes, published on
// rn.<chevron>.evt.tiers every few seconds: the tier its HCTH ledger gives
// each registered node key it knows (0 for one it quarantined), its own key
// excepted. Members combine the views into Member.Tier.
type TierView struct {
	Chevron string         `json:"chevron"` // the judging node
	Pubkey  string         `json:"pubkey"`  // the judging node's key
	Tiers   map[string]int `json:"tiers"`   // node public key -> tier 0..3
	Sent    time.Time      `json:"sent"`
}

// Status describes a swarm as seen from one node (`robonet status --json`).
type Status struct {
	Swarm       string    `json:"swarm"`
	Chevron     string    `json:"chevron"`     // the answering node
	Name        string    `json:"name"`        // the answering node
	State       string    `json:"state"`       // the answering node's own state
	Leader      string    `json:"leader"`      // the lease holder's chevron, "" when none
	LeaderName  string    `json:"leader_name"` // the lease holder's name
	Token       uint64    `json:"token"`       // the lease's fencing token
	Members     int       `json:"members"`     // live members
	Known       int       `json:"known"`       // registered members, live or not
	MetaLeader  string    `json:"meta_leader"` // JetStream meta leader (server name)
	Clustered   bool      `json:"clustered"`   // JetStream clustered (false: single node)
	Replicas    int       `json:"replicas"`    // the lowest replica count over the swarm's buckets (0: not read yet)
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	JetStreamOK bool      `json:"jetstream_ok"` // the node's JetStream is current
	// Behind names the buckets (KV and object store) replicated on fewer
	// servers than the swarm wants: 3 once it has three JetStream servers
	// or any bucket is R3, else 1. Absent when none is behind; the leader
	// raises them whenever three JetStream servers are up.
	Behind []string `json:"behind,omitempty"`
	// Founder is the swarm founder's key as the answering node pinned it
	// (its root of the admin chain); "" until it has seen one.
	Founder string `json:"founder,omitempty"`
	// Role is the answering node's (NodeRoleCore or NodeRoleEdge).
	Role string `json:"role,omitempty"`
	// CoreSize is the core's configured size, CoreLive its live members,
	// CoreBelow true when fewer are live than the size says.
	CoreSize  int  `json:"core_size,omitempty"`
	CoreLive  int  `json:"core_live,omitempty"`
	CoreBelow bool `json:"core_below,omitempty"`
	// CoreLink is, on an edge, the core server its leaf connection is to
	// ("" while it has none) and since when.
	CoreLink      string    `json:"core_link,omitempty"`
	CoreLinkSince time.Time `json:"core_link_since,omitzero"`
	// JSDomain is the swarm's JetStream domain ("" for a single node):
	// on an edge, clients reach JetStream only through it.
	JSDomain string `json:"js_domain,omitempty"`
	// SurvivesLoss is true while the swarm, as the answering core member
	// last read it, keeps working when any one node is lost: three
	// JetStream servers up, every bucket R3 with every replica current.
	// Resilience says why, or what is missing, in a sentence.
	SurvivesLoss bool   `json:"survives_loss"`
	Resilience   string `json:"resilience,omitempty"`
}

// Lease is the value of the swarm-leader key in rn_leader.
type Lease struct {
	Chevron string    `json:"chevron"`
	Name    string    `json:"name"`
	Pubkey  string    `json:"pubkey"`
	Server  string    `json:"server"`
	Token   uint64    `json:"token"` // the revision that created the lease; 0 in the creating write
	Renewed time.Time `json:"renewed"`
}

// Event is the body of join, leave and leader events. Chevron is the node the
// event is about; By is the node that observed it when that is another node
// (a crash is reported by the swarm leader).
type Event struct {
	Kind    string `json:"kind"`
	Chevron string `json:"chevron"`
	Name    string `json:"name,omitempty"`
	Pubkey  string `json:"pubkey,omitempty"`
	By      string `json:"by,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Token   uint64 `json:"token,omitempty"`
	// Break marks a trust event that reports an HCTH chain break seen by
	// the reporting node (which quarantined the key locally).
	Break bool `json:"break,omitempty"`
	// Proof, on a break, shows the key forked its chain; receivers that
	// verify it quarantine the key too. A break without one is the
	// reporter's word only and changes nothing elsewhere.
	Proof *ForkProof `json:"proof,omitempty"`
	Time  time.Time  `json:"time"`
}

// Error is an error that crosses the wire: a stable code and a human message.
type Error struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Error codes.
const (
	CodeBadRequest = "bad_request"
	CodeInternal   = "internal"
	CodeDenied     = "denied"
	CodeNotFound   = "not_found"
	// CodeApprovalRequired: a dangerous command without a satisfied approval;
	// the status is denied and the client may ask for a quorum and resend.
	CodeApprovalRequired = "approval_required"
)

// Reply wraps a query answer: exactly one of Data and Error is set.
type Reply struct {
	Data  json.RawMessage `json:"data,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// ErrTooLarge is returned for payloads over the size limit.
var ErrTooLarge = errors.New("message too large")

// MaxView is the limit for a query's answer a client asked for: the
// swarm's registry (rn.sys.nodes) is ~370 bytes a node, 3.7 MB at 10,000
// nodes. It is nats-server's payload limit as robonet configures it.
const MaxView = 8 << 20

// Decode unmarshals a payload from the network into v, refusing payloads over
// MaxMessage and trailing data.
func Decode(data []byte, v any) error { return DecodeLimit(data, v, MaxMessage) }

// DecodeLimit is Decode with another size limit, for answers the reader
// asked for (MaxView).
func DecodeLimit(data []byte, v any, limit int) error {
	if len(data) > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), limit)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %T: %w", v, err)
	}
	return nil
}

// SealedSecret is a rotated swarm secret for one member, stored in
// rn_secrets under the member's public key as a record an admin signed:
// the 32 bytes sealed (nkeys xkey) to the member's curve key, so only it
// can read them. Epoch (Unix nanoseconds of the rotation) only grows: a
// member installs a record newer than the secret it holds.
type SealedSecret struct {
	Member string    `json:"member"` // the member's public node key
	Epoch  int64     `json:"epoch"`
	From   string    `json:"from"`   // the sealing curve key (one per rotation)
	Sealed []byte    `json:"sealed"` // nkeys Seal of the secret to the member's xkey
	At     time.Time `json:"at"`
}

// TokenUse records in rn_tokens that a one-time join token admitted a key,
// stored under the token's id and under "key.<pubkey>", signed by the
// member that admitted it. Token is the token itself (used up, bound to
// Pubkey), so members holding the swarm secret can check it was real.
//
// A federation token's use is stored under "fed.<id>" and
// "fedswarm.<prefix>": Prefix is the child swarm it admitted (bound to it
// from then on) and Pubkey the child node that used it first.
type TokenUse struct {
	ID     string    `json:"id"`
	Pubkey string    `json:"pubkey"`
	Token  string    `json:"token"`
	At     time.Time `json:"at"`
	Prefix string    `json:"prefix,omitempty"`
}
