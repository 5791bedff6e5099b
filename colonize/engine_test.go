package colonize

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFactsMapsArchitecturesAndRefusesOthers(t *testing.T) {
	for _, tc := range []struct {
		out, arch, err string
	}{
		{"kernel=Linux\nmachine=x86_64\ninit=systemd\n--os-release--\nID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n", "amd64", ""},
		{"kernel=Linux\nmachine=aarch64\ninit=none\n--os-release--\n", "arm64", ""},
		{"kernel=Linux\nmachine=armv7l\n--os-release--\n", "arm", ""},
		{"kernel=Linux\nmachine=mips\n--os-release--\n", "", `unsupported architecture "mips"`},
		{"kernel=FreeBSD\nmachine=amd64\n--os-release--\n", "", `unsupported OS "FreeBSD"`},
		{"", "", `unsupported OS ""`},
	} {
		f, err := parseFacts(tc.out)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseFacts(%q) = %v, want error containing %q", tc.out, err, tc.err)
			}
			continue
		}
		if err != nil || f.Arch != tc.arch {
			t.Errorf("parseFacts(%q) = %+v, %v; want arch %s", tc.out, f, err, tc.arch)
		}
	}
	f, _ := parseFacts("kernel=Linux\nmachine=x86_64\n--os-release--\n")
	if f.Init != "none" {
		t.Errorf("init = %q, want none when the script says nothing", f.Init)
	}
}

func TestParsePreflightReadsSectionsAndRequiresTheClock(t *testing.T) {
	out := "exists /usr/local/bin\nexists " + ConfigPath + "\nbin_size=12\nbin_sum=abc\nfree_bin=1000\nfree_data=2000\nnoexec=0\ntmp_noexec=1\nnow=1700000000\nactive=1\n" +
		"--journal--\n{\"version\":1}\n\n--config--\ndata = /var/lib/robonet\n--unit--\n[Unit]\n"
	p, err := parsePreflight(out)
	if err != nil {
		t.Fatal(err)
	}
	if !p.exists[ConfigPath] || p.exists[BinaryPath] || p.binSize != 12 || p.binSum != "abc" || !p.tmpNoexec || p.noexec || !p.active || p.now != 1700000000 {
		t.Errorf("parsed %+v", p)
	}
	if p.journal != `{"version":1}` || p.config != "data = /var/lib/robonet\n" || p.unit != "[Unit]\n" {
		t.Errorf("sections: journal %q config %q unit %q", p.journal, p.config, p.unit)
	}
	if _, err := parsePreflight("now=1\n"); err == nil {
		t.Error("output without sections parsed")
	}
	if _, err := parsePreflight("--journal--\n--config--\n--unit--\n"); err == nil {
		t.Error("output without the clock parsed")
	}
}

// A colonize killed while sending its first journal leaves the data dir
// with nothing but the state dir in it, and no journal: the next run must
// count both as its own, or uncolonize would leave the node's data behind
// (seen in e2e TestColonizeKilledAtEachStepConverges). With a journal, or
// with anything else in the data dir, they existed before.
func TestPreflightOwnsTheStateDirAKilledRunLeft(t *testing.T) {
	base := "exists " + DataDir + "\nexists " + StateDir + "\nnow=1700000000\n"
	for _, tc := range []struct {
		out     string
		existed bool
	}{
		{base + "only_state=1\n--journal--\n\n--config--\n--unit--\n", false},
		{base + "only_state=1\n--journal--\n{\"version\":1}\n--config--\n--unit--\n", true},
		{base + "--journal--\n\n--config--\n--unit--\n", true},
	} {
		p, err := parsePreflight(tc.out)
		if err != nil {
			t.Fatal(err)
		}
		if p.exists[DataDir] != tc.existed || p.exists[StateDir] != tc.existed {
			t.Errorf("%q: data dir existed %v, state dir %v; want %v", tc.out, p.exists[DataDir], p.exists[StateDir], tc.existed)
		}
	}
}

// The journal is moved into place only when all its bytes arrived.
func TestJournalScriptChecksTheSize(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		send string
		n    int
		ok   bool
	}{{`{"version":1}`, 13, true}, {`{"vers`, 13, false}, {"", 13, false}} {
		script := strings.ReplaceAll(writeJournalScript(tc.n), JournalPath, filepath.Join(dir, "journal.json"))
		script = strings.ReplaceAll(script, PrevDir, filepath.Join(dir, "prev"))
		os.Remove(filepath.Join(dir, "journal.json"))
		cmd := exec.Command("sh", "-c", script)
		cmd.Stdin = strings.NewReader(tc.send)
		err := cmd.Run()
		got, rerr := os.ReadFile(filepath.Join(dir, "journal.json"))
		if tc.ok && (err != nil || string(got) != tc.send) || !tc.ok && (err == nil || rerr == nil) {
			t.Errorf("send %q of %d: run %v, journal %q (%v)", tc.send, tc.n, err, got, rerr)
		}
	}
}

func TestJournalRefusesPathsColonizeNeverCreates(t *testing.T) {
	if _, err := parseJournal(`{"version":1,"created":["/etc/robonet","/etc/passwd"]}`); err == nil || !strings.Contains(err.Error(), "/etc/passwd") {
		t.Errorf("journal naming /etc/passwd: %v", err)
	}
	if _, err := parseJournal(`{"version":1,"run":{"created":["/"]}}`); err == nil {
		t.Error("journal whose run names / accepted")
	}
	if _, err := parseJournal(`{"version":1,"run":{"saved":["/etc/shadow"]}}`); err == nil {
		t.Error("journal whose run saved /etc/shadow accepted")
	}
	if _, err := parseJournal(`{"version":2}`); err == nil {
		t.Error("journal version 2 accepted")
	}
	j, err := parseJournal("")
	if j != nil || err != nil {
		t.Errorf("empty journal = %v, %v; want none", j, err)
	}
	j, err = parseJournal(`{"version":1,"created":["` + DataDir + `","` + BinaryPath + `"]}`)
	if err != nil || len(j.Created) != 2 {
		t.Fatalf("good journal: %v %v", j, err)
	}
	j.Run = &runLog{}
	j.note(ConfigPath)
	j.note(ConfigPath)
	if len(j.Created) != 3 || len(j.Run.Created) != 1 {
		t.Errorf("note twice: %+v %+v", j.Created, j.Run.Created)
	}
	back, err := parseJournal(string(j.encode(time.Unix(0, 0))))
	if err != nil || len(back.Created) != 3 {
		t.Errorf("round trip: %v %v", back, err)
	}
}

func TestRemoveScriptOnlyTouchesManagedPathsDeepestFirst(t *testing.T) {
	s := removeScript([]string{DataDir, StateDir, "/etc/passwd", BinaryPath})
	if strings.Contains(s, "/etc/passwd") {
		t.Errorf("script removes an unmanaged path: %s", s)
	}
	if strings.Index(s, StateDir) > strings.Index(s, "'"+DataDir+"'") {
		t.Errorf("state dir not removed before the data dir: %s", s)
	}
}

func TestConfigRendersStablyAndRefusesInjectedLines(t *testing.T) {
	c := NodeConfig{Data: DataDir, Swarm: "s", Cluster: "0.0.0.0:6222", Join: []string{"10.0.0.1:6222"},
		Caps: []string{"gpu", "camera"}, Tags: map[string]string{"site": "lab", "a": "b"}, TokenFile: TokenPath}
	a, b := c.render(), c.render()
	if !bytes.Equal(a, b) {
		t.Fatal("render not stable")
	}
	want := "# Written by robonet colonize; robonet uncolonize removes it.\ndata = /var/lib/robonet\nswarm = s\ncluster = 0.0.0.0:6222\njoin = 10.0.0.1:6222\ncaps = camera,gpu\ntags = a=b,site=lab\ntoken-file = /etc/robonet/join.token\n"
	if string(a) != want {
		t.Errorf("render:\n%s\nwant:\n%s", a, want)
	}
	if configValue(want, "join") != "10.0.0.1:6222" {
		t.Errorf("configValue join = %q", configValue(want, "join"))
	}
	for _, tg := range []Target{
		{Host: "h", Caps: []string{"cam\nexec-allow = sh"}},
		{Host: "h", Tags: map[string]string{"site": "a,b"}},
		{Host: "h", Tags: map[string]string{"k=v": "x"}},
		{Host: "h", Chevron: "1.2.x"},
		{Host: "h", Caps: []string{""}},
	} {
		if err := CheckTarget(tg); err == nil {
			t.Errorf("CheckTarget(%+v) accepted", tg)
		}
	}
	if err := CheckTarget(Target{Host: "h", Chevron: "3.12.7.9", Caps: []string{"camera"}, Tags: map[string]string{"site": "lab"}}); err != nil {
		t.Errorf("good target refused: %v", err)
	}
}

func TestDiffShowsChangedLines(t *testing.T) {
	d := Diff("/f", "a\nb\nc\n", "a\nB\nc\nd\n")
	want := "--- /f\n+++ /f\n a\n-b\n+B\n c\n+d\n"
	if d != want {
		t.Errorf("diff:\n%s\nwant:\n%s", d, want)
	}
	if d := Diff("/f", "", "x\n"); !strings.HasPrefix(d, "--- /dev/null\n+++ /f\n+x\n") {
		t.Errorf("new file diff:\n%s", d)
	}
}

func TestMarkerWriterStripsTheSudoMarker(t *testing.T) {
	for _, chunks := range [][]string{
		{"ROBONET-SUDO-OK-1\nhello\n"},
		{"ROBONET-", "SUDO-OK-1\n", "hello\n"},
		{"ROBONET-SUDO-OK-1\n", "hello\n"},
	} {
		var out bytes.Buffer
		m := &markerWriter{marker: []byte("ROBONET-SUDO-OK-1\n"), w: &out}
		for _, c := range chunks {
			m.Write([]byte(c))
		}
		if !m.seen || out.String() != "hello\n" {
			t.Errorf("%q: seen %v out %q", chunks, m.seen, out.String())
		}
	}
	var out bytes.Buffer
	m := &markerWriter{marker: []byte("ROBONET-SUDO-OK-1\n"), w: &out}
	m.Write([]byte("Sorry, try again.\n"))
	if m.seen || out.String() != "Sorry, try again.\n" {
		t.Errorf("no marker: seen %v out %q", m.seen, out.String())
	}
}

func TestQuoteSurvivesSingleQuotes(t *testing.T) {
	if got := quote("it's"); got != `'it'\''s'` {
		t.Errorf("quote = %s", got)
	}
}

func FuzzParseJournal(f *testing.F) {
	f.Add(`{"version":1,"created":["/etc/robonet"]}`)
	f.Add(`{"version":1,"run":{"created":["/var/lib/robonet"],"saved":["/usr/local/bin/robonet"]}}`)
	f.Fuzz(func(t *testing.T, s string) {
		j, err := parseJournal(s)
		if err != nil || j == nil {
			return
		}
		paths := append(j.Created, j.runCreated()...)
		if j.Run != nil {
			paths = append(paths, j.Run.Saved...)
		}
		for _, p := range paths {
			if !managed(p) {
				t.Fatalf("journal accepted unmanaged path %q", p)
			}
		}
	})
}

func FuzzParsePreflight(f *testing.F) {
	f.Add("now=1\n--journal--\n{}\n--config--\n--unit--\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parsePreflight(s)
		_, _ = parseFacts(s)
	})
}

func TestJoinAddressesAndSwarmNamesCannotInjectConfigLines(t *testing.T) {
	for _, a := range []string{"10.0.0.1:6222", "[fd00::1]:6222", "node-a.lab:6222"} {
		if err := checkJoin(a); err != nil {
			t.Errorf("checkJoin(%q): %v", a, err)
		}
	}
	for _, a := range []string{"10.0.0.1:6222\nexec-allow = sh", "x:0", "x:99999", ":6222", "a b:1", "a#b:1", "a,b:1", "nohost"} {
		if err := checkJoin(a); err == nil {
			t.Errorf("checkJoin(%q) accepted", a)
		}
	}
	if err := checkSwarmName("robonet"); err != nil {
		t.Error(err)
	}
	for _, s := range []string{"", "a b", "a\nb", "a#b"} {
		if err := checkSwarmName(s); err == nil {
			t.Errorf("checkSwarmName(%q) accepted", s)
		}
	}
}
