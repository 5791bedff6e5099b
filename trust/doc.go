// Package trust owns HCTH, robonet's hash-chained trust: signing every
// outgoing message into the sender's hash chain (Chain), checking signatures
// (Verifier), judging received messages and scoring peers (Ledger, Peer,
// Config tiers), the swarm secret with its join challenge and one-time join
// tokens, and quorum approvals for critical commands (Approval).
//
// It is pure logic: no I/O, no NATS, no wall clock (every time-dependent
// function takes now), no package-level mutable state. It does not publish
// events, persist chain state or ledgers, record which join tokens were used,
// store approvals, or decide which command needs which tier: package node and
// package mesh do, with the values this package returns. Randomness is used
// only to generate secrets, token ids and certificate serial numbers.
//
// # Headers
//
// Every message a node or operator sends carries
//
//	Rn-Ver   wire.Version ("rn/1")
//	Rn-From  the sender's nkeys public key: a user key ('U…') or a server key ('N…')
//	Rn-Seq   decimal seq, 1, 2, …, no sign or leading zeros
//	Rn-Prev  h_{seq-1} as 64 lower-case hex digits, all zeros for seq 1 (and only then)
//	Rn-Sig   the ed25519 signature, base64url without padding (86 characters)
//
// Each value has exactly one accepted spelling and is at most 256 bytes.
//
// # Byte encodings
//
// be16/be32/be64 are big-endian unsigned integers; ‖ is concatenation;
// digest = SHA-256(payload). Subjects are at most 4096 bytes.
//
// The chain head after message seq (ChainHash):
//
//	h_seq = SHA-256( h_{seq-1}[32] ‖ be64(seq) ‖ be16(len(subject)) ‖ subject ‖ digest[32] ),  h_0 = 32 zero bytes
//
// The bytes Rn-Sig signs:
//
//	"robonet/hcth/sig\x00" ‖ u8(len(ver)) ‖ ver ‖ be64(seq) ‖ h_{seq-1}[32] ‖ be16(len(subject)) ‖ subject ‖ digest[32]
//
// An approval signature (Approval.Sign), with str(s) = be32(len(s)) ‖ s:
//
//	"robonet/approval\x00" ‖ str(ID) ‖ str(Verb) ‖ str(ArgsDigest) ‖ str(Requester) ‖
//	be32(Need) ‖ be64(Expires.Unix()) ‖ be32(Expires.Nanosecond())
//
// A join proof (Prove) is HMAC-SHA256 under the 32-byte swarm secret of
//
//	"robonet/join-proof\x00" ‖ be32(len(challenge)) ‖ challenge ‖ be16(len(pubkey)) ‖ pubkey
//
// A join token is "rntok_" followed by the base64url (no padding) of
//
//	0x01 ‖ id[16] ‖ be64(issued UnixNano) ‖ be64(expires UnixNano) ‖ HMAC-SHA256(secret, "robonet/join-token\x00" ‖ the preceding 33 bytes)
//
// and a secret is "rnsec_" followed by the base64url (no padding) of 32
// random bytes. The NUL-terminated tags keep a signature or MAC made for one
// purpose from being valid for another. ChainState.Skip derives a fresh head
// as SHA-256("robonet/hcth/skip\x00" ‖ head[32] ‖ be64(new seq)).
//
// # What the ledger detects
//
// A receiver sees only the subjects it subscribes to, so it sees a sparse
// subset of a peer's chain. Per peer, the Ledger remembers the last Window
// (1024) sequence numbers: for each, either the chain hash of a message it
// accepted (seen) or the hash that an accepted message seq+1 named as its
// predecessor (claimed), as a 64-bit fingerprint (the hash's first 8 bytes;
// about 9 bytes a seq with its marks). Different fingerprints are different
// hashes; "the same hash" below is the same fingerprint, which a different
// message has by a chance of 2⁻⁶⁴ (it would be dropped as a Replay, never
// accepted). For a message with a valid signature, seq s, prev p and chain
// hash h, in this order:
//
//   - s seen with hash h: Replay (dropped silently, counted).
//   - s seen with another hash: Break (fork: two messages for one seq).
//   - s claimed by s+1 with another hash: Break (fork).
//   - s not remembered and at or below (highest seq − Window): Reject with
//     ErrStale, counted as an anomaly. It may be a late message, a replay
//     of one the window forgot, or a fork; nothing here tells them apart, and
//     an old genuine message replayed by anyone must not quarantine its sender.
//   - s−1 remembered (seen or claimed) with a hash other than p: Break (fork).
//   - otherwise Accept. When s−1 was not seen, s counts as a gap (except the
//     first message the ledger sees of a peer, and seq 1); a gap closes when
//     the missing message arrives late. A message below the highest seq is
//     accepted as late: concurrent senders publish out of order.
//
// A message whose signature does not verify is a Break for a known peer (so
// DESIGN.md; see Config.TolerateBadSignatures) and a Reject for an unknown key,
// which gets no record. Malformed headers are a Reject without effect on the
// peer. A quarantined peer's messages are Rejected (ErrQuarantined) before any
// signature check; Break is returned once, when the quarantine starts.
//
// "A seq going backwards" is a break exactly when it contradicts a remembered
// hash; backwards and consistent is a late message, and below the window it
// is stale. Not detected: a fork where the receiver sees neither the same seq
// twice nor two adjacent seqs of the two branches (a clone whose messages
// reach only other receivers); a fork older than the window; a clone jumping
// ahead, which makes the genuine sender's later messages stale (anomalies)
// rather than a break; a peer that restarted its chain from seq 1 until its
// messages collide with remembered ones; replays of messages below the window.
//
// # Score and tiers
//
// A quarantined or new peer scores 0. Otherwise, with n = Length (accepted
// messages), age = now − FirstSeen and g = Gaps/(n−1) (0 for n ≤ 1):
//
//	Score = (1 − e^(−n/ChainScale)) · (1 − e^(−age/AgeScale)) · (1 − GapWeight·g)
//
// ChainScale 600, AgeScale 1 h and GapWeight 0.25 by default. Both saturating
// factors must grow, so a burst of messages does not buy trust without time,
// nor time without messages. A peer that shows only gaps tops out at
// 1 − GapWeight (0.75, below the default Tier3 of 0.85). Config.Tier maps a
// score to tier 0 (read-only) .. 3 (critical) with thresholds Tier1, Tier2,
// Tier3 (0.05, 0.5, 0.85). Anomalies, replays and late messages are recorded
// but do not enter the score.
//
// # Route certificates
//
// A node's route TLS certificate (NodeCertificate) is self-signed by the
// Ed25519 key of its nkey, with a single CN, the nkey's public key text, as
// its subject. Peers check it with CheckPeerCertificate from
// tls.Config.VerifyPeerCertificate, in place of chain and name verification:
// exactly one certificate, whose key is the nkey its CN names. They then admit
// the key if it is a member, or carries a route proof that passes
// CheckRouteProof, or an unused join token that passes ParseToken. The
// credential travels in the non-critical extension 1.3.6.1.4.1.999999.1.1 (an
// unregistered private arc), absent when there is none, whose extnValue is a
// DER OCTET STRING of u8(1) ‖ u8(kind) ‖ body: kind 1, a route proof of 32
// bytes; kind 2, a join token's text of TokenTextLen bytes. A route proof is
//
//	HMAC-SHA256(secret, "robonet/route-proof\x00" ‖ be16(len(pubkey)) ‖ pubkey)
//
// bound to the key, not to a connection: the TLS handshake proves the peer
// holds the key. NodeCertificate's random serial number is the only other use
// of randomness. A resumed TLS session skips VerifyPeerCertificate, so route
// configurations disable session tickets.
//
// # Client-port certificates
//
// A node's client port, on a non-loopback address, serves ClientCertificate:
// the same key and CN, no credential, the node's names as subject
// alternative names, a serial number of SHA-256("robonet/client-cert\x00" ‖
// pubkey ‖ names), a fixed validity window and the CA flag (path length 0),
// so the same key and names always give the same bytes and a copy kept as a
// client's CA file keeps verifying. robonet clients pin the key
// (CheckPeerCertificate's Pub); clients that verify chains and names (the
// stock nats CLI) use the certificate as their root.
package trust
