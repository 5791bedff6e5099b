package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// Root is the first token of every robonet subject.
const Root = "rn"

// MaxSubjectLen is the longest subject robonet publishes. nats-server closes a
// connection that sends a longer control line, so refusing earlier keeps one
// bad input from cutting a client off.
const MaxSubjectLen = 4096

// Event kinds published on rn.<chevron>.evt.<kind>.
const (
	EvtHeartbeat = "hb"
	EvtJoin      = "join"
	EvtLeave     = "leave"
	EvtLeader    = "leader"
	EvtAlert     = "alert"
	EvtTrust     = "trust"
	EvtAudit     = "audit"
)

// Swarm queries. Every node holds the whole membership view, so any node can
// answer rn.sys.<query> (served in queue group QueryQueue); a client that
// wants the view of the node it is connected to asks rn.sys.<query>.<server>
// with the server name the connection reports.
const (
	QueryNodes  = "nodes"
	QueryStatus = "status"
	QueryQueue  = "rn"

	// Trust queries (issue 5). Each node answers them for itself
	// (rn.sys.<q>.<server>); the node checks the query's signer (NATS
	// permissions are the first line).
	QueryTrust      = "trust"      // the node's ledger (observers up)
	QueryQuarantine = "quarantine" // quarantine a peer (operators up)
	QueryRelease    = "release"    // release a quarantined peer (operators up)
	QueryToken      = "token"      // issue a one-time join token (admins)
	QueryAlerts     = "alerts"     // a node's current Sentinel alerts (every node answers)
)

// ErrSubject is wrapped by every subject validation error.
var ErrSubject = errors.New("invalid subject")

// ErrToken is wrapped when a verb, event kind or other name is not a valid
// subject token.
var ErrToken = errors.New("invalid name")

// ValidToken checks a name used as one subject token (a verb, an event kind,
// a stream name): lower-case ASCII letters, digits, '_' and '-', starting with
// a letter, at most 64 bytes.
func ValidToken(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrToken)
	}
	if len(s) > 64 {
		return fmt.Errorf("%w %q: longer than 64 bytes", ErrToken, truncate(s))
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z':
		case i > 0 && (ch >= '0' && ch <= '9' || ch == '_' || ch == '-'):
		default:
			return fmt.Errorf("%w %q: byte %d %q not allowed (want [a-z][a-z0-9_-]*)", ErrToken, s, i, ch)
		}
	}
	return nil
}

// ValidPublish applies nats-server's rules for a subject one may publish to
// (server.IsValidPublishSubject, which a test cross-checks) plus the length
// limit: non-empty tokens, no wildcards, no white space or control bytes.
func ValidPublish(subject string) error {
	if subject == "" {
		return fmt.Errorf("%w: empty", ErrSubject)
	}
	if len(subject) > MaxSubjectLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrSubject, len(subject), MaxSubjectLen)
	}
	start := 0
	for i := 0; i <= len(subject); i++ {
		if i == len(subject) || subject[i] == '.' {
			tok := subject[start:i]
			if tok == "" {
				return fmt.Errorf("%w %q: empty token", ErrSubject, truncate(subject))
			}
			if tok == "*" || tok == ">" {
				return fmt.Errorf("%w %q: wildcard %q", ErrSubject, truncate(subject), tok)
			}
			start = i + 1
			continue
		}
		switch subject[i] {
		case ' ', '\t', '\r', '\n', '\f':
			return fmt.Errorf("%w %q: white space", ErrSubject, truncate(subject))
		}
	}
	return nil
}

func join(c Chevron, rest ...string) string {
	var b strings.Builder
	b.WriteString(Root)
	for i := 0; i < int(c.n); i++ {
		b.WriteByte('.')
		fmt.Fprintf(&b, "%d", c.toks[i])
	}
	for _, r := range rest {
		b.WriteByte('.')
		b.WriteString(r)
	}
	return b.String()
}

// Cmd is the subject of a command for every node under prefix:
// rn.<prefix>.cmd.<verb>, or rn.cmd.<verb> for the zero prefix (the swarm).
func Cmd(prefix Chevron, verb string) (string, error) {
	if err := ValidToken(verb); err != nil {
		return "", fmt.Errorf("verb: %w", err)
	}
	return join(prefix, "cmd", verb), nil
}

// CmdSubscriptions lists the subjects a node at c serves commands on: the
// swarm's and each of its prefixes', rn.cmd.*, rn.3.cmd.*, … rn.3.12.7.1.cmd.*.
func CmdSubscriptions(c Chevron) []string {
	out := []string{join(Chevron{}, "cmd", "*")}
	for _, p := range c.Prefixes() {
		out = append(out, join(p, "cmd", "*"))
	}
	return out
}

// Event is the subject a node at c publishes events of kind on.
func Event(c Chevron, kind string) string { return join(c, "evt", kind) }

// EventWildcards returns subscriptions that together match kind's events from
// every node, whatever its chevron's depth: rn.*.evt.<kind> … rn.*.*.*.*.evt.<kind>.
// Pass "*" for every kind.
func EventWildcards(kind string) []string {
	out := make([]string, 0, MaxTokens)
	for depth := 1; depth <= MaxTokens; depth++ {
		out = append(out, Root+strings.Repeat(".*", depth)+".evt."+kind)
	}
	return out
}

// ParseEvent splits an event subject into the publisher's chevron and the
// kind; ok is false for anything else.
func ParseEvent(subject string) (c Chevron, kind string, ok bool) {
	toks := strings.Split(subject, ".")
	if len(toks) < 4 || len(toks) > 3+MaxTokens || toks[0] != Root || toks[len(toks)-2] != "evt" {
		return Chevron{}, "", false
	}
	c, err := Parse(strings.Join(toks[1:len(toks)-2], "."))
	if err != nil {
		return Chevron{}, "", false
	}
	return c, toks[len(toks)-1], true
}

// Query is the subject of a swarm query any one node answers.
func Query(name string) string { return Root + ".sys." + name }

// QueryAt is the subject of a query for the node whose embedded server is
// named server.
func QueryAt(name, server string) string { return Root + ".sys." + name + "." + server }

// InboxRoot is where replies go: identity pub's inbox prefix is
// "_rn.inbox.<pub>", and each identity may subscribe only under its own.
const InboxRoot = "_rn.inbox"

// Inbox is the reply-subject prefix of the identity with public key pub.
func Inbox(pub string) string { return InboxRoot + "." + pub }

// CmdPermissions are the subjects on which a command for verb may be
// published, at every prefix depth ("*" is the verb for any verb): what a
// publish permission lists to allow exactly that verb.
func CmdPermissions(verb string) []string {
	out := []string{Root + ".cmd." + verb}
	pre := Root
	for i := 0; i < MaxTokens; i++ {
		pre += ".*"
		out = append(out, pre+".cmd."+verb)
	}
	return out
}

// QueryCore asks a core node for the core's size and members
// (wire.CoreStatus): core nodes answer in the queue group and on QueryAt.
const QueryCore = "core"

// Media subjects of the node at c (package media): a WHEP offer for a
// stream (request/reply), a session's PATCH and DELETE, the RTP the node
// publishes while a relay lease lives, the lease renewals, and the node's
// stream list. The caller validates stream and session as tokens.
func MediaWHEP(c Chevron, stream string) string { return join(c, "media", stream, "whep") }

// MediaSession is the subject of a WHEP session's PATCH and DELETE.
func MediaSession(c Chevron, stream, session string) string {
	return join(c, "media", stream, "whep", session)
}

// MediaRTP carries a stream's RTP packets, one per message (relay path).
func MediaRTP(c Chevron, stream string) string { return join(c, "media", stream, "rtp") }

// MediaRelay is where a gateway asks for, and renews, a stream's relay.
func MediaRelay(c Chevron, stream string) string { return join(c, "media", stream, "relay") }

// MediaList is where the node at c lists its streams.
func MediaList(c Chevron) string { return join(c, "media", "list") }

// MediaSubscriptions are what the media service of the node at c serves.
func MediaSubscriptions(c Chevron) []string {
	return []string{join(c, "media", "*", "whep"), join(c, "media", "*", "whep", "*"),
		join(c, "media", "*", "relay"), join(c, "media", "list")}
}
