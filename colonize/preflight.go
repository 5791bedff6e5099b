package colonize

import (
	"fmt"
	"strconv"
	"strings"
)

// preflight is what the preflight step read off a target, in one round trip.
type preflight struct {
	exists    map[string]bool
	binSize   int64
	binSum    string
	freeBin   int64 // KiB free where the binary goes
	freeData  int64 // KiB free under /var/lib
	noexec    bool  // the binary's directory is on a noexec mount
	tmpNoexec bool
	selinux   string // Enforcing, Permissive, Disabled or "" (none)
	now       int64  // the target's clock, Unix seconds
	active    bool   // the node's service runs
	enabled   bool   // systemd: the unit is enabled
	journal   string
	config    string
	unit      string
}

// checked paths: the managed ones, and the node key inside the data dir.
var preflightPaths = []string{BinaryPath, ConfigDir, ConfigPath, TokenPath, DataDir, StateDir, JournalPath,
	UnitPath, LogPath, PidPath, DataDir + "/node.nk", "/usr/local/bin"}

// preflightScript prints key=value lines, then the journal, config and unit
// after marker lines. It runs as root and changes nothing.
func preflightScript() string {
	var b strings.Builder
	b.WriteString(`mopts() { awk -v p="$1" '{ m=$2; if (m=="/" || index(p"/", m"/")==1) { if (length(m) > l) { l=length(m); o=$4 } } } END { print o }' /proc/mounts; }
noexec() { case ",$(mopts "$1")," in *,noexec,*) echo 1;; *) echo 0;; esac; }
`)
	for _, p := range preflightPaths {
		fmt.Fprintf(&b, "if [ -e %s ]; then echo 'exists %s'; fi\n", quote(p), p)
	}
	b.WriteString(`if [ -f ` + BinaryPath + ` ]; then echo "bin_size=$(wc -c < ` + BinaryPath + ` | tr -d ' ')"; echo "bin_sum=$(sha256sum ` + BinaryPath + ` | cut -d' ' -f1)"; fi
echo "free_bin=$(df -Pk /usr/local/bin 2>/dev/null | awk 'NR==2{print $4}')"
d=/var/lib; [ -d ` + DataDir + ` ] && d=` + DataDir + `
echo "free_data=$(df -Pk $d 2>/dev/null | awk 'NR==2{print $4}')"
echo "noexec=$(noexec /usr/local/bin)"; echo "tmp_noexec=$(noexec /tmp)"
if command -v getenforce >/dev/null 2>&1; then echo "selinux=$(getenforce 2>/dev/null)"; fi
echo "now=$(date +%s)"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl is-active --quiet ` + UnitName + ` && echo active=1
  systemctl is-enabled --quiet ` + UnitName + ` 2>/dev/null && echo enabled=1
else
  p=$(cat ` + PidPath + ` 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && tr '\0' ' ' < /proc/$p/cmdline | grep -q 'robonet up' && echo active=1
fi
[ -d ` + DataDir + ` ] && [ "$(ls -A ` + DataDir + `)" = colonize ] && echo only_state=1
echo --journal--; cat ` + JournalPath + ` 2>/dev/null; echo
echo --config--; cat ` + ConfigPath + ` 2>/dev/null
echo --unit--; cat ` + UnitPath + ` 2>/dev/null; true
`)
	return b.String()
}

func parsePreflight(out string) (preflight, error) {
	p := preflight{exists: map[string]bool{}}
	onlyState := false
	head, rest, ok := strings.Cut(out, "--journal--\n")
	if !ok {
		return p, fmt.Errorf("preflight: output cut short")
	}
	jr, rest, _ := strings.Cut(rest, "--config--\n")
	cfg, unit, _ := strings.Cut(rest, "--unit--\n")
	p.journal, p.config, p.unit = strings.TrimSpace(jr), cfg, unit
	num := func(v string) int64 { n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64); return n }
	for _, l := range strings.Split(head, "\n") {
		if path, ok := strings.CutPrefix(l, "exists "); ok {
			p.exists[path] = true
			continue
		}
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "bin_size":
			p.binSize = num(v)
		case "bin_sum":
			p.binSum = v
		case "free_bin":
			p.freeBin = num(v)
		case "free_data":
			p.freeData = num(v)
		case "noexec":
			p.noexec = v == "1"
		case "tmp_noexec":
			p.tmpNoexec = v == "1"
		case "selinux":
			p.selinux = v
		case "now":
			p.now = num(v)
		case "active":
			p.active = v == "1"
		case "enabled":
			p.enabled = v == "1"
		case "only_state":
			onlyState = v == "1"
		}
	}
	// A data dir holding nothing but colonize's state dir, and no journal,
	// is what a colonize killed while writing its first journal leaves:
	// it made both, so both count as not there before (uncolonize and a
	// rollback remove them).
	if onlyState && p.journal == "" {
		delete(p.exists, DataDir)
		delete(p.exists, StateDir)
	}
	if p.now == 0 {
		return p, fmt.Errorf("preflight: the target did not report its clock")
	}
	return p, nil
}
