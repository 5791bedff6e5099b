package colonize

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"

	"github.com/robonet-mesh/robonet/subjects"
)

// ErrTarget is wrapped by every target and hosts-file parse error.
var ErrTarget = errors.New("invalid target")

// Target is one host to colonize, as given on the command line or a --hosts line.
type Target struct {
	User    string            // "" = ssh_config User, else the local user name
	Host    string            // as given (an alias ssh_config may map through HostName)
	Port    int               // 0 = ssh_config Port, else 22
	Chevron string            // optional, validated with subjects.Parse
	Caps    []string          // capabilities the node announces
	Tags    map[string]string // free-form labels the node announces
}

// String returns the target as given: "user@host:port", omitting the parts
// that were not given; an IPv6 address with a port is bracketed.
func (t Target) String() string {
	var b strings.Builder
	if t.User != "" {
		b.WriteString(t.User)
		b.WriteByte('@')
	}
	switch {
	case t.Port != 0:
		b.WriteString(net.JoinHostPort(t.Host, strconv.Itoa(t.Port)))
	default:
		b.WriteString(t.Host)
	}
	return b.String()
}

// hostPort is the key ParseHostsFile uses to refuse duplicates: the host as
// given, lower-cased, and the port with 0 read as 22.
func (t Target) hostPort() string {
	p := t.Port
	if p == 0 {
		p = 22
	}
	return net.JoinHostPort(strings.ToLower(t.Host), strconv.Itoa(p))
}

// ParseTarget parses "[user@]host[:port]". An IPv6 address with a port is
// written in brackets ("[::1]:22"); a bare IPv6 address has no port.
func ParseTarget(s string) (Target, error) {
	var t Target
	if s == "" {
		return t, fmt.Errorf("%w: empty", ErrTarget)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		return t, fmt.Errorf("%w %q: contains a space or control character", ErrTarget, s)
	}
	rest := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		t.User, rest = s[:i], s[i+1:]
		if t.User == "" {
			return Target{}, fmt.Errorf("%w %q: empty user before @", ErrTarget, s)
		}
		if strings.ContainsAny(t.User, ":/[]") {
			return Target{}, fmt.Errorf("%w %q: user %q contains ':', '/' or brackets", ErrTarget, s, t.User)
		}
	}
	host, port, err := splitHostPort(rest)
	if err != nil {
		return Target{}, fmt.Errorf("%w %q: %v", ErrTarget, s, err)
	}
	t.Host, t.Port = host, port
	return t, nil
}

func splitHostPort(s string) (host string, port int, err error) {
	var portText string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing ']' after IPv6 address")
		}
		host = s[1:end]
		if !isIPv6(host) {
			return "", 0, fmt.Errorf("%q in brackets is not an IPv6 address", host)
		}
		after := s[end+1:]
		if after != "" {
			if !strings.HasPrefix(after, ":") {
				return "", 0, fmt.Errorf("unexpected %q after ']'", after)
			}
			portText = after[1:]
			if portText == "" {
				return "", 0, errors.New("empty port after ':'")
			}
		}
	case strings.Count(s, ":") > 1:
		host = s // a bare IPv6 address: no port without brackets
		if !isIPv6(host) {
			return "", 0, fmt.Errorf("%q is not an IPv6 address (write host:port, or [v6]:port)", host)
		}
	default:
		var hasPort bool
		host, portText, hasPort = strings.Cut(s, ":")
		if hasPort && portText == "" {
			return "", 0, errors.New("empty port after ':'")
		}
	}
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	if strings.ContainsAny(host, "/@[]") {
		return "", 0, fmt.Errorf("host %q contains '/', '@' or brackets", host)
	}
	if strings.HasPrefix(host, "-") {
		return "", 0, fmt.Errorf("host %q starts with '-'", host)
	}
	if portText != "" {
		port, err = parsePort(portText)
		if err != nil {
			return "", 0, err
		}
	}
	return host, port, nil
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

func parsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" || (s[0] == '0') {
		return 0, fmt.Errorf("port %q is not a number 1..65535", s)
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number 1..65535", s)
	}
	return p, nil
}

// ParseHostsFile reads one target a line:
//
//	[user@]host[:port] [chevron=1.2] [caps=a,b] [tags=k=v,k=v]
//
// with # comments and blank lines. Errors name the line number; a host:port
// given twice is refused (a port left out counts as 22).
func ParseHostsFile(r io.Reader) ([]Target, error) {
	var (
		out  []Target
		seen = map[string]int{}
		sc   = bufio.NewScanner(r)
		n    int
	)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		t, err := parseHostsLine(fields)
		if err != nil {
			return nil, fmt.Errorf("hosts line %d: %w", n, err)
		}
		key := t.hostPort()
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("hosts line %d: %w %q: %s already given on line %d", n, ErrTarget, fields[0], key, prev)
		}
		seen[key] = n
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hosts line %d: %w", n+1, err)
	}
	return out, nil
}

func parseHostsLine(fields []string) (Target, error) {
	t, err := ParseTarget(fields[0])
	if err != nil {
		return Target{}, err
	}
	given := map[string]bool{}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" {
			return Target{}, fmt.Errorf("%w: %q is not key=value", ErrTarget, f)
		}
		if given[k] {
			return Target{}, fmt.Errorf("%w: %s given twice", ErrTarget, k)
		}
		given[k] = true
		switch k {
		case "chevron":
			if _, err := subjects.Parse(v); err != nil {
				return Target{}, fmt.Errorf("%w: chevron: %w", ErrTarget, err)
			}
			t.Chevron = v
		case "caps":
			for _, c := range strings.Split(v, ",") {
				if c == "" {
					return Target{}, fmt.Errorf("%w: caps %q has an empty entry", ErrTarget, v)
				}
				t.Caps = append(t.Caps, c)
			}
		case "tags":
			t.Tags = map[string]string{}
			for _, kv := range strings.Split(v, ",") {
				tk, tv, ok := strings.Cut(kv, "=")
				if !ok || tk == "" {
					return Target{}, fmt.Errorf("%w: tag %q is not k=v", ErrTarget, kv)
				}
				if _, dup := t.Tags[tk]; dup {
					return Target{}, fmt.Errorf("%w: tag %q given twice", ErrTarget, tk)
				}
				t.Tags[tk] = tv
			}
		default:
			return Target{}, fmt.Errorf("%w: unknown field %q (want chevron, caps or tags)", ErrTarget, k)
		}
	}
	return t, nil
}
