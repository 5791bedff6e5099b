package colonize

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// maxJumps bounds a ProxyJump chain, including chains that a jump host's own
// ProxyJump extends, so a loop in ssh_config ends with an error.
const maxJumps = 8

// hop is one SSH connection of a chain: zero or more jump hosts, then the
// target. Everything in it is resolved; nothing is read from ssh_config later.
type hop struct {
	alias          string   // as given (ssh_config Host pattern target)
	hostName       string   // ssh_config HostName, else alias
	user           string   // given, else ssh_config User, else the local user
	port           int      // given, else ssh_config Port, else 22
	identityFiles  []string // ssh_config IdentityFile, expanded
	identitiesOnly bool
}

func (h hop) addr() string { return joinHostPort(h.hostName, h.port) }

// sshConfig answers ssh_config questions for one Dial. A nil cfg means no
// config file: every answer is the default.
type sshConfig struct {
	cfg       *ssh_config.Config
	home      string
	localUser string
}

func loadSSHConfig(path, home, localUser string) (*sshConfig, error) {
	c := &sshConfig{home: home, localUser: localUser}
	explicit := path != ""
	switch path {
	case "none":
		return c, nil
	case "":
		path = filepath.Join(home, ".ssh", "config")
	}
	f, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return c, nil
		}
		return nil, fmt.Errorf("ssh_config: %w", err)
	}
	defer f.Close()
	c.cfg, err = ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("ssh_config %s: %w", path, err)
	}
	return c, nil
}

func (c *sshConfig) get(alias, key string) string {
	if c.cfg == nil {
		return ""
	}
	v, _ := c.cfg.Get(alias, key)
	return strings.TrimSpace(v)
}

func (c *sshConfig) getAll(alias, key string) []string {
	if c.cfg == nil {
		return nil
	}
	v, _ := c.cfg.GetAll(alias, key)
	return v
}

// resolveHop applies ssh_config to one host as given; values given on the
// command line win, as with ssh(1).
func (c *sshConfig) resolveHop(t Target) (hop, error) {
	h := hop{alias: t.Host, user: t.User, port: t.Port, hostName: t.Host}
	if hn := c.get(t.Host, "HostName"); hn != "" {
		h.hostName = strings.ReplaceAll(hn, "%h", t.Host)
	}
	if h.user == "" {
		h.user = c.get(t.Host, "User")
	}
	if h.user == "" {
		h.user = c.localUser
	}
	if h.port == 0 {
		if p := c.get(t.Host, "Port"); p != "" {
			port, err := parsePort(p)
			if err != nil {
				return hop{}, fmt.Errorf("ssh_config Port for %s: %w", t.Host, err)
			}
			h.port = port
		}
	}
	if h.port == 0 {
		h.port = 22
	}
	if pc := c.get(t.Host, "ProxyCommand"); pc != "" && !strings.EqualFold(pc, "none") {
		return hop{}, fmt.Errorf("ssh_config ProxyCommand for %s is not supported (use ProxyJump)", t.Host)
	}
	for _, f := range c.getAll(t.Host, "IdentityFile") {
		f = strings.TrimSpace(f)
		if f == "" || strings.EqualFold(f, "none") {
			continue
		}
		h.identityFiles = append(h.identityFiles, c.expand(f, h))
	}
	h.identitiesOnly = strings.EqualFold(c.get(t.Host, "IdentitiesOnly"), "yes")
	return h, nil
}

// expand applies the tilde and the % tokens ssh(1) allows in IdentityFile.
func (c *sshConfig) expand(s string, h hop) string {
	if s == "~" || strings.HasPrefix(s, "~/") {
		s = c.home + s[1:]
	}
	if !strings.Contains(s, "%") {
		return s
	}
	r := strings.NewReplacer("%%", "%", "%d", c.home, "%u", c.localUser, "%r", h.user,
		"%h", h.hostName, "%n", h.alias, "%p", strconv.Itoa(h.port))
	return r.Replace(s)
}

// resolveChain returns the hops to t: the ProxyJump chain in order, then t.
// The first jump host's own ProxyJump extends the chain, as with ssh(1).
func (c *sshConfig) resolveChain(t Target) ([]hop, error) {
	var chain []hop
	seen := map[string]bool{}
	next := t
	for {
		h, err := c.resolveHop(next)
		if err != nil {
			return nil, err
		}
		chain = append([]hop{h}, chain...)
		if len(chain) > maxJumps+1 {
			return nil, fmt.Errorf("ssh_config ProxyJump: chain to %s is longer than %d jumps (a loop?)", t.Host, maxJumps)
		}
		key := h.user + "@" + h.addr()
		if seen[key] {
			return nil, fmt.Errorf("ssh_config ProxyJump: %s appears twice in the chain to %s", key, t.Host)
		}
		seen[key] = true
		pj := c.get(next.Host, "ProxyJump")
		if pj == "" || strings.EqualFold(pj, "none") {
			return chain, nil
		}
		jumps, err := parseProxyJump(pj)
		if err != nil {
			return nil, fmt.Errorf("ssh_config ProxyJump for %s: %w", next.Host, err)
		}
		for i := len(jumps) - 1; i > 0; i-- {
			jh, err := c.resolveHop(jumps[i])
			if err != nil {
				return nil, err
			}
			chain = append([]hop{jh}, chain...)
		}
		next = jumps[0]
	}
}

// parseProxyJump reads "a,b" where each is [user@]host[:port] or
// ssh://[user@]host[:port].
func parseProxyJump(s string) ([]Target, error) {
	var out []Target
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimPrefix(strings.TrimSpace(p), "ssh://")
		t, err := ParseTarget(p)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// tildePath shortens a path under home to ~/… for messages people read.
func tildePath(p, home string) string {
	if home != "" && home != "/" && strings.HasPrefix(p, home+"/") {
		return "~" + p[len(home):]
	}
	return p
}
