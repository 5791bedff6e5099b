// Package subjects owns robonet's addressing contract: chevron addresses
// (parse, format, compare, prefix), the NATS subjects built from them, the
// selector grammar, and the subject validity rules. It is pure: it imports
// only the standard library and does no I/O.
//
// It does not own message bodies (package wire) or any connection logic
// (package mesh).
package subjects

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxTokens is the depth of a full chevron: zone.region.swarm.node.
const MaxTokens = 4

// ErrChevron is wrapped by every chevron parse error.
var ErrChevron = errors.New("invalid chevron")

// Chevron is a parsed address of 1 to 4 tokens, each 1..65535. The zero value
// is the empty prefix, which addresses the whole swarm. Chevron is comparable
// and can be used as a map key.
type Chevron struct {
	toks [MaxTokens]uint16
	n    uint8
}

// Parse parses a dotted chevron such as "1", "3.12" or "3.12.7.1": 1 to 4
// decimal tokens, each 1..65535, without leading zeros, signs or spaces.
func Parse(s string) (Chevron, error) {
	var c Chevron
	if s == "" {
		return c, fmt.Errorf("%w %q: empty", ErrChevron, s)
	}
	if len(s) > MaxTokens*6 {
		return c, fmt.Errorf("%w %q: too long", ErrChevron, truncate(s))
	}
	for i, tok := range strings.Split(s, ".") {
		if i >= MaxTokens {
			return Chevron{}, fmt.Errorf("%w %q: more than %d tokens", ErrChevron, s, MaxTokens)
		}
		v, err := parseToken(tok)
		if err != nil {
			return Chevron{}, fmt.Errorf("%w %q: token %d: %v", ErrChevron, s, i+1, err)
		}
		c.toks[i] = v
		c.n++
	}
	return c, nil
}

func parseToken(tok string) (uint16, error) {
	if tok == "" {
		return 0, errors.New("empty")
	}
	for _, r := range tok {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", tok)
		}
	}
	if tok[0] == '0' {
		return 0, fmt.Errorf("%q: zero or leading zero", tok)
	}
	v, err := strconv.ParseUint(tok, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: out of range 1..65535", tok)
	}
	return uint16(v), nil
}

// New builds a chevron from tokens; it returns an error for 0 or more than 4
// tokens or a zero token.
func New(tokens ...uint16) (Chevron, error) {
	var c Chevron
	if len(tokens) == 0 || len(tokens) > MaxTokens {
		return c, fmt.Errorf("%w: %d tokens, want 1..%d", ErrChevron, len(tokens), MaxTokens)
	}
	for i, t := range tokens {
		if t == 0 {
			return Chevron{}, fmt.Errorf("%w: token %d is zero", ErrChevron, i+1)
		}
		c.toks[i] = t
	}
	c.n = uint8(len(tokens))
	return c, nil
}

// Flat returns the one-token chevron of a flat swarm's n-th node.
func Flat(n uint16) (Chevron, error) { return New(n) }

// String formats the chevron in its dotted form; the zero chevron formats as "".
func (c Chevron) String() string {
	var b strings.Builder
	for i := 0; i < int(c.n); i++ {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(c.toks[i]), 10))
	}
	return b.String()
}

// Format is the inverse of Parse.
func Format(c Chevron) string { return c.String() }

// Len is the number of tokens, 0 for the zero chevron.
func (c Chevron) Len() int { return int(c.n) }

// IsZero reports whether c is the empty prefix.
func (c Chevron) IsZero() bool { return c.n == 0 }

// Tokens returns a copy of the chevron's tokens.
func (c Chevron) Tokens() []uint16 { return append([]uint16(nil), c.toks[:c.n]...) }

// HasPrefix reports whether p is a prefix of c (a chevron is a prefix of
// itself, and the zero chevron is a prefix of every chevron).
func (c Chevron) HasPrefix(p Chevron) bool {
	if p.n > c.n {
		return false
	}
	for i := 0; i < int(p.n); i++ {
		if c.toks[i] != p.toks[i] {
			return false
		}
	}
	return true
}

// Conflicts reports whether two node chevrons cannot coexist in one swarm:
// they are equal or one is a prefix of the other, so a prefix would stop
// meaning "everything under it".
func (c Chevron) Conflicts(o Chevron) bool { return c.HasPrefix(o) || o.HasPrefix(c) }

// Compare orders chevrons token by token, a prefix before what extends it.
func (c Chevron) Compare(o Chevron) int {
	for i := 0; i < int(min(c.n, o.n)); i++ {
		if c.toks[i] != o.toks[i] {
			if c.toks[i] < o.toks[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case c.n < o.n:
		return -1
	case c.n > o.n:
		return 1
	}
	return 0
}

// Prefixes returns every proper and improper non-empty prefix of c, shortest
// first: 3.12.7.1 → 3, 3.12, 3.12.7, 3.12.7.1.
func (c Chevron) Prefixes() []Chevron {
	out := make([]Chevron, 0, c.n)
	for i := 1; i <= int(c.n); i++ {
		p := c
		p.n = uint8(i)
		for j := i; j < MaxTokens; j++ {
			p.toks[j] = 0
		}
		out = append(out, p)
	}
	return out
}

// MarshalText encodes the dotted form, so a Chevron is a JSON string.
func (c Chevron) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText parses the dotted form; the empty string is the zero chevron.
func (c *Chevron) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*c = Chevron{}
		return nil
	}
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Seed is the full display and --join form of an address,
// "3.12.7.1/tcp/10.0.0.5:8340": a chevron plus protocol and endpoint.
type Seed struct {
	Chevron  Chevron
	Proto    string
	Endpoint string
}

// ParseSeed parses "chevron[/proto/endpoint]".
func ParseSeed(s string) (Seed, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 1 && len(parts) != 3 {
		return Seed{}, fmt.Errorf("%w %q: want chevron or chevron/proto/endpoint", ErrChevron, truncate(s))
	}
	c, err := Parse(parts[0])
	if err != nil {
		return Seed{}, err
	}
	sd := Seed{Chevron: c}
	if len(parts) == 3 {
		if parts[1] != "tcp" {
			return Seed{}, fmt.Errorf("%w %q: protocol %q, want tcp", ErrChevron, truncate(s), parts[1])
		}
		if parts[2] == "" || strings.ContainsAny(parts[2], " \t\r\n/") {
			return Seed{}, fmt.Errorf("%w %q: bad endpoint %q", ErrChevron, truncate(s), parts[2])
		}
		sd.Proto, sd.Endpoint = parts[1], parts[2]
	}
	return sd, nil
}

// String formats a seed in the form ParseSeed reads.
func (s Seed) String() string {
	if s.Proto == "" {
		return s.Chevron.String()
	}
	return s.Chevron.String() + "/" + s.Proto + "/" + s.Endpoint
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// CompareText orders two chevrons given as text the way Compare orders
// parsed ones; if either does not parse, the two compare as bytes, so a list
// holding a malformed entry still sorts.
func CompareText(a, b string) int {
	ca, errA := Parse(a)
	cb, errB := Parse(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b)
	}
	return ca.Compare(cb)
}
