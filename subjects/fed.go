package subjects

import (
	"errors"
	"fmt"
	"strings"
)

// Federated command subjects (issue 11). A command for a prefix outside the
// requester's swarm is published once on rn.fed.<prefix>.cmd.<verb>; one
// ambassador per swarm (queue group amb.<swarm prefix>) takes it and runs it
// inside its swarm. rn.fed.> crosses leaf links; rn.<prefix>.cmd.> never
// does.
const (
	// FedToken is the second token of every federated subject.
	FedToken = "fed"
	// ambassadorQueuePrefix starts the ambassadors' queue group name.
	ambassadorQueuePrefix = "amb."
	// usersToken ends the subject a hub's leader publishes its effective
	// user records on: rn.dir.<swarm prefix>.users.
	usersToken = "users"
)

// ErrFedSubject is wrapped by every federated-subject parse error.
var ErrFedSubject = errors.New("invalid federated subject")

// FedCmd is the subject of a federated command for every node under prefix,
// across swarms: rn.fed.<prefix>.cmd.<verb>. The prefix may not be empty
// (a federated command names where it goes).
func FedCmd(prefix Chevron, verb string) (string, error) {
	if prefix.IsZero() {
		return "", fmt.Errorf("%w: a federated command needs a chevron prefix", ErrFedSubject)
	}
	if err := ValidToken(verb); err != nil {
		return "", fmt.Errorf("verb: %w", err)
	}
	return fedJoin(prefix, "cmd", verb), nil
}

func fedJoin(c Chevron, rest ...string) string {
	return Root + "." + FedToken + strings.TrimPrefix(join(c, rest...), Root)
}

// ParseFedCmd splits rn.fed.<prefix>.cmd.<verb> into its prefix and verb.
// Everything else is an error wrapping ErrFedSubject: a wildcard, an empty
// or over-long subject, a bad chevron, a verb that is not a valid token.
func ParseFedCmd(subject string) (Chevron, string, error) {
	bad := func(format string, a ...any) (Chevron, string, error) {
		return Chevron{}, "", fmt.Errorf("%w %q: "+format, append([]any{ErrFedSubject, truncate(subject)}, a...)...)
	}
	if err := ValidPublish(subject); err != nil {
		return bad("%v", err)
	}
	toks := strings.Split(subject, ".")
	// rn fed <1..4 chevron tokens> cmd <verb>
	if len(toks) < 5 || len(toks) > 4+MaxTokens || toks[0] != Root || toks[1] != FedToken || toks[len(toks)-2] != "cmd" {
		return bad("want %s.%s.<prefix>.cmd.<verb>", Root, FedToken)
	}
	c, err := Parse(strings.Join(toks[2:len(toks)-2], "."))
	if err != nil {
		return bad("%v", err)
	}
	verb := toks[len(toks)-1]
	if err := ValidToken(verb); err != nil {
		return bad("verb: %v", err)
	}
	return c, verb, nil
}

// NodeSwarm is SwarmOf as an error: the swarm prefix of a federated node's
// chevron (3.12.7 of 3.12.7.1); a chevron of fewer than four tokens belongs
// to no federated swarm.
func NodeSwarm(c Chevron) (Chevron, error) {
	sw, ok := SwarmOf(c)
	if !ok {
		return Chevron{}, fmt.Errorf("%w %q: a federated node has %d tokens (zone.region.swarm.node)", ErrChevron, c, MaxTokens)
	}
	return sw, nil
}

// Overlaps reports whether prefix a and prefix b name overlapping sets of
// nodes: one is a prefix of the other. A federated command for prefix
// reaches the swarm with prefix swarm exactly when they overlap.
func Overlaps(a, b Chevron) bool { return a.HasPrefix(b) || b.HasPrefix(a) }

// Deeper returns the longer of two overlapping prefixes: where a federated
// command for fed lands inside swarm (the swarm itself when fed names a
// region or zone above it, a node when fed names one).
func Deeper(a, b Chevron) Chevron {
	if a.Len() >= b.Len() {
		return a
	}
	return b
}

// FedCmdSubscriptions lists what the ambassadors of swarm subscribe to (in
// their queue group, AmbassadorQueue): a federated command for the zone,
// the region, the swarm itself, or one node of it —
// rn.fed.<z>.cmd.*, rn.fed.<z>.<r>.cmd.*, rn.fed.<z>.<r>.<s>.cmd.* and
// rn.fed.<z>.<r>.<s>.*.cmd.*.
func FedCmdSubscriptions(swarm Chevron) ([]string, error) {
	if swarm.Len() != SwarmTokens {
		return nil, fmt.Errorf("%w %q: a swarm prefix has %d tokens", ErrChevron, swarm, SwarmTokens)
	}
	var out []string
	for _, p := range swarm.Prefixes() {
		out = append(out, fedJoin(p, "cmd", "*"))
	}
	return append(out, fedJoin(swarm, "*", "cmd", "*")), nil
}

// AmbassadorQueue is the queue group of swarm's ambassadors: amb.<z>.<r>.<s>.
// Queue semantics deliver one copy of a federated command per swarm however
// many of its nodes serve.
func AmbassadorQueue(swarm Chevron) (string, error) {
	if swarm.Len() != SwarmTokens {
		return "", fmt.Errorf("%w %q: a swarm prefix has %d tokens", ErrChevron, swarm, SwarmTokens)
	}
	return ambassadorQueuePrefix + swarm.String(), nil
}

// FedUsers is the subject a hub swarm's leader publishes its effective user
// records on (its own and those it inherited): rn.dir.<swarm prefix>.users.
func FedUsers(swarm Chevron) (string, error) {
	if swarm.Len() != SwarmTokens {
		return "", fmt.Errorf("%w %q: a swarm prefix has %d tokens", ErrChevron, swarm, SwarmTokens)
	}
	return Root + ".dir." + swarm.String() + "." + usersToken, nil
}

// FedUsersAll matches every swarm's FedUsers subject.
const FedUsersAll = Root + ".dir.*.*.*." + usersToken

// ParseFedUsers returns the publishing swarm of a FedUsers subject.
func ParseFedUsers(subject string) (Chevron, bool) {
	rest, ok := strings.CutPrefix(subject, Root+".dir.")
	if !ok {
		return Chevron{}, false
	}
	pfx, ok := strings.CutSuffix(rest, "."+usersToken)
	if !ok {
		return Chevron{}, false
	}
	c, err := ParseSwarmPrefix(pfx)
	return c, err == nil
}

// MaxFedExclude bounds how many swarm prefixes one Rn-Fed-Exclude header
// may name.
const MaxFedExclude = 16

// ParseFedExclude reads an Rn-Fed-Exclude header: comma-separated swarm
// prefixes whose nodes the requester gathers itself. An empty value
// excludes nothing.
func ParseFedExclude(v string) ([]Chevron, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > MaxFedExclude {
		return nil, fmt.Errorf("%w: exclude names %d swarms, limit %d", ErrFedSubject, len(parts), MaxFedExclude)
	}
	out := make([]Chevron, 0, len(parts))
	for _, p := range parts {
		c, err := ParseSwarmPrefix(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("exclude: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

// FormatFedExclude is the header value ParseFedExclude reads.
func FormatFedExclude(swarms ...Chevron) string {
	s := make([]string, len(swarms))
	for i, c := range swarms {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}

// Scope is the deepest chevron prefix that every node s can match lies
// under: the common prefix of each alternative's prefix terms (3.12 for
// "3.12.7|3.12.8,caps=gpu"). ok is false when some alternative has no
// prefix term ("all", a name or a filter alone may match anywhere) or when
// the alternatives share no prefix: such a selector is not federated.
func (s Selector) Scope() (Chevron, bool) {
	var scope Chevron
	first := true
	for _, a := range s.alts {
		var p Chevron
		has, empty := false, false
		for _, t := range a {
			if t.kind != kindPrefix {
				continue
			}
			switch {
			case !has:
				p, has = t.chev, true
			case t.chev.HasPrefix(p):
				p = t.chev
			case !p.HasPrefix(t.chev):
				empty = true // 3.12,3.14 matches nothing
			}
		}
		if !has {
			return Chevron{}, false
		}
		if empty {
			continue
		}
		if first {
			scope, first = p, false
			continue
		}
		scope = commonPrefix(scope, p)
	}
	if first || scope.IsZero() {
		return Chevron{}, false
	}
	return scope, true
}

// commonPrefix is the longest prefix of both a and b.
func commonPrefix(a, b Chevron) Chevron {
	out := a
	out.n = 0
	for i := 0; i < int(min(a.n, b.n)) && a.toks[i] == b.toks[i]; i++ {
		out.n++
	}
	for j := int(out.n); j < MaxTokens; j++ {
		out.toks[j] = 0
	}
	return out
}
