package wire

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Federated commands (issue 11). A requester publishes its signed command
// once on rn.fed.<prefix>.cmd.<verb>; in each swarm under the prefix one
// ambassador (a node of that swarm) forwards it, unchanged, on the in-swarm
// command subject and streams back to the requester's reply inbox:
//
//  1. one or more FedStart messages (the swarm and the nodes it expects to
//     answer, with their keys, split into parts that each fit a message);
//  2. each node's reply verbatim — the node's own payload and HCTH headers,
//     so the requester checks the node's signature — with HdrFedKind
//     FedKindResult and HdrFedSigned naming the subject the node signed it
//     for (the ambassador's inbox);
//  3. one FedDone.
//
// FedStart and FedDone are signed by the ambassador's node (HCTH headers
// over the requester's inbox) and carry HdrFedKind too.
const (
	// HdrFedSubject is set by the ambassador on a forwarded command: the
	// rn.fed… subject the requester signed. A node verifies the signature
	// over it and accepts the command only when that prefix covers its own
	// chevron and its verb is the in-swarm subject's.
	HdrFedSubject = "Rn-Fed-Subject"
	// HdrFedVia is the ambassador node's signature on a forwarded command
	// (FormatFedVia), over the in-swarm subject and FedViaPayload: a node
	// accepts a forwarded command only from a node of its own swarm, and
	// only on the subject the ambassador chose, so a copy of a federated
	// command cannot be replayed into a swarm or onto nodes it was not
	// forwarded to.
	HdrFedVia = "Rn-Fed-Via"
	// HdrFedExclude names swarm prefixes (comma-separated) whose nodes the
	// requester gathers itself: their ambassadors ignore the command.
	HdrFedExclude = "Rn-Fed-Exclude"
	// HdrFedSelector carries the requester's selector when it has filters
	// (caps=gpu, …): the ambassador matches them against its live
	// registry, inside the subject's prefix. It can only narrow the set.
	HdrFedSelector = "Rn-Fed-Selector"
	// HdrFedKind says what a message of an ambassador's stream is:
	// FedKindStart, FedKindResult or FedKindDone.
	HdrFedKind = "Rn-Fed-Kind"
	// HdrFedSigned, on a relayed node reply, is the subject the node
	// signed that reply for.
	HdrFedSigned = "Rn-Fed-Signed"
)

// Kinds of an ambassador's stream messages (HdrFedKind, and the kind field).
const (
	FedKindStart  = "start"
	FedKindResult = "result"
	FedKindDone   = "done"
)

// Bounds of federated messages.
const (
	// MaxFedNodes is the most nodes an ambassador serves for one command;
	// a swarm with more matching nodes is refused (FedDone.Error), never
	// answered in part without saying so.
	MaxFedNodes = 4096
	// MaxFedSelector is the longest HdrFedSelector value.
	MaxFedSelector = 1024
	// MaxFedID is the longest request ID an ambassador echoes.
	MaxFedID = 64
)

// FedNode is one node an ambassador expects to answer.
type FedNode struct {
	Chevron string `json:"chevron"`
	Name    string `json:"name,omitempty"`
	Pubkey  string `json:"pubkey"` // the key its reply must be signed with
	State   string `json:"state"`  // its registry state; StateOffline is not sent to
}

// FedStart opens an ambassador's stream: the swarm that answers and the
// nodes it expects, in chevron order. A long list comes in Parts messages
// (Part 1..Parts), each with a slice of Expected.
type FedStart struct {
	Kind        string    `json:"kind"` // FedKindStart
	ID          string    `json:"id"`   // the request's ID
	Swarm       string    `json:"swarm"`
	Ambassador  string    `json:"ambassador"` // the chevron of the node that answers for the swarm
	Expected    []FedNode `json:"expected"`
	Part        int       `json:"part"`
	Parts       int       `json:"parts"`
	RegistryRev uint64    `json:"registry_rev"` // the swarm's rn_nodes revision
	// WaitMs is how long the ambassador waits for the nodes before it
	// sends FedDone.
	WaitMs int64 `json:"wait_ms"`
}

// FedDone closes an ambassador's stream: every expected node (chevrons),
// how many answered, which were offline (not sent to) and which timed out.
// With Error set the ambassador refused the command (a bad request, more
// than MaxFedNodes nodes, busy) and nothing was forwarded.
type FedDone struct {
	Kind        string   `json:"kind"` // FedKindDone
	ID          string   `json:"id"`
	Swarm       string   `json:"swarm"`
	Ambassador  string   `json:"ambassador"`
	Expected    []string `json:"expected"`
	Answered    int      `json:"answered"`
	Offline     []string `json:"offline"`
	Timeout     []string `json:"timeout"`
	RegistryRev uint64   `json:"registry_rev"`
	Error       *Error   `json:"error,omitempty"`
}

// fedViaTag separates via signatures from every other message a node signs.
const fedViaTag = "rn-fed-via\x00"

// FedViaPayload is what an ambassador signs (as the payload of an HCTH
// signature over the in-swarm subject) when it forwards a federated
// command: the fed subject and the requester's own signature (Rn-Sig),
// which already covers the command's payload.
func FedViaPayload(fedSubject, requesterSig string) []byte {
	return []byte(fedViaTag + fedSubject + "\x00" + requesterSig)
}

// ErrFedVia is wrapped by every HdrFedVia parse error.
var ErrFedVia = errors.New("invalid " + HdrFedVia + " header")

// FormatFedVia packs an ambassador's HCTH signature headers (From, Seq,
// Prev, Sig; the version is Version) into one HdrFedVia value, so they do
// not collide with the requester's own Rn-* headers on the same message.
func FormatFedVia(from, seq, prev, sig string) string {
	return from + " " + seq + " " + prev + " " + sig
}

// ParseFedVia unpacks HdrFedVia into the HCTH header map it stands for
// (HdrVer, HdrFrom, HdrSeq, HdrPrev, HdrSig), for the trust layer to check.
func ParseFedVia(v string) (map[string]string, error) {
	if len(v) > 1024 {
		return nil, fmt.Errorf("%w: %d bytes", ErrFedVia, len(v))
	}
	f := strings.Split(v, " ")
	if len(f) != 4 {
		return nil, fmt.Errorf("%w: want 4 space-separated fields (from seq prev sig), got %d", ErrFedVia, len(f))
	}
	for i, s := range f {
		if s == "" {
			return nil, fmt.Errorf("%w: field %d is empty", ErrFedVia, i+1)
		}
	}
	return map[string]string{HdrVer: Version, HdrFrom: f[0], HdrSeq: f[1], HdrPrev: f[2], HdrSig: f[3]}, nil
}

// FedUsers is what a hub swarm's leader publishes on
// rn.dir.<swarm prefix>.users every few seconds and on change: its
// effective user records, grouped by the founder key they chain to — its
// own swarm's, and each set it inherited from above. Swarms below accept a
// set only when its founder is one of their pinned authority keys, and a
// record only when it verifies and chains to that founder; whoever carried
// the message does not matter.
type FedUsers struct {
	Swarm string       `json:"swarm"` // the publishing swarm's prefix
	Sets  []FedUserSet `json:"sets"`
	Sent  time.Time    `json:"sent"`
}

// FedUserSet is one swarm's identities as its admins signed them.
type FedUserSet struct {
	Founder string `json:"founder"` // the founder key the records chain to
	// Users are rn_users records as stored (trust.SignRecord output), by
	// their rn_users key (the user's name).
	Users map[string][]byte `json:"users"`
	// Revoked are admin-signed rn_revoked records, by revoked key.
	Revoked map[string][]byte `json:"revoked,omitempty"`
}

// Bounds of a FedUsers message.
const (
	MaxFedUserSets = 8    // a tree is a few levels deep
	MaxFedUsers    = 1024 // records per set, users and revocations each
)

// Check bounds a FedUsers message read from the network.
func (u *FedUsers) Check() error {
	if len(u.Sets) > MaxFedUserSets {
		return fmt.Errorf("users of swarm %q: %d sets, limit %d", clipText(u.Swarm), len(u.Sets), MaxFedUserSets)
	}
	for _, s := range u.Sets {
		if len(s.Users) > MaxFedUsers || len(s.Revoked) > MaxFedUsers {
			return fmt.Errorf("users of swarm %q: founder %q: %d users, %d revocations, limit %d each",
				clipText(u.Swarm), clipText(s.Founder), len(s.Users), len(s.Revoked), MaxFedUsers)
		}
	}
	return nil
}

func clipText(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
