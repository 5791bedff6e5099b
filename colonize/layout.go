package colonize

import (
	"debug/elf"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/robonet-mesh/robonet/subjects"
)

// Where colonize puts things on a target. Fixed, so a rerun, an upgrade
// and uncolonize all find them, and an operator knows where to look.
const (
	BinaryPath  = "/usr/local/bin/robonet"
	ConfigDir   = "/etc/robonet"
	ConfigPath  = ConfigDir + "/robonet.conf"
	TokenPath   = ConfigDir + "/join.token"
	DataDir     = "/var/lib/robonet"
	StateDir    = DataDir + "/colonize" // the journal and the previous files of an unfinished run
	JournalPath = StateDir + "/journal.json"
	PrevDir     = StateDir + "/prev"
	UnitPath    = "/etc/systemd/system/robonet.service"
	UnitName    = "robonet.service"
	// Without systemd the node runs detached under a pid file, its log
	// appended to LogPath.
	PidPath = "/run/robonet.pid"
	LogPath = "/var/log/robonet.log"
)

// Facts is what the detect step found on a target.
type Facts struct {
	Kernel   string // uname -s
	Machine  string // uname -m
	Arch     string // GOARCH of the binary it needs
	OSID     string // os-release ID
	OSName   string // os-release PRETTY_NAME
	Init     string // "systemd" or "none"
	Hostname string
	// SSHClient is the controller's address as the target sees it
	// (from SSH_CONNECTION): it stands in for an unspecified join host.
	SSHClient string
}

// goArch maps uname -m to the Go architecture of the binary the target
// runs; "" for one robonet is not built for.
func goArch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8l":
		return "arm64"
	case "armv7l", "armv7", "armv6l":
		return "arm"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "riscv64":
		return "riscv64"
	}
	return ""
}

// parseFacts reads the detect script's output: "key=value" lines, then the
// raw os-release after a line "--os-release--".
func parseFacts(out string) (Facts, error) {
	var f Facts
	lines := strings.Split(out, "\n")
	i := 0
	for ; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "--os-release--" {
			i++
			break
		}
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "kernel":
			f.Kernel = v
		case "machine":
			f.Machine = v
		case "init":
			f.Init = v
		case "hostname":
			f.Hostname = v
		}
	}
	for ; i < len(lines); i++ {
		k, v, ok := strings.Cut(strings.TrimSpace(lines[i]), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			f.OSID = v
		case "PRETTY_NAME":
			f.OSName = v
		}
	}
	if f.Kernel != "Linux" {
		return f, fmt.Errorf("unsupported OS %q (uname -s): robonet colonizes Linux hosts", f.Kernel)
	}
	if f.Arch = goArch(f.Machine); f.Arch == "" {
		return f, fmt.Errorf("unsupported architecture %q (uname -m) on %s: robonet is built for x86_64, aarch64, armv7l, i686 and riscv64", f.Machine, f.OSName)
	}
	if f.Init == "" {
		f.Init = "none"
	}
	return f, nil
}

const detectScript = `echo "kernel=$(uname -s)"; echo "machine=$(uname -m)"; echo "hostname=$(uname -n)"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then echo init=systemd; else echo init=none; fi
echo --os-release--; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null || true`

// elfArch is the Go architecture an ELF file was built for, or an error
// naming why the file is not a Linux executable.
func elfArch(path string) (string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: not an ELF executable: %v", path, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return "", fmt.Errorf("%s: ELF type %v is not an executable", path, f.Type)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64", nil
	case elf.EM_AARCH64:
		return "arm64", nil
	case elf.EM_ARM:
		return "arm", nil
	case elf.EM_386:
		return "386", nil
	case elf.EM_RISCV:
		return "riscv64", nil
	}
	return "", fmt.Errorf("%s: ELF machine %v is not one robonet runs on", path, f.Machine)
}

// Binaries picks the robonet binary for each target architecture.
type Binaries struct {
	File string // --binary: one file, used for the targets of its architecture
	Dir  string // --binaries: DIR/robonet-linux-<arch>
	Self string // the running executable, used when neither names one
}

// For returns the local binary for arch, checked to be an ELF executable of
// that architecture.
func (b Binaries) For(arch string) (string, error) {
	var path string
	switch {
	case b.File != "":
		path = b.File
	case b.Dir != "":
		path = filepath.Join(b.Dir, "robonet-linux-"+arch)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("no binary for linux/%s: %v (build it with GOOS=linux GOARCH=%s CGO_ENABLED=0 go build -o %s ./cmd/robonet)", arch, err, arch, path)
		}
	default:
		path = b.Self
	}
	if path == "" {
		return "", fmt.Errorf("no binary for linux/%s: pass --binary FILE or --binaries DIR", arch)
	}
	got, err := elfArch(path)
	if err != nil {
		return "", err
	}
	if got != arch {
		return "", fmt.Errorf("%s is built for linux/%s but the target is linux/%s: pass --binaries DIR holding robonet-linux-%s", path, got, arch, arch)
	}
	return path, nil
}

// NodeConfig is the node's config file on a target, read by `robonet up
// --config`: lines of "flag = value", the CLI's config format.
type NodeConfig struct {
	Data      string
	Chevron   string
	Cluster   string
	Join      []string
	Swarm     string
	Caps      []string
	Tags      map[string]string
	TokenFile string
}

// render is the config file's bytes: stable for the same input, so a rerun
// compares equal and rewrites nothing.
func (c NodeConfig) render() []byte {
	var b strings.Builder
	b.WriteString("# Written by robonet colonize; robonet uncolonize removes it.\n")
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", k, v)
		}
	}
	line("data", c.Data)
	line("swarm", c.Swarm)
	line("chevron", c.Chevron)
	line("cluster", c.Cluster)
	line("join", strings.Join(c.Join, ","))
	caps := append([]string(nil), c.Caps...)
	sort.Strings(caps)
	line("caps", strings.Join(caps, ","))
	var tags []string
	for k, v := range c.Tags {
		tags = append(tags, k+"="+v)
	}
	sort.Strings(tags)
	line("tags", strings.Join(tags, ","))
	line("token-file", c.TokenFile)
	return []byte(b.String())
}

// configValue reads one setting back from a rendered config.
func configValue(text, key string) string {
	for _, l := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// unitText is the systemd unit. The node is the swarm's executor (it runs
// exec and file commands an operator sends, as root), so the sandbox is the
// part that does not take that away: no new kernel modules, no kernel log,
// no clock, private /tmp, 0077 umask. SIGTERM makes the node go lame duck;
// it has TimeoutStopSec to hand its work over.
const unitText = `# Written by robonet colonize; robonet uncolonize removes it.
[Unit]
Description=robonet node
Documentation=https://github.com/robonet-mesh/robonet
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=` + BinaryPath + ` up --config ` + ConfigPath + `
KillSignal=SIGTERM
TimeoutStopSec=45
Restart=on-failure
RestartSec=2
LimitNOFILE=65536
UMask=0077
PrivateTmp=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
LockPersonality=yes
RestrictRealtime=yes

[Install]
WantedBy=multi-user.target
`

// CheckTarget refuses settings that would not survive the config file's
// format (a newline would add a line of its own choosing) or that the node
// would refuse later anyway.
func CheckTarget(t Target) error {
	bad := func(what, v string, extra string) error {
		for _, r := range v {
			if r < 0x21 || r == 0x7f || strings.ContainsRune(`"#,`+extra, r) {
				return fmt.Errorf("%s %q: character %q not allowed", what, v, r)
			}
		}
		if v == "" {
			return fmt.Errorf("%s: empty", what)
		}
		return nil
	}
	if t.Chevron != "" {
		if _, err := subjects.Parse(t.Chevron); err != nil {
			return fmt.Errorf("chevron %q: %v", t.Chevron, err)
		}
	}
	for _, c := range t.Caps {
		if err := bad("capability", c, "="); err != nil {
			return err
		}
	}
	for k, v := range t.Tags {
		if err := bad("tag key", k, "="); err != nil {
			return err
		}
		if err := bad("tag "+k, v, ""); err != nil {
			return err
		}
	}
	return nil
}

// checkJoin refuses a route address that is not host:port with a plain
// host: addresses come from the swarm's registrations, and a member must
// not be able to write lines of its own into a new node's config.
func checkJoin(addr string) error {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("join address %q: %v", addr, err)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("join address %q: bad port", addr)
	}
	if h == "" || len(h) > 253 {
		return fmt.Errorf("join address %q: bad host", addr)
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:_%", r)) {
			return fmt.Errorf("join address %q: character %q not allowed in a host", addr, r)
		}
	}
	return nil
}

// checkSwarmName refuses a swarm name the config file could not carry.
func checkSwarmName(s string) error {
	if err := subjects.ValidToken(s); err != nil || strings.ContainsAny(s, " \t\n\r#,\"=") {
		return fmt.Errorf("swarm name %q: not a plain token", s)
	}
	return nil
}
