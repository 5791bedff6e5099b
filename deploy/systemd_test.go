package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	unitPath    = "systemd/robonet.service"
	dropInPath  = "systemd/robonet-exec.conf"
	unitBinary  = "/usr/local/bin/robonet"
	unitToken   = "/etc/robonet/token"
	unitSection = "Service"
)

// unitSetting is one key=value line of a unit file, with whether a comment
// line sits right above it (or above the block of settings it belongs to).
type unitSetting struct {
	section, key, value string
	line                int
	commented           bool
}

// parseUnit reads a systemd unit or drop-in: sections, key=value lines,
// # and ; comments. It refuses what systemd would read differently than this
// test (continuation lines) or not at all.
func parseUnit(data []byte) ([]unitSetting, error) {
	var out []unitSetting
	section := ""
	commented := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			commented = false
		case line[0] == '#' || line[0] == ';':
			commented = true
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: %q: bad section", n, line)
			}
			section, commented = line[1:len(line)-1], false
		default:
			if strings.HasSuffix(line, `\`) {
				return nil, fmt.Errorf("line %d: continuation lines are not used here", n)
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q: want key=value inside a section", n, line)
			}
			out = append(out, unitSetting{section: section, key: strings.TrimSpace(k), value: strings.TrimSpace(v), line: n, commented: commented})
		}
	}
	return out, sc.Err()
}

func loadUnit(t *testing.T, path string) []unitSetting {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

// values are key's values in section, in order (a key may repeat).
func values(u []unitSetting, section, key string) []string {
	var out []string
	for _, s := range u {
		if s.section == section && s.key == key {
			out = append(out, s.value)
		}
	}
	return out
}

// last is key's effective single value ("" when unset).
func last(u []unitSetting, section, key string) string {
	v := values(u, section, key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// TestSystemdUnitIsHardened checks the unit's contract: lame-duck stop with a
// timeout longer than the lame duck, network-online ordering, the node as an
// unprivileged user with the token from a file, and the sandbox.
func TestSystemdUnitIsHardened(t *testing.T) {
	u := loadUnit(t, unitPath)
	for _, key := range []string{"Wants", "After"} {
		if !slices.ContainsFunc(values(u, "Unit", key), func(v string) bool { return slices.Contains(strings.Fields(v), "network-online.target") }) {
			t.Errorf("[Unit] %s lacks network-online.target", key)
		}
	}
	if got := last(u, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%s", got)
	}
	want := map[string]string{
		"Type": "simple", "Restart": "on-failure", "KillSignal": "SIGTERM", "ProtectSystem": "strict",
		"NoNewPrivileges": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "PrivateUsers": "yes",
		"ProtectHome": "yes", "ProtectClock": "yes", "ProtectControlGroups": "yes", "ProtectHostname": "yes",
		"ProtectKernelLogs": "yes", "ProtectKernelModules": "yes", "ProtectKernelTunables": "yes",
		"RestrictNamespaces": "yes", "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"MemoryDenyWriteExecute": "yes", "UMask": "0077", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
		"SystemCallArchitectures": "native", "StateDirectory": "robonet",
	}
	for key, v := range want {
		if vs := values(u, unitSection, key); len(vs) == 0 || last(u, unitSection, key) != v {
			t.Errorf("[Service] %s=%q, want %q", key, vs, v)
		}
	}
	if user := last(u, unitSection, "User"); user == "" || user == "root" || user == "0" {
		t.Errorf("[Service] User=%q: the hardened unit runs robonet unprivileged", user)
	}
	if f := values(u, unitSection, "SystemCallFilter"); !slices.Contains(f, "@system-service") || !slices.ContainsFunc(f, func(v string) bool { return strings.HasPrefix(v, "~") && strings.Contains(v, "@privileged") }) {
		t.Errorf("[Service] SystemCallFilter=%q, want @system-service without @privileged", f)
	}
	fams := strings.Fields(last(u, unitSection, "RestrictAddressFamilies"))
	for _, f := range []string{"AF_INET", "AF_INET6", "AF_UNIX"} {
		if !slices.Contains(fams, f) {
			t.Errorf("[Service] RestrictAddressFamilies=%q lacks %s", fams, f)
		}
	}
	if n, err := strconv.Atoi(last(u, unitSection, "LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("[Service] LimitNOFILE=%q, want at least 65536", last(u, unitSection, "LimitNOFILE"))
	}
	stop, err := time.ParseDuration(last(u, unitSection, "TimeoutStopSec") + "s")
	if err != nil || stop < minStopGrace || stop <= lameDuckMax {
		t.Errorf("[Service] TimeoutStopSec=%q, want at least %s (the lame duck takes up to %s)", last(u, unitSection, "TimeoutStopSec"), minStopGrace, lameDuckMax)
	}

	exe := strings.Fields(last(u, unitSection, "ExecStart"))
	if len(exe) < 2 || exe[0] != unitBinary || exe[1] != "up" {
		t.Fatalf("[Service] ExecStart=%q, want %s up …", exe, unitBinary)
	}
	if got := flagValue(t, exe, "token-file"); got != unitToken {
		t.Errorf("ExecStart --token-file %s, want %s", got, unitToken)
	}
	if hasFlag(exe, "token") {
		t.Errorf("ExecStart has --token: the secret would be in ps and the journal")
	}
	data := flagValue(t, exe, "data")
	if data != dataDir || !slices.Contains(strings.Fields(last(u, unitSection, "ReadWritePaths")), data) || "/var/lib/"+last(u, unitSection, "StateDirectory") != data {
		t.Errorf("--data %s: want %s, writable (ReadWritePaths) and created for the user (StateDirectory)", data, dataDir)
	}
}

// TestSystemdExecDropInOnlyRelaxes checks the drop-in for exec as an admin:
// a [Service] section that only relaxes settings the hardened unit makes,
// each line with the comment that says why, leaving the stop behaviour alone.
func TestSystemdExecDropInOnlyRelaxes(t *testing.T) {
	unit, drop := loadUnit(t, unitPath), loadUnit(t, dropInPath)
	if len(drop) == 0 {
		t.Fatal("empty drop-in")
	}
	for _, s := range drop {
		where := fmt.Sprintf("%s:%d %s=%s", dropInPath, s.line, s.key, s.value)
		if s.section != unitSection {
			t.Errorf("%s: section [%s], want [Service] only", where, s.section)
		}
		if len(values(unit, unitSection, s.key)) == 0 {
			t.Errorf("%s: the hardened unit does not set %s: not a relaxation", where, s.key)
		}
		if !s.commented {
			t.Errorf("%s: no comment saying why", where)
		}
		switch s.key {
		case "ExecStart", "KillSignal", "KillMode", "TimeoutStopSec", "Restart", "Type":
			t.Errorf("%s: the drop-in changes how the node starts or stops", where)
		}
	}
	if last(drop, unitSection, "User") != "root" {
		t.Errorf("the exec drop-in does not run robonet as root")
	}
}

// TestSystemdAnalyzeVerify runs systemd's own checker over the unit, alone
// and with the drop-in: it knows every directive and value of this systemd.
// ExecStart's binary is replaced by a stub, since verify wants it to exist.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found (CI=true: failing instead of skipping)")
		}
		t.Skip("systemd-analyze not found")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "robonet")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart="+unitBinary+" ")) {
		t.Fatalf("%s: no ExecStart=%s", unitPath, unitBinary)
	}
	unit = bytes.ReplaceAll(unit, []byte("ExecStart="+unitBinary+" "), []byte("ExecStart="+stub+" "))
	if err := os.WriteFile(filepath.Join(dir, "robonet.service"), unit, 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T, unitDir string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, tool, "verify", filepath.Join(unitDir, "robonet.service"))
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+unitDir+":")
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
	t.Run("unit", func(t *testing.T) { verify(t, dir) })
	t.Run("with exec drop-in", func(t *testing.T) {
		d := filepath.Join(dir, "robonet.service.d")
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		drop, err := os.ReadFile(dropInPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "exec.conf"), drop, 0o644); err != nil {
			t.Fatal(err)
		}
		verify(t, dir)
	})
}
