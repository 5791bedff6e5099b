package command

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/robonet-mesh/robonet/wire"
	"github.com/shirou/gopsutil/v4/cpu"
)

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"empty allow entry", Options{ExecAllow: []string{""}}, `exec allow-list entry ""`},
		{"relative allow entry", Options{ExecAllow: []string{"./deploy"}}, `want a bare program name or an absolute path`},
		{"unclean allow entry", Options{ExecAllow: []string{"/usr//bin/x"}}, `not a clean path (want "/usr/bin/x")`},
		{"negative output", Options{MaxOutput: -1}, "negative limit"},
		{"negative file size", Options{MaxFileSize: -1}, "negative limit"},
	}
	for _, tt := range tests {
		tt.opts.ListenBaseline = []string{}
		if _, err := New(tt.opts); !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want ErrOptions containing %q", tt.name, err, tt.want)
		}
	}
}

func TestListIsSortedAndComplete(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	var names []string
	for _, s := range c.List() {
		names = append(names, s.Name)
	}
	want := []string{"caps", "config", "exec", "file", "gauge", "info", "ping", "scan", "status", "types"}
	if d := cmp.Diff(want, names); d != "" {
		t.Fatalf("List names (-want +got):\n%s", d)
	}
	// The JSON form is what `robonet commands --json` prints.
	b, err := json.Marshal(c.List())
	if err != nil {
		t.Fatal(err)
	}
	var specs []struct {
		Name string `json:"name"`
		Risk string `json:"risk"`
		Tier int    `json:"tier"`
	}
	if err := json.Unmarshal(b, &specs); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range specs {
		got[s.Name] = fmt.Sprintf("%s/%d", s.Risk, s.Tier)
	}
	wantRisk := map[string]string{
		"ping": "read/0", "info": "read/0", "caps": "read/0", "status": "read/1", "gauge": "read/1",
		"scan": "read/1", "exec": "dangerous/2", "file": "mutate/2", "config": "mutate/2", "types": "read/0",
	}
	if d := cmp.Diff(wantRisk, got); d != "" {
		t.Fatalf("risk/tier of the JSON catalogue (-want +got):\n%s", d)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	s, ok := c.Lookup("gauge")
	if !ok || s.Name != "gauge" || s.Handler == nil {
		t.Fatalf("Lookup(gauge) = %+v, %v", s, ok)
	}
	s.Args.Fields[0].Enum[1] = "gpu" // must not widen what the catalogue accepts
	if err := c.Validate("gauge", json.RawMessage(`{"metric":"gpu"}`)); err == nil {
		t.Fatal("changing a looked-up spec changed the catalogue")
	}
	if _, ok := c.Lookup("reboot"); ok {
		t.Fatal("Lookup(reboot) found something")
	}
}

func TestRiskAndTierFollowArguments(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, ExecAllow: []string{"systemctl", "/usr/bin/uptime"}})
	tests := []struct {
		verb, args string
		risk       Risk
		tier       int
	}{
		{"ping", ``, Read, TierRead},
		{"info", `{}`, Read, TierRead},
		{"caps", ``, Read, TierRead},
		{"status", ``, Read, TierObserve},
		{"gauge", `{"metric":"cpu"}`, Read, TierObserve},
		{"scan", ``, Read, TierObserve},
		{"exec", `{"argv":["systemctl","is-active","nginx"]}`, Mutate, TierOperate},
		{"exec", `{"argv":["/usr/bin/uptime"]}`, Mutate, TierOperate},
		{"exec", `{"argv":["/usr/bin/systemctl","stop","nginx"]}`, Dangerous, TierCritical}, // path vs bare allow entry
		{"exec", `{"argv":["uptime"]}`, Dangerous, TierCritical},                            // bare vs path allow entry
		{"exec", `{"argv":["/usr/bin/../bin/uptime"]}`, Dangerous, TierCritical},
		{"exec", `{"argv":["/tmp/x/systemctl"]}`, Dangerous, TierCritical},
		{"exec", `{"argv":["systemctl"],"shell":true}`, Dangerous, TierCritical},
		{"exec", `{"argv":["rm","-rf","/"]}`, Dangerous, TierCritical},
		{"file", `{"op":"get","name":"x","path":"/tmp/x"}`, Mutate, TierOperate},
		{"config", `{"op":"get","key":"a"}`, Read, TierOperate},
		{"config", `{"op":"set","key":"a","value":"b"}`, Mutate, TierOperate},
	}
	for _, tt := range tests {
		r, err := c.Risk(tt.verb, json.RawMessage(tt.args))
		if err != nil || r != tt.risk {
			t.Errorf("Risk(%s, %s) = %v, %v; want %v", tt.verb, tt.args, r, err, tt.risk)
		}
		tier, err := c.Tier(tt.verb, json.RawMessage(tt.args))
		if err != nil || tier != tt.tier {
			t.Errorf("Tier(%s, %s) = %d, %v; want %d", tt.verb, tt.args, tier, err, tt.tier)
		}
	}
	// Arguments that do not validate get no risk class but the highest.
	if r, err := c.Risk("exec", json.RawMessage(`{"argv":[]}`)); !errors.Is(err, ErrBadArgs) || r != Dangerous {
		t.Errorf("Risk of bad exec args = %v, %v", r, err)
	}
	if tier, err := c.Tier("reboot", nil); !errors.Is(err, ErrUnknownVerb) || tier != TierCritical {
		t.Errorf("Tier(reboot) = %d, %v", tier, err)
	}
}

func TestRiskText(t *testing.T) {
	t.Parallel()
	for _, r := range []Risk{Read, Mutate, Dangerous} {
		b, err := r.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Risk
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("%v does not round-trip: %s → %v %v", r, b, back, err)
		}
	}
	if _, err := Risk(9).MarshalText(); err == nil {
		t.Error("Risk(9) marshals")
	}
	var r Risk
	if err := r.UnmarshalText([]byte("harmless")); err == nil {
		t.Error(`"harmless" unmarshals`)
	}
	if TierFor(Read) != TierRead || TierFor(Mutate) != TierOperate || TierFor(Dangerous) != TierCritical {
		t.Error("TierFor")
	}
}

func TestRunPing(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Now: func() time.Time { return at }})
	res := run(t, c, "ping", `{"echo":"hi"}`)
	mustOK(t, res)
	if res.ID != "t-1" || res.Text != "pong hi" || res.Ms != 0 {
		t.Errorf("result %+v", res)
	}
	p := outputOf[PingReply](t, res)
	if !p.Time.Equal(at) || p.Echo != "hi" {
		t.Errorf("ping reply %+v", p)
	}
}

func TestRunMapsErrorsToCodes(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	res := run(t, c, "reboot", "")
	mustCode(t, res, wire.CodeUnknownVerb)
	if res.ID != "t-1" || !strings.Contains(res.Error.Msg, `"reboot"`) {
		t.Errorf("unknown verb result %+v", res)
	}
	res = run(t, c, "gauge", `{"metric":"gpu"}`)
	mustCode(t, res, wire.CodeBadRequest)
	if !strings.Contains(res.Error.Msg, `argument "metric": "gpu"`) {
		t.Errorf("bad args message %q", res.Error.Msg)
	}
	mustCode(t, run(t, c, "status", ""), wire.CodeUnavailable)
	mustCode(t, run(t, c, "file", `{"op":"get","name":"x","path":"/tmp/x"}`), wire.CodeUnavailable)
	mustCode(t, run(t, c, "config", `{"op":"get","key":"x"}`), wire.CodeUnavailable)

	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	mustCode(t, c.Run(ctx, wire.Request{Verb: "ping"}), wire.CodeTimeout)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	mustCode(t, c.Run(ctx, wire.Request{Verb: "ping"}), wire.CodeCanceled)

	for err, code := range map[error]string{
		nil: "", ErrChecksum: wire.CodeFailed, ErrExists: wire.CodeFailed, errors.New("x"): wire.CodeFailed,
		fmt.Errorf("a: %w", ErrTimeout): wire.CodeTimeout, context.DeadlineExceeded: wire.CodeTimeout,
	} {
		if got := Code(err); got != code {
			t.Errorf("Code(%v) = %q, want %q", err, got, code)
		}
	}
}

func TestRunRecoversFromPanic(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	boom := Spec{Name: "boom", Summary: "panics", Risk: Read, Tier: TierRead,
		Handler: func(context.Context, json.RawMessage) (Output, error) {
			var m map[string]int
			m["x"] = 1 // nil map write
			return Output{}, nil
		}}
	unencodable := Spec{Name: "chan", Summary: "returns what JSON cannot say", Risk: Read, Tier: TierRead,
		Handler: func(context.Context, json.RawMessage) (Output, error) {
			return Output{Value: make(chan int)}, nil
		}}
	c := newCatalogue(t, Options{
		ListenBaseline: []string{},
		Extra:          []Spec{boom, unencodable},
		Logger:         slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil)),
	})
	res := run(t, c, "boom", "")
	mustCode(t, res, wire.CodeInternal)
	if res.ID != "t-1" || res.Error.Msg != "boom: internal error" {
		t.Errorf("panic result %+v", res)
	}
	mu.Lock()
	logged := logs.String()
	mu.Unlock()
	if !strings.Contains(logged, "command panicked") || !strings.Contains(logged, "assignment to entry in nil map") {
		t.Errorf("panic not logged with its cause: %s", logged)
	}
	mustCode(t, run(t, c, "chan", ""), wire.CodeInternal)
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestRunCaps(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Host: testHost{caps: []string{"gpu", "ai", "camera"}}})
	res := run(t, c, "caps", "")
	mustOK(t, res)
	got := outputOf[CapsReply](t, res)
	var verbs []string
	for _, s := range c.List() {
		verbs = append(verbs, s.Name)
	}
	if d := cmp.Diff(CapsReply{Caps: []string{"ai", "camera", "gpu"}, Verbs: verbs}, got); d != "" {
		t.Errorf("caps (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(res.Text, "caps: ai, camera, gpu\nverbs: caps, config") {
		t.Errorf("caps text %q", res.Text)
	}
	bare := newCatalogue(t, Options{ListenBaseline: []string{}})
	res = run(t, bare, "caps", "")
	mustOK(t, res)
	if got := outputOf[CapsReply](t, res); got.Caps == nil || len(got.Caps) != 0 {
		t.Errorf("caps without a host = %+v", got)
	}
}

type stringerStatus struct {
	State string `json:"state"`
	Peers int    `json:"peers"`
}

func (s stringerStatus) String() string { return fmt.Sprintf("%s with %d peers", s.State, s.Peers) }

func TestRunStatus(t *testing.T) {
	t.Parallel()
	st := wire.Status{Swarm: "lab", Chevron: "3.12.7.1", Name: "n1", State: wire.StateAlive, Members: 3}
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Host: testHost{status: st}})
	res := run(t, c, "status", "")
	mustOK(t, res)
	if got := outputOf[wire.Status](t, res); !cmp.Equal(got, st) {
		t.Errorf("status = %+v, want %+v", got, st)
	}
	if !strings.Contains(res.Text, `"chevron": "3.12.7.1"`) {
		t.Errorf("status text %q", res.Text)
	}
	c = newCatalogue(t, Options{ListenBaseline: []string{}, Host: testHost{status: stringerStatus{"alive", 2}}})
	res = run(t, c, "status", "")
	mustOK(t, res)
	if res.Text != "alive with 2 peers" {
		t.Errorf("Stringer status text %q", res.Text)
	}
}

func TestRunInfo(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	res := run(t, c, "info", "")
	mustOK(t, res)
	inv := outputOf[Inventory](t, res)
	if inv.OS != runtime.GOOS || inv.Arch == "" || inv.Hostname == "" {
		t.Errorf("inventory system %+v", inv)
	}
	if inv.CPU.Logical != runtime.NumCPU() || inv.Memory.Total == 0 {
		t.Errorf("inventory cpu %+v memory %+v", inv.CPU, inv.Memory)
	}
	if runtime.GOOS == "linux" && inv.Kernel == "" {
		t.Error("no kernel version")
	}
	if !slices.ContainsFunc(inv.Interfaces, func(i InterfaceInfo) bool { return i.Name == "lo" || strings.HasPrefix(i.Name, "lo") }) {
		t.Errorf("no loopback interface in %+v", inv.Interfaces)
	}
	if len(inv.Disks) == 0 {
		t.Logf("no disks seen (warnings %v)", inv.Warnings)
	}
	for _, d := range inv.Disks {
		if d.Mount == "" || d.Total == 0 {
			t.Errorf("disk %+v", d)
		}
	}
	if len(inv.GPUs) == 0 && inv.GPUNote != GPUNoneVisible {
		t.Errorf("no GPUs and note %q", inv.GPUNote)
	}
	for _, want := range []string{"host ", "cpu ", "memory "} {
		if !strings.Contains(res.Text, want) {
			t.Errorf("info text lacks %q:\n%s", want, res.Text)
		}
	}
	t.Logf("info:\n%s", res.Text)
}

func TestInfoReadsGPUsFromDRMAndNvidiaSMI(t *testing.T) {
	t.Parallel()
	drm := t.TempDir()
	mkCard := func(card, vendor, device, driver string) {
		dev := drm + "/" + card + "/device"
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		if vendor != "" {
			os.WriteFile(dev+"/vendor", []byte(vendor+"\n"), 0o644)
			os.WriteFile(dev+"/device", []byte(device+"\n"), 0o644)
		}
		if err := os.Symlink("../../../bus/drivers/"+driver, dev+"/driver"); err != nil {
			t.Fatal(err)
		}
	}
	mkCard("card0", "0x8086", "0x46a6", "i915")
	mkCard("card1", "0x10de", "0x2204", "nvidia")
	mkCard("card2", "", "", "vc4")
	if err := os.MkdirAll(drm+"/card0-HDMI-A-1", 0o755); err != nil { // a connector, not a card
		t.Fatal(err)
	}
	os.MkdirAll(drm+"/renderD128", 0o755)

	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	c.drmRoot, c.nvidiaSMI = drm, ""
	gpus, errs := c.gpus(context.Background())
	want := []GPUInfo{
		{Vendor: "Intel", Model: "8086:46a6", Driver: "i915", Source: "drm", Card: "card0"},
		{Vendor: "NVIDIA", Model: "10de:2204", Driver: "nvidia", Source: "drm", Card: "card1"},
		{Vendor: "vc4", Driver: "vc4", Source: "drm", Card: "card2"},
	}
	if d := cmp.Diff(want, gpus); d != "" || len(errs) > 0 {
		t.Errorf("drm GPUs (-want +got):\n%s\nerrors %v", d, errs)
	}

	// nvidia-smi, when present, names the NVIDIA cards instead of their PCI ids.
	c.nvidiaSMI = writeScript(t, t.TempDir(), "nvidia-smi",
		`[ "$1" = "--query-gpu=name,memory.total,driver_version" ] || exit 2
echo "NVIDIA GeForce RTX 3090, 24576, 550.54.14"
`)
	gpus, errs = c.gpus(context.Background())
	want = []GPUInfo{want[0], want[2],
		{Vendor: "NVIDIA", Model: "NVIDIA GeForce RTX 3090", Driver: "550.54.14", Memory: 24576 << 20, Source: "nvidia-smi"}}
	if d := cmp.Diff(want, gpus); d != "" || len(errs) > 0 {
		t.Errorf("GPUs with nvidia-smi (-want +got):\n%s\nerrors %v", d, errs)
	}

	c.drmRoot, c.nvidiaSMI = t.TempDir()+"/absent", ""
	inv := c.inventory(context.Background())
	if len(inv.GPUs) != 0 || inv.GPUNote != GPUNoneVisible || !strings.Contains(inv.text(), "gpu        none visible") {
		t.Errorf("without GPUs: %+v %q", inv.GPUs, inv.GPUNote)
	}
}

func TestRunGaugeEveryMetric(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	tests := []struct {
		metric string
		want   []string // gauge names that must be there
	}{
		{"cpu", []string{"cpu.busy_pct", "cpu.iowait_pct", "cpu.count"}},
		{"mem", []string{"mem.total", "mem.available", "mem.used_pct", "swap.total"}},
		{"disk", []string{"disk.used_pct", "disk.free"}},
		{"net", nil},
		{"load", []string{"load.1", "load.5", "load.15", "load.per_cpu", "procs.total"}},
		{"list", []string{"cpu.busy_pct", "mem.used_pct", "disk.used_pct", "load.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.metric, func(t *testing.T) {
			t.Parallel()
			res := run(t, c, "gauge", `{"metric":"`+tt.metric+`","interval":"20ms"}`)
			mustOK(t, res)
			r := outputOf[GaugeReply](t, res)
			if r.Metric != tt.metric {
				t.Errorf("metric %q", r.Metric)
			}
			names := map[string]Gauge{}
			for _, g := range r.Gauges {
				names[g.Name] = g
				if g.Unit == UnitPercent && (g.Value < 0 || g.Value > 100) {
					t.Errorf("%s = %v%%", g.Name, g.Value)
				}
				if !strings.HasPrefix(g.Name, tt.metric) && tt.metric != "list" && !(tt.metric == "mem" && strings.HasPrefix(g.Name, "swap.")) &&
					!(tt.metric == "load" && strings.HasPrefix(g.Name, "procs.")) {
					t.Errorf("gauge %s in metric %s", g.Name, tt.metric)
				}
			}
			for _, w := range tt.want {
				if _, ok := names[w]; !ok {
					t.Errorf("no %s in %v (warnings %v)", w, r.Gauges, r.Warnings)
				}
			}
			if g, ok := names["disk.used_pct"]; ok && g.Labels["mount"] == "" {
				t.Errorf("disk gauge without mount label: %+v", g)
			}
			if g, ok := names["cpu.count"]; ok && g.Value != float64(runtime.NumCPU()) {
				t.Errorf("cpu.count = %v", g.Value)
			}
			t.Logf("gauge %s:\n%s", tt.metric, res.Text)
		})
	}
}

func TestCPUBusy(t *testing.T) {
	t.Parallel()
	t0 := cpu.TimesStat{User: 100, System: 50, Idle: 800, Iowait: 50, Guest: 20}
	tests := []struct {
		t1           cpu.TimesStat
		busy, iowait float64
	}{
		{cpu.TimesStat{User: 150, System: 75, Idle: 850, Iowait: 75, Guest: 20}, 50, 100.0 / 6},
		{cpu.TimesStat{User: 200, System: 50, Idle: 800, Iowait: 50, Guest: 120}, 100, 0}, // guest counted once, in user
		{t0, 0, 0},
	}
	for _, tt := range tests {
		busy, iowait := cpuBusy(t0, tt.t1)
		if runtime.GOOS == "linux" && (math.Abs(busy-tt.busy) > 1e-9 || math.Abs(iowait-tt.iowait) > 1e-9) {
			t.Errorf("cpuBusy(%+v) = %v, %v; want %v, %v", tt.t1, busy, iowait, tt.busy, tt.iowait)
		}
		if busy < 0 || busy > 100 || iowait < 0 || iowait > 100 {
			t.Errorf("cpuBusy(%+v) = %v, %v", tt.t1, busy, iowait)
		}
	}
}

func TestGaugeStopsAtDeadline(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	res := c.Run(ctx, wire.Request{Verb: "gauge", Args: json.RawMessage(`{"metric":"cpu","interval":"5s"}`)})
	mustCode(t, res, wire.CodeTimeout)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("gauge ran %v past a 50ms deadline", el)
	}
}

func TestExtraVerbRuns(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	res := run(t, c, "types", `{"s":"a"}`)
	mustOK(t, res)
	if string(res.Output) != `{"s":"a"}` || res.Text != `{"s":"a"}` {
		t.Errorf("extra verb result %+v", res)
	}
}

func TestWireJSONShape(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Now: func() time.Time { return time.Unix(0, 0) }})
	var req wire.Request
	if err := wire.Decode([]byte(`{"verb":"ping","args":{"echo":"x"},"id":"r1","from":"ops"}`), &req); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c.Run(context.Background(), req))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"r1","status":"ok","output":{"time":"1970-01-01T00:00:00Z","echo":"x"},"text":"pong x","ms":0}`
	if string(b) != want {
		t.Errorf("result JSON\n got %s\nwant %s", b, want)
	}
	b, _ = json.Marshal(c.Run(context.Background(), wire.Request{Verb: "nope", ID: "r2"}))
	if !strings.HasPrefix(string(b), `{"id":"r2","status":"error","error":{"code":"unknown_verb","msg":"unknown verb \"nope\" (verbs: caps, config,`) {
		t.Errorf("error JSON %s", b)
	}
}

func FuzzValidate(f *testing.F) {
	for _, seed := range []struct{ verb, args string }{
		{"ping", `{"echo":"x"}`}, {"info", ``}, {"caps", `null`}, {"status", `{}`},
		{"gauge", `{"metric":"cpu","interval":"100ms"}`},
		{"scan", `{"checks":["disk","ports"],"disk_pct":80,"clock_skew":"1s"}`},
		{"exec", `{"argv":["systemctl","status"],"timeout":"5s","stdin":"x","dir":"/tmp","shell":false}`},
		{"exec", `{"argv":["a\u0000"]}`}, {"exec", `{"argv":[]}`},
		{"file", `{"op":"get","name":"a/b","path":"/x","sha256":"` + strings.Repeat("0", 64) + `","mode":"0600"}`},
		{"config", `{"op":"set","key":"a.b","value":"c"}`},
		{"gauge", `{"metric":"cpu","metric":"mem"}`}, {"gauge", `{"a":1} x`}, {"types", `{"n":1e400}`},
		{"nope", `{}`}, {"", ``},
	} {
		f.Add(seed.verb, []byte(seed.args))
	}
	c := newCatalogue(f, Options{ListenBaseline: []string{}, ExecAllow: []string{"systemctl"}, Extra: []Spec{typesSpec()}})
	f.Fuzz(func(t *testing.T, verb string, args []byte) {
		verr := c.Validate(verb, args)
		r, rerr := c.Risk(verb, args)
		tier, terr := c.Tier(verb, args)
		if (verr == nil) != (rerr == nil) || (verr == nil) != (terr == nil) {
			t.Fatalf("Validate %v, Risk %v, Tier %v disagree", verr, rerr, terr)
		}
		if verr != nil {
			if !errors.Is(verr, ErrBadArgs) && !errors.Is(verr, ErrUnknownVerb) {
				t.Fatalf("error %v wraps neither ErrBadArgs nor ErrUnknownVerb", verr)
			}
			if r != Dangerous || tier != TierCritical {
				t.Fatalf("invalid args got risk %v tier %d", r, tier)
			}
			return
		}
		if r < Read || r > Dangerous || tier < TierFor(r) {
			t.Fatalf("risk %v tier %d", r, tier)
		}
	})
}

func FuzzArgsFromWords(f *testing.F) {
	f.Add("exec", "-- systemctl is-active nginx")
	f.Add("scan", "disk ports disk_pct=80 checks=load,clock")
	f.Add("types", `bb 3 x y f=0.5 b=true d=2s o={"k":1}`)
	f.Add("config", "set k a=b")
	c := newCatalogue(f, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	f.Fuzz(func(t *testing.T, verb, line string) {
		raw, err := c.ArgsFromWords(verb, strings.Fields(line))
		if err != nil {
			return
		}
		if err := c.Validate(verb, raw); err != nil {
			t.Fatalf("ArgsFromWords(%q, %q) = %s, which does not validate: %v", verb, line, raw, err)
		}
	})
}

func BenchmarkRunPing(b *testing.B) {
	c := newCatalogue(b, Options{ListenBaseline: []string{}})
	ctx := context.Background()
	req := wire.Request{Verb: "ping", ID: "b", Args: json.RawMessage(`{"echo":"x"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if res := c.Run(ctx, req); res.Status != wire.StatusOK {
			b.Fatal(res.Error)
		}
	}
}

func BenchmarkValidateExecArgs(b *testing.B) {
	c := newCatalogue(b, Options{ListenBaseline: []string{}})
	args := json.RawMessage(`{"argv":["systemctl","is-active","nginx.service"],"timeout":"10s","stdin":"","dir":"/"}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Validate("exec", args); err != nil {
			b.Fatal(err)
		}
	}
}
