// Command ask prints what `robonet ask` costs offline: the planning time per
// sentence of intents.PlanRules over the documented phrasings
// (intents.Phrasings) and the evaluation set (intents/testdata/eval.json),
// the time of one nlu Classify call, and the binary size the intent model
// adds (two throwaway programs built with and without package intents/nlu).
//
// Run it from the module root: go run ./bench/ask
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/intents/nlu"
)

func main() {
	runs := flag.Int("runs", 21, "plans per sentence; a sentence's time is the median of its runs")
	evalPath := flag.String("eval", "intents/testdata/eval.json", "the evaluation set, relative to the module root")
	size := flag.Bool("size", true, "build the two throwaway programs and print the binary size the model adds")
	flag.Parse()
	if err := run(*runs, *evalPath, *size); err != nil {
		fmt.Fprintln(os.Stderr, "bench ask:", err)
		os.Exit(1)
	}
}

func run(runs int, evalPath string, size bool) error {
	if runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", runs)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	sentences, err := sentences(filepath.Join(root, evalPath))
	if err != nil {
		return err
	}
	cat, err := command.New(command.Options{ListenBaseline: []string{}})
	if err != nil {
		return err
	}
	vocab := intents.ExampleVocabulary()

	start := time.Now()
	_, _ = intents.PlanRules(sentences[0], cat, vocab)
	cold := time.Since(start)

	type timing struct {
		sentence string
		d        time.Duration
		failed   bool
	}
	var ts []timing
	for _, s := range sentences {
		ds := make([]time.Duration, runs)
		failed := false
		for i := range ds {
			t0 := time.Now()
			_, err := intents.PlanRules(s, cat, vocab)
			ds[i] = time.Since(t0)
			failed = failed || err != nil
		}
		slices.Sort(ds)
		ts = append(ts, timing{s, ds[len(ds)/2], failed})
	}
	all := make([]time.Duration, len(ts))
	nfail := 0
	for i, t := range ts {
		all[i] = t.d
		if t.failed {
			nfail++
		}
	}
	slices.Sort(all)
	fmt.Printf("PlanRules, %d sentences (%d phrasings + eval.json), median of %d runs each, vocabulary ExampleVocabulary:\n",
		len(sentences), len(intents.Phrasings()), runs)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "  p50\tp95\tmax\tfirst call (cold)\tsentences refused\n")
	fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%d\n", us(pct(all, 50)), us(pct(all, 95)), us(all[len(all)-1]), us(cold), nfail)
	w.Flush()
	slices.SortFunc(ts, func(a, b timing) int { return int(b.d - a.d) })
	fmt.Println("  slowest:")
	for _, t := range ts[:min(5, len(ts))] {
		fmt.Printf("    %s  %q\n", us(t.d), t.sentence)
	}

	modelPath := filepath.Join(root, "intents/nlu/model.bin")
	if err := classifyTimes(runs, modelPath); err != nil {
		return err
	}
	if size {
		with, without, err := binarySizes(root)
		if err != nil {
			return err
		}
		fmt.Printf("binary size: %d bytes with intents/nlu, %d without: the classifier adds %d bytes\n", with, without, with-without)
	}
	return nil
}

// classifyTimes prints the time to decode the model file (what the first
// nlu.Default, hence the first PlanRules, pays), its size, and the time of
// one Classify over the held-out masked clauses.
func classifyTimes(runs int, modelPath string) error {
	file, err := os.ReadFile(modelPath)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := nlu.Decode(file); err != nil {
		return err
	}
	decode := time.Since(t0)
	fmt.Printf("model file intents/nlu/model.bin: %d bytes, decoded in %s\n", len(file), us(decode))
	m, err := nlu.Default()
	if err != nil {
		return err
	}
	c, err := nlu.Expand()
	if err != nil {
		return err
	}
	var ds []time.Duration
	for _, e := range c.HeldOut() {
		t := time.Now()
		for range runs {
			m.Classify(e.Text)
		}
		ds = append(ds, time.Since(t)/time.Duration(runs))
	}
	slices.Sort(ds)
	fmt.Printf("nlu Classify over %d masked clauses: p50 %s, p95 %s, max %s\n",
		len(ds), us(pct(ds, 50)), us(pct(ds, 95)), us(ds[len(ds)-1]))
	return nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a module: run from the robonet module root")
	}
	return filepath.Dir(gomod), nil
}

// sentences are the phrasings' examples, then eval.json's sentences.
func sentences(evalFile string) ([]string, error) {
	var out []string
	for _, ph := range intents.Phrasings() {
		out = append(out, ph.Example)
	}
	b, err := os.ReadFile(evalFile)
	if err != nil {
		return nil, err
	}
	var set struct {
		Entries []struct {
			Sentence string `json:"sentence"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%s: %w", evalFile, err)
	}
	for _, e := range set.Entries {
		out = append(out, e.Sentence)
	}
	return out, nil
}

const withModel = `package main

import (
	"fmt"
	"os"

	"github.com/robonet-mesh/robonet/intents/nlu"
)

func main() {
	m, err := nlu.Default()
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(m.Classify(os.Args[len(os.Args)-1])[0].Intent)
}
`

const withoutModel = `package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Println(os.Args[len(os.Args)-1])
}
`

// binarySizes builds the two programs in a temp module that replaces
// robonet with root, and returns their sizes.
func binarySizes(root string) (with, without int64, err error) {
	dir, err := os.MkdirTemp("", "bench-ask-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	gomod := "module benchask\n\ngo 1.26\n\nrequire github.com/robonet-mesh/robonet v0.0.0\n\nreplace github.com/robonet-mesh/robonet => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return 0, 0, err
	}
	files := map[string]string{"go.mod": gomod, "go.sum": string(sum), "with/main.go": withModel, "without/main.go": withoutModel}
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, 0, err
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			return 0, 0, err
		}
	}
	sizes := map[string]int64{}
	for _, prog := range []string{"with", "without"} {
		bin := filepath.Join(dir, prog+".bin")
		cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./"+prog)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("go build ./%s: %w\n%s", prog, err, out)
		}
		st, err := os.Stat(bin)
		if err != nil {
			return 0, 0, err
		}
		sizes[prog] = st.Size()
	}
	return sizes["with"], sizes["without"], nil
}
