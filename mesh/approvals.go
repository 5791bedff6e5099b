package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/trust"
	"github.com/robonet-mesh/robonet/wire"
)

// ApprovalBucket is the JetStream KV bucket of quorum approvals for
// dangerous commands, one key per approval id. Every node creates it
// (package node).
const ApprovalBucket = "rn_approvals"

// QuorumKey is the rn_config key that holds the swarm's quorum M: how many
// distinct approvers a dangerous command needs at least, as a decimal
// integer 1..MaxQuorum. Without it the quorum is DefaultQuorum.
const QuorumKey = "trust.quorum"

// Approval limits and defaults.
const (
	DefaultQuorum      = 1
	MaxQuorum          = 16
	DefaultApprovalTTL = 10 * time.Minute
	MaxApprovalTTL     = 24 * time.Hour
	// ApprovalClockSkew is how far a reader's clock may be behind the
	// requester's: a record whose expiry lies more than MaxApprovalTTL plus
	// this beyond the reader's now is refused as forged.
	ApprovalClockSkew = 5 * time.Minute
	// MaxApprovalRecord bounds a stored record (args included).
	MaxApprovalRecord = wire.MaxMessage + 64<<10
	maxApprovalFrom   = 64 // bytes of the unsigned display name
	approvalCASTries  = 8  // Approve's read-sign-write attempts
	approvalPoll      = 2 * time.Second
	quorumBucket      = "rn_config"
)

// Approval errors. Every error the Approvals methods return about an
// approval names its id and wraps one of these, a trust error
// (trust.ErrApprovalExpired, trust.ErrSelfApproval, trust.ErrQuorum,
// trust.ErrApproval) or a NATS error.
var (
	// ErrApprovalID means an approval id is not 32 lower-case hex digits.
	ErrApprovalID = errors.New("invalid approval id")
	// ErrApprovalNotFound means rn_approvals has no record under the id
	// (never created, deleted, or aged out of the bucket).
	ErrApprovalNotFound = errors.New("no such approval")
	// ErrApprovalRecord means the record stored under an id is malformed or
	// inconsistent: whoever wrote it, it is not acted on.
	ErrApprovalRecord = errors.New("invalid approval record")
	// ErrAlreadyApproved means the key approving has already approved: an
	// identity counts once. Approve returns it with the approval as it is.
	ErrAlreadyApproved = errors.New("already approved by this key")
	// ErrQuorumConfig means rn_config's trust.quorum is not an integer
	// 1..MaxQuorum.
	ErrQuorumConfig = errors.New("invalid quorum config")
)

// ApprovalRecord is the JSON value stored under an approval's id in
// rn_approvals:
//
//	{
//	  "id":          "3f0c…",                      32 lower-case hex digits, also the KV key
//	  "verb":        "exec",
//	  "args_digest": "9b1d…",                      trust.DigestArgs of the arguments as nodes receive them
//	  "requester":   "UD…",                        the requester's nkey public key
//	  "need":        2,                            distinct approvers wanted
//	  "expires":     "2026-11-23T12:00:00.123Z",
//	  "sigs":        {"UA…": "<base64 ed25519 signature>", …},
//	  "args":        {"argv": ["reboot"]},         the arguments themselves
//	  "selector":    "all",                        the nodes the requester aimed at
//	  "from":        "alice",                      the requester's display name
//	  "created":     "2026-11-23T11:50:00.123Z"
//	}
//
// The first seven fields are trust.Approval's, and an approver's signature
// covers id, verb, args_digest, requester, need and expires (see package
// trust). args, selector, from and created are not signed: they are there
// for people to read. A reader checks args against args_digest, so what an
// approver reads is what the signature approves; selector, from and created
// can be changed by anyone who can write the bucket, and the approval does
// not limit which nodes run the command.
type ApprovalRecord struct {
	trust.Approval
	Args     json.RawMessage `json:"args,omitempty"`
	Selector string          `json:"selector,omitempty"`
	From     string          `json:"from,omitempty"`
	Created  time.Time       `json:"created"`
}

// Approvers returns the keys whose signatures verify, sorted.
func (r ApprovalRecord) Approvers() []string {
	var out []string
	for pub, sig := range r.Sigs {
		if hasValidSig(r.Approval, pub, sig) {
			out = append(out, pub)
		}
	}
	slices.Sort(out)
	return out
}

// hasValidSig reports whether sig is pub's valid approval of a (pub not the
// requester).
func hasValidSig(a trust.Approval, pub string, sig []byte) bool {
	a.Sigs = map[string][]byte{pub: sig}
	return a.Count() == 1
}

// ValidApprovalID checks an approval id: 32 lower-case hex digits (16
// random bytes), which is also a valid KV key and subject token.
func ValidApprovalID(id string) error {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return fmt.Errorf("%w %q: want 32 lower-case hex digits", ErrApprovalID, clip(id))
	}
	return nil
}

func newApprovalID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("approval id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ApprovalArgs returns args as a node receives them in wire.Request.Args,
// whose trust.DigestArgs an approval names: the sender's JSON encoding
// compacts them and escapes <, > and &; no arguments stay empty.
func ApprovalArgs(args json.RawMessage) (json.RawMessage, error) {
	if len(args) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	return b, nil
}

// DecodeApproval parses and checks the record stored under key, as read at
// now. Anyone who can write the bucket can write anything there, so it
// refuses (ErrApprovalRecord) a record that is too large or not JSON, is
// stored under another id, fails trust.Approval.Validate, names a
// requester that is not an nkey, carries args that do not match
// args_digest, more than trust.MaxApprovers signatures, display fields
// with control characters, or an expiry more than MaxApprovalTTL +
// ApprovalClockSkew after now. Signatures are not checked here: Count and
// Check verify each one.
func DecodeApproval(key string, value []byte, now time.Time) (ApprovalRecord, error) {
	var r ApprovalRecord
	bad := func(format string, args ...any) (ApprovalRecord, error) {
		return ApprovalRecord{}, fmt.Errorf("%w %s: %s", ErrApprovalRecord, clip(key), fmt.Sprintf(format, args...))
	}
	if err := ValidApprovalID(key); err != nil {
		return bad("key: %v", err)
	}
	if len(value) > MaxApprovalRecord {
		return bad("%d bytes, limit %d", len(value), MaxApprovalRecord)
	}
	if err := json.Unmarshal(value, &r); err != nil {
		return bad("not JSON: %v", err)
	}
	if r.ID != key {
		return bad("stored under %s but names id %q", key, clip(r.ID))
	}
	if err := r.Validate(); err != nil {
		return bad("%v", err)
	}
	if err := trust.CheckKey(r.Requester); err != nil {
		return bad("requester: %v", err)
	}
	if d := trust.DigestArgs(r.Args); d != r.ArgsDigest {
		return bad("args do not match args_digest")
	}
	if len(r.Sigs) > trust.MaxApprovers {
		return bad("%d signatures, limit %d", len(r.Sigs), trust.MaxApprovers)
	}
	if err := displayText("from", r.From, maxApprovalFrom); err != nil {
		return bad("%v", err)
	}
	if err := displayText("selector", r.Selector, subjects.MaxSelectorLen); err != nil {
		return bad("%v", err)
	}
	if r.Expires.After(now.Add(MaxApprovalTTL + ApprovalClockSkew)) {
		return bad("expires %s, more than %v from now", r.Expires.Format(time.RFC3339), MaxApprovalTTL)
	}
	return r, nil
}

// displayText checks an unsigned field that is printed to people: valid
// UTF-8 without control characters (no terminal escapes).
func displayText(name, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("%s: %d bytes, limit %d", name, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s: not UTF-8", name)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return fmt.Errorf("%s %q: control characters", name, s)
	}
	return nil
}

// ParseQuorum reads a trust.quorum value: a decimal integer 1..MaxQuorum,
// blanks around it ignored.
func ParseQuorum(value []byte) (int, error) {
	s := strings.TrimSpace(string(value))
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxQuorum {
		return 0, fmt.Errorf("%w: %s = %q: want an integer 1..%d", ErrQuorumConfig, QuorumKey, clip(s), MaxQuorum)
	}
	return n, nil
}

// Approvals is the set of quorum approvals in rn_approvals. It is safe for
// concurrent use and holds no state beyond the bucket's handles. Reads go to
// the bucket's stream leader (as Macros' do), so an approval just written
// through one node is read back at once through any other; writes of
// signatures are compare-and-set on the record's revision.
type Approvals struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // KV_rn_approvals
	leader *LeaderKV
	config *LeaderKV // rn_config, for the quorum
}

// NewApprovals binds the rn_approvals bucket through js.
func NewApprovals(ctx context.Context, js jetstream.JetStream) (*Approvals, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	kv, err := js.KeyValue(ctx, ApprovalBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bucket %s: %w (every node creates it once JetStream is up; is the node ready?)", ApprovalBucket, err)
		}
		return nil, fmt.Errorf("bucket %s: %w", ApprovalBucket, err)
	}
	stream, err := js.Stream(ctx, "KV_"+ApprovalBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", ApprovalBucket, err)
	}
	return &Approvals{kv: kv, stream: stream, leader: NewLeaderKV(js, ApprovalBucket), config: NewLeaderKV(js, quorumBucket)}, nil
}

// Approvals binds the rn_approvals bucket through the client's connection.
func (c *Client) Approvals(ctx context.Context) (*Approvals, error) {
	js, err := c.jetStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", ApprovalBucket, err)
	}
	return NewApprovals(ctx, js)
}

// Quorum returns the swarm's quorum M from rn_config's trust.quorum, read
// through the stream leader: DefaultQuorum when the key is not set, an
// error wrapping ErrQuorumConfig when its value is not 1..MaxQuorum.
func (a *Approvals) Quorum(ctx context.Context) (int, error) {
	e, found, err := a.config.Get(ctx, QuorumKey)
	if err != nil {
		return 0, fmt.Errorf("read %s %s: %w", quorumBucket, QuorumKey, err)
	}
	if !found {
		return DefaultQuorum, nil
	}
	return ParseQuorum(e.Value)
}

// RequestOption sets an unsigned display field of a new approval record.
type RequestOption func(*ApprovalRecord)

// WithSelector records the selector the requester aimed at (for people:
// the approval does not limit the nodes). Control characters are dropped.
func WithSelector(sel string) RequestOption {
	return func(r *ApprovalRecord) { r.Selector = clipText(sel, subjects.MaxSelectorLen) }
}

// WithFrom records the requester's display name.
func WithFrom(name string) RequestOption {
	return func(r *ApprovalRecord) { r.From = clipText(name, maxApprovalFrom) }
}

// clipText drops control characters and invalid UTF-8 from s and cuts it to
// at most limit bytes on a rune boundary.
func clipText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	for len(s) > limit {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// Request creates an approval record for running verb with args (as the
// requester passes them to Gather; see ApprovalArgs) by kp's public key,
// wanting need (1..MaxQuorum) distinct approvers within ttl
// (0 < ttl <= MaxApprovalTTL) of now. The id is 16 random bytes in hex.
func (a *Approvals) Request(ctx context.Context, kp nkeys.KeyPair, verb string, args json.RawMessage, need int, ttl time.Duration, now time.Time, opts ...RequestOption) (trust.Approval, error) {
	if err := subjects.ValidToken(verb); err != nil {
		return trust.Approval{}, fmt.Errorf("request approval: verb: %w", err)
	}
	if need < 1 || need > MaxQuorum {
		return trust.Approval{}, fmt.Errorf("request approval for %s: need %d approvers, want 1..%d", verb, need, MaxQuorum)
	}
	if ttl <= 0 || ttl > MaxApprovalTTL {
		return trust.Approval{}, fmt.Errorf("request approval for %s: ttl %v, want more than 0 and at most %v", verb, ttl, MaxApprovalTTL)
	}
	if kp == nil {
		return trust.Approval{}, fmt.Errorf("request approval for %s: no key", verb)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return trust.Approval{}, fmt.Errorf("request approval for %s: %w", verb, err)
	}
	canon, err := ApprovalArgs(args)
	if err != nil {
		return trust.Approval{}, fmt.Errorf("request approval for %s: %w", verb, err)
	}
	id, err := newApprovalID()
	if err != nil {
		return trust.Approval{}, err
	}
	now = now.UTC().Truncate(time.Millisecond)
	r := ApprovalRecord{
		Approval: trust.Approval{ID: id, Verb: verb, ArgsDigest: trust.DigestArgs(canon), Requester: pub, Need: need, Expires: now.Add(ttl)},
		Args:     canon,
		Created:  now,
	}
	for _, o := range opts {
		o(&r)
	}
	if err := r.Validate(); err != nil {
		return trust.Approval{}, err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return trust.Approval{}, fmt.Errorf("approval %s: %w", id, err)
	}
	if len(data) > MaxApprovalRecord {
		return trust.Approval{}, fmt.Errorf("approval for %s: record of %d bytes is over the %d-byte limit (arguments too large)", verb, len(data), MaxApprovalRecord)
	}
	if _, err := a.kv.Create(ctx, id, data); err != nil {
		return trust.Approval{}, fmt.Errorf("approval %s: store: %w", id, err)
	}
	return r.Approval, nil
}

// Record returns the record stored under id and its revision, read through
// the stream leader and checked by DecodeApproval at the current time.
func (a *Approvals) Record(ctx context.Context, id string) (ApprovalRecord, uint64, error) {
	if err := ValidApprovalID(id); err != nil {
		return ApprovalRecord{}, 0, err
	}
	e, found, err := a.leader.Get(ctx, id)
	if err != nil {
		return ApprovalRecord{}, 0, fmt.Errorf("approval %s: %w", id, err)
	}
	if !found {
		return ApprovalRecord{}, 0, fmt.Errorf("%w: %s", ErrApprovalNotFound, id)
	}
	r, err := DecodeApproval(id, e.Value, time.Now())
	if err != nil {
		return ApprovalRecord{}, 0, err
	}
	return r, e.Revision, nil
}

// Get returns approval id and its revision (see Record).
func (a *Approvals) Get(ctx context.Context, id string) (trust.Approval, uint64, error) {
	r, rev, err := a.Record(ctx, id)
	return r.Approval, rev, err
}

// Records returns the stored approvals, newest first (by created, then id),
// leaving out those expired unless expired is true. Records that do not
// pass DecodeApproval are left out too, and their errors returned in
// skipped.
func (a *Approvals) Records(ctx context.Context, expired bool) (recs []ApprovalRecord, skipped []error, err error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	prefix := "$KV." + ApprovalBucket + "."
	info, err := a.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, nil, fmt.Errorf("list approvals: %w", err)
	}
	now := time.Now()
	for subj := range info.State.Subjects {
		id, _ := strings.CutPrefix(subj, prefix)
		r, _, err := a.Record(ctx, id)
		switch {
		case errors.Is(err, ErrApprovalNotFound):
			continue // deleted since the listing
		case errors.Is(err, ErrApprovalRecord), errors.Is(err, ErrApprovalID):
			skipped = append(skipped, err)
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("list approvals: %w", err)
		}
		if !expired && !now.Before(r.Expires) {
			continue
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(x, y ApprovalRecord) int {
		if c := y.Created.Compare(x.Created); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return recs, skipped, nil
}

// List returns the approvals that have not expired, newest first; invalid
// records are left out (Records reports them).
func (a *Approvals) List(ctx context.Context) ([]trust.Approval, error) {
	recs, _, err := a.Records(ctx, false)
	if err != nil {
		return nil, err
	}
	out := make([]trust.Approval, len(recs))
	for i, r := range recs {
		out[i] = r.Approval
	}
	return out, nil
}

// Approve signs approval id with kp and writes the signature back with a
// compare-and-set on the record's revision, reading again and retrying when
// another approver wrote in between. It refuses, naming the id, an unknown
// id (ErrApprovalNotFound), an invalid record (ErrApprovalRecord), an
// approval expired at now (trust.ErrApprovalExpired) and the requester's own
// key (trust.ErrSelfApproval). When kp has already approved, nothing is
// written and the approval is returned as it stands with an error wrapping
// ErrAlreadyApproved: one identity counts once.
func (a *Approvals) Approve(ctx context.Context, kp nkeys.KeyPair, id string, now time.Time) (trust.Approval, error) {
	if kp == nil {
		return trust.Approval{}, fmt.Errorf("approve %s: no key", id)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return trust.Approval{}, fmt.Errorf("approve %s: %w", id, err)
	}
	var lastErr error
	for try := 0; try < approvalCASTries; try++ {
		r, rev, err := a.Record(ctx, id)
		if err != nil {
			return trust.Approval{}, err
		}
		if pub == r.Requester {
			return r.Approval, fmt.Errorf("approve %s: %w (%s)", id, trust.ErrSelfApproval, shortKey(pub))
		}
		if !now.Before(r.Expires) {
			return r.Approval, fmt.Errorf("approve %s: %w at %s", id, trust.ErrApprovalExpired, r.Expires.Format(time.RFC3339))
		}
		if sig, ok := r.Sigs[pub]; ok && hasValidSig(r.Approval, pub, sig) {
			return r.Approval, fmt.Errorf("approve %s: %w (%s; it counts once)", id, ErrAlreadyApproved, shortKey(pub))
		}
		sig, err := r.Sign(kp)
		if err != nil {
			return trust.Approval{}, fmt.Errorf("approve %s: %w", id, err)
		}
		if err := r.AddSignature(pub, sig, now); err != nil {
			return trust.Approval{}, err
		}
		data, err := json.Marshal(r)
		if err != nil {
			return trust.Approval{}, fmt.Errorf("approve %s: %w", id, err)
		}
		_, err = a.kv.Update(ctx, id, data, rev)
		if err == nil {
			return r.Approval, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return trust.Approval{}, fmt.Errorf("approve %s: store: %w", id, err)
		}
		lastErr = err
		// Another approver wrote first: back off a little, unevenly, so
		// that approvers racing each other do not collide again.
		pause := time.Duration(1+try) * time.Duration(5+randByte()%20) * time.Millisecond
		select {
		case <-ctx.Done():
			return trust.Approval{}, fmt.Errorf("approve %s: %w", id, ctx.Err())
		case <-time.After(pause):
		}
	}
	return trust.Approval{}, fmt.Errorf("approve %s: %d writers in a row got there first: %w", id, approvalCASTries, lastErr)
}

func randByte() byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return b[0]
}

// shortKey abbreviates a public key for messages.
func shortKey(pub string) string {
	if len(pub) > 12 {
		return pub[:12] + "…"
	}
	return pub
}

// Wait watches approval id until it has Need valid signatures (it returns
// the approval and nil), it expires (an error wrapping
// trust.ErrApprovalExpired, with the approval as it was), or ctx is done.
// Updates of the key wake it; each time it reads the record through the
// stream leader. Errors reading (a stream leader election) are retried
// until the expiry; a record that disappears or turns invalid ends the wait.
func (a *Approvals) Wait(ctx context.Context, id string) (trust.Approval, error) {
	if err := ValidApprovalID(id); err != nil {
		return trust.Approval{}, err
	}
	w, err := a.kv.Watch(ctx, id)
	if err != nil {
		return trust.Approval{}, fmt.Errorf("approval %s: watch: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	updates := w.Updates()
	poll := time.NewTicker(approvalPoll)
	defer poll.Stop()
	var last ApprovalRecord // the newest record read; ID "" until one was
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, _, err := a.Record(rctx, id)
		cancel()
		switch {
		case err == nil:
			last = r
			if last.Count() >= last.Need && time.Now().Before(last.Expires) {
				return last.Approval, nil
			}
		case errors.Is(err, ErrApprovalNotFound), errors.Is(err, ErrApprovalRecord):
			return last.Approval, err
		case ctx.Err() != nil:
			return last.Approval, fmt.Errorf("approval %s: %w", id, ctx.Err())
		}
		// A read error other than those is retried: the record read last
		// still says when to give up.
		var expiry <-chan time.Time
		var timer *time.Timer
		if last.ID != "" {
			if !time.Now().Before(last.Expires) {
				return last.Approval, fmt.Errorf("approval %s: %w at %s with %d of %d approvals", id,
					trust.ErrApprovalExpired, last.Expires.Format(time.RFC3339), last.Count(), last.Need)
			}
			timer = time.NewTimer(time.Until(last.Expires))
			expiry = timer.C
		}
		select {
		case <-ctx.Done():
		case _, ok := <-updates:
			if !ok {
				updates = nil // the watcher ended: polling remains
			}
		case <-poll.C:
		case <-expiry:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return last.Approval, fmt.Errorf("approval %s: %w", id, ctx.Err())
		}
	}
}

// ApprovalRequired returns the results of res that a node denied for want
// of an approval (status denied, code wire.CodeApprovalRequired).
func ApprovalRequired(res GatherResult) []NodeResult {
	var out []NodeResult
	for _, r := range res.Results {
		if r.Status == StatusDenied && r.Code == wire.CodeApprovalRequired {
			out = append(out, r)
		}
	}
	return out
}

// GatherApproved sends req again, carrying approval id, to exactly the nodes
// of first that denied it for want of an approval (one publish per node,
// never to a prefix), and returns first with those nodes' results replaced
// by their new answers and the summary recomputed. The nodes are looked up
// in the live registry (one gone offline since is reported offline); one
// the registry does not list is sent to all the same, since it answered.
func (c *Client) GatherApproved(ctx context.Context, req GatherRequest, first GatherResult, id string, progress func(NodeResult)) (GatherResult, error) {
	if err := ValidApprovalID(id); err != nil {
		return first, err
	}
	targets := ApprovalRequired(first)
	if len(targets) == 0 {
		return first, nil
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return first, err
	}
	known := make(map[string]wire.Member, len(members))
	for _, m := range members {
		known[m.Chevron] = m
	}
	set := make([]wire.Member, 0, len(targets))
	for _, t := range targets {
		m, ok := known[t.Chevron]
		if !ok {
			m = wire.Member{Chevron: t.Chevron, Name: t.Name}
		}
		set = append(set, m)
	}
	req.Approval, req.Limit = id, 0
	// The zero Selector names no prefix, so GatherSet publishes to each node.
	again, err := c.GatherSet(ctx, req, subjects.Selector{}, set, progress)
	if err != nil {
		return first, err
	}
	byChev := make(map[string]NodeResult, len(again.Results))
	for _, r := range again.Results {
		byChev[r.Chevron] = r
	}
	out := first
	out.Results = slices.Clone(first.Results)
	for i, r := range out.Results {
		if nr, ok := byChev[r.Chevron]; ok && r.Status == StatusDenied && r.Code == wire.CodeApprovalRequired {
			nr.Unexpected = r.Unexpected
			out.Results[i] = nr
		}
	}
	out.Summary = Summarize(out.Results)
	return out, nil
}
