package nlu

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/robonet-mesh/robonet/intents/nlu/internal/datahash"
)

func loadModel(t testing.TB) *Model {
	t.Helper()
	m, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	return m
}

// TestModelIsCurrent fails when the data files, the trainer's version or its
// options changed since model.bin was generated.
func TestModelIsCurrent(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	trainer, names, data, err := DataFiles()
	if err != nil {
		t.Fatal(err)
	}
	var files []datahash.File
	for i, name := range names {
		files = append(files, datahash.File{Name: name, Data: data[i]})
	}
	want := datahash.Of(trainer, files)
	if m.DataHash() != want || m.Version() != TrainerVersion {
		t.Fatalf("model.bin was trained on data %.12s (trainer %d), the data is now %.12s (trainer %d): run go generate ./intents/nlu",
			m.DataHash(), m.Version(), want, TrainerVersion)
	}
}

// TestHeldOutAccuracy measures the shipped model on the expansions of the
// held-out templates, which it never trained on, and prints per-label
// accuracy, a calibration table and the confusion pairs.
func TestHeldOutAccuracy(t *testing.T) {
	t.Parallel()
	const target = 0.90
	m := loadModel(t)
	c, err := Expand()
	if err != nil {
		t.Fatal(err)
	}
	held := c.HeldOut()
	if len(held) < 500 {
		t.Fatalf("only %d held-out examples", len(held))
	}
	perOK, perN := map[string]int{}, map[string]int{}
	confusion := map[[2]string]int{}
	type bin struct{ ok, n int }
	bins := make([]bin, 10)
	ok := 0
	for _, e := range held {
		r := m.Classify(e.Text)
		perN[e.Label]++
		b := min(int(r[0].P*10), 9)
		bins[b].n++
		if r[0].Intent == e.Label {
			ok++
			perOK[e.Label]++
			bins[b].ok++
		} else {
			confusion[[2]string{e.Label, r[0].Intent}]++
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "held-out accuracy per label (%d templates held out of %d):\n", countHeldOut(c), len(c.Templates))
	for _, l := range Labels() {
		if perN[l] > 0 {
			fmt.Fprintf(&sb, "  %-13s %4d/%-4d %5.1f%%\n", l, perOK[l], perN[l], 100*float64(perOK[l])/float64(perN[l]))
		}
	}
	acc := float64(ok) / float64(len(held))
	fmt.Fprintf(&sb, "  %-13s %4d/%-4d %5.1f%%\n", "overall", ok, len(held), 100*acc)
	fmt.Fprintf(&sb, "calibration (best reading's P: share right, examples):\n")
	for i, b := range bins {
		if b.n > 0 {
			fmt.Fprintf(&sb, "  P %.1f-%.1f  %5.1f%%  %d\n", float64(i)/10, float64(i+1)/10, 100*float64(b.ok)/float64(b.n), b.n)
		}
	}
	in2, in3 := 0, 0
	for _, e := range held {
		r := m.Classify(e.Text)
		if r[0].Intent == e.Label || r[1].Intent == e.Label {
			in2++
		}
		if r[0].Intent == e.Label || r[1].Intent == e.Label || r[2].Intent == e.Label {
			in3++
		}
	}
	fmt.Fprintf(&sb, "right label among the best 2: %.1f%%, the best 3: %.1f%%\n", 100*float64(in2)/float64(len(held)), 100*float64(in3)/float64(len(held)))
	fmt.Fprintf(&sb, "thresholds (best reading's P >= t: share of examples kept, accuracy among them):\n")
	for _, th := range []float64{0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9} {
		kept, right := 0, 0
		for _, e := range held {
			if r := m.Classify(e.Text); r[0].P >= th {
				kept++
				if r[0].Intent == e.Label {
					right++
				}
			}
		}
		fmt.Fprintf(&sb, "  t %.1f  kept %5.1f%%  right %5.1f%%\n", th, 100*float64(kept)/float64(len(held)), 100*float64(right)/float64(max(kept, 1)))
	}
	fmt.Fprintf(&sb, "confusion pairs (label -> best reading: examples):\n")
	pairs := make([][2]string, 0, len(confusion))
	for p := range confusion {
		pairs = append(pairs, p)
	}
	sort.Slice(pairs, func(i, j int) bool {
		if confusion[pairs[i]] != confusion[pairs[j]] {
			return confusion[pairs[i]] > confusion[pairs[j]]
		}
		return pairs[i][0]+pairs[i][1] < pairs[j][0]+pairs[j][1]
	})
	for _, p := range pairs {
		fmt.Fprintf(&sb, "  %-13s -> %-13s %d\n", p[0], p[1], confusion[p])
	}
	t.Log("\n" + sb.String())
	if acc < target {
		t.Errorf("held-out accuracy %.1f%%, want at least %.0f%%", 100*acc, 100*target)
	}
}

func countHeldOut(c *Corpus) int {
	n := 0
	for _, t := range c.Templates {
		if t.HeldOut {
			n++
		}
	}
	return n
}

type labelled struct{ label, masked string }

// readLabelled reads a testdata file of "label<TAB>masked" lines.
func readLabelled(t *testing.T, name string) []labelled {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []labelled
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		label, masked, ok := strings.Cut(line, "\t")
		if !ok || !slices.Contains(Labels(), label) {
			t.Fatalf("%s: want label<TAB>masked, got %q", name, line)
		}
		out = append(out, labelled{label, masked})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClassifyExamples holds the masked clauses of the contract with the
// engine (intents) and the label each must get.
func TestClassifyExamples(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	examples := readLabelled(t, "testdata/examples.txt")
	if len(examples) < 40 {
		t.Fatalf("only %d examples read", len(examples))
	}
	for _, e := range examples {
		if got := m.Classify(e.masked); got[0].Intent != e.label {
			t.Errorf("Classify(%q) = %s %.2f, %s %.2f; want %s", e.masked, got[0].Intent, got[0].P, got[1].Intent, got[1].P, e.label)
		}
	}
}

// TestProbes is a regression check over the probes of testdata/probes.txt
// (see its header for why it is not a measure).
func TestProbes(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	probes := readLabelled(t, "testdata/probes.txt")
	ok := 0
	for _, p := range probes {
		got := m.Classify(p.masked)
		if got[0].Intent == p.label {
			ok++
		} else {
			t.Logf("miss: Classify(%q) = %s %.2f, %s %.2f; want %s", p.masked, got[0].Intent, got[0].P, got[1].Intent, got[1].P, p.label)
		}
	}
	t.Logf("%d/%d probes", ok, len(probes))
	if float64(ok) < 0.95*float64(len(probes)) {
		t.Errorf("%d/%d probes right, want at least 95%%", ok, len(probes))
	}
}

func TestClassifyReturnsEveryLabelBestFirst(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	for _, in := range []string{"scan NODES", "", "restart SVC on NODES", "xyzzy plugh"} {
		r := m.Classify(in)
		var got []string
		sum := 0.0
		for i, x := range r {
			got = append(got, x.Intent)
			sum += x.P
			if i > 0 && x.P > r[i-1].P {
				t.Errorf("Classify(%q): %s %.3f after %s %.3f", in, x.Intent, x.P, r[i-1].Intent, r[i-1].P)
			}
		}
		slices.Sort(got)
		if diff := cmp.Diff(Labels(), got); diff != "" {
			t.Errorf("Classify(%q) labels (-want +got):\n%s", in, diff)
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Errorf("Classify(%q): P sums to %v", in, sum)
		}
	}
	if diff := cmp.Diff(Labels(), m.Labels()); diff != "" {
		t.Errorf("model labels (-want +got):\n%s", diff)
	}
}

func TestClassifyIsDeterministic(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	for _, in := range []string{"scan NODES for anomalies", "how long has NODES been up", "", "ünïcödé ☃"} {
		first := m.Classify(in)
		for range 5 {
			if diff := cmp.Diff(first, m.Classify(in)); diff != "" {
				t.Fatalf("Classify(%q) changed (-first +now):\n%s", in, diff)
			}
		}
	}
	// A second decode of the same file gives the same readings.
	m2, err := Decode(modelFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m.Classify("get cpu from NODES"), m2.Classify("get cpu from NODES")); diff != "" {
		t.Errorf("two decodes differ (-first +second):\n%s", diff)
	}
}

func TestClassifyOddInput(t *testing.T) {
	t.Parallel()
	m := loadModel(t)
	for _, in := range []string{
		"", " ", "\x00\xff\xfe", strings.Repeat("scan NODES ", 100000), "日本語 の ノード を スキャン",
		"NODES NODES NODES", "\u202e\u200b", strings.Repeat("a", 1<<20), "SCAN nodes", "ping\tNODES\n",
	} {
		r := m.Classify(in)
		if len(r) != len(Labels()) {
			t.Errorf("Classify(%.20q): %d readings", in, len(r))
		}
		for _, x := range r {
			if math.IsNaN(x.P) || x.P < 0 || x.P > 1 {
				t.Errorf("Classify(%.20q): %s P=%v", in, x.Intent, x.P)
			}
		}
	}
}

func FuzzClassify(f *testing.F) {
	m, err := Default()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"scan NODES for anomalies", "", "é", "run QUOTED on NODES", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := m.Classify(s)
		if len(r) != len(Labels()) {
			t.Fatalf("%d readings", len(r))
		}
		sum := 0.0
		for _, x := range r {
			sum += x.P
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Fatalf("P sums to %v", sum)
		}
	})
}

func TestDecodeRejectsBadFiles(t *testing.T) {
	t.Parallel()
	good, err := loadModel(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string][]byte{
		"empty":       nil,
		"not deflate": []byte("hello"),
		"truncated":   good[:len(good)/2],
	} {
		if _, err := Decode(file); err == nil {
			t.Errorf("Decode(%s) succeeded", name)
		}
	}
	if _, err := Decode(good); err != nil {
		t.Errorf("Decode(re-encoded default model): %v", err)
	}
}
