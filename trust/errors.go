package trust

import "errors"

// Errors returned by the package. Callers test for them with errors.Is; the
// messages that wrap them name the offending header, field or value.
var (
	// ErrHeader is wrapped by every error about an Rn-* header (see HeaderError).
	ErrHeader = errors.New("invalid header")
	// ErrVersion means the message does not carry wire.Version.
	ErrVersion = errors.New("unsupported version")
	// ErrKey means a public key is malformed, fails its checksum, or is of a
	// type robonet does not sign with (only user 'U' and server 'N' keys).
	ErrKey = errors.New("unacceptable public key")
	// ErrBadSignature means a well-formed signature does not verify.
	ErrBadSignature = errors.New("bad signature")

	// ErrHash means a chain hash's text form is not 64 lower-case hex digits.
	ErrHash = errors.New("invalid hash")
	// ErrChainState means a persisted ChainState is inconsistent.
	ErrChainState = errors.New("invalid chain state")
	// ErrChainExhausted means the chain reached the largest sequence number.
	ErrChainExhausted = errors.New("chain sequence exhausted")

	// ErrBreak is wrapped by Observe when a peer broke its chain and was
	// quarantined; the same error also wraps ErrFork or ErrBadSignature.
	ErrBreak = errors.New("chain break")
	// ErrFork means two different messages claim one position of a chain.
	ErrFork = errors.New("fork")
	// ErrStale means a message is older than the ledger's window, so the
	// ledger cannot tell a late message from a replay or a fork; it is dropped.
	ErrStale = errors.New("stale sequence")
	// ErrQuarantined means the peer is quarantined; its messages are dropped.
	ErrQuarantined = errors.New("peer quarantined")
	// ErrTooManyPeers means the ledger is full and refuses a new peer.
	ErrTooManyPeers = errors.New("too many peers")
	// ErrUnknownPeer means the ledger has no record of the key.
	ErrUnknownPeer = errors.New("unknown peer")
	// ErrConfig means a Config is invalid.
	ErrConfig = errors.New("invalid trust config")

	// ErrSecret means a swarm secret is malformed or of the wrong size.
	ErrSecret = errors.New("invalid swarm secret")
	// ErrTokenMalformed means a join token is not a token at all.
	ErrTokenMalformed = errors.New("malformed join token")
	// ErrTokenMAC means a join token was not issued under this swarm secret
	// or was altered.
	ErrTokenMAC = errors.New("join token MAC mismatch")
	// ErrTokenExpired means a join token's expiry has passed.
	ErrTokenExpired = errors.New("join token expired")
	// ErrTokenKey means a join token bound to one node key was presented
	// by another.
	ErrTokenKey = errors.New("join token bound to another key")

	// ErrApproval means an Approval's fields are invalid.
	ErrApproval = errors.New("invalid approval")
	// ErrApprovalExpired means an Approval's expiry has passed.
	ErrApprovalExpired = errors.New("approval expired")
	// ErrSelfApproval means the requester tried to approve its own request.
	ErrSelfApproval = errors.New("requester cannot approve its own request")
	// ErrQuorum means an Approval does not have enough distinct approvers yet.
	ErrQuorum = errors.New("quorum not reached")
)
