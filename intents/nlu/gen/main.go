// Command gen trains the intent classifier of package nlu and writes its
// model file: it expands the embedded corpus, drops the held-out templates,
// trains with nlu.DefaultTrainOptions and writes model.bin (run by
// `go generate ./intents/nlu`, in that directory).
//
// With -dev it writes nothing: it also holds out a second bucket of the
// training templates and prints the accuracy on it, for tuning the corpus or
// the options without looking at the held-out set.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/robonet-mesh/robonet/intents/nlu"
	"github.com/robonet-mesh/robonet/intents/nlu/internal/datahash"
)

func main() {
	out := flag.String("o", "model.bin", "where to write the model")
	dev := flag.Bool("dev", false, "train without the dev templates, print accuracy on them, write nothing")
	opts := nlu.DefaultTrainOptions()
	flag.IntVar(&opts.Epochs, "epochs", opts.Epochs, "with -dev: training epochs")
	flag.Float64Var(&opts.Rate, "rate", opts.Rate, "with -dev: initial SGD step")
	flag.Float64Var(&opts.L2, "l2", opts.L2, "with -dev: L2 weight decay")
	flag.IntVar(&opts.MinCount, "mincount", opts.MinCount, "with -dev: minimum examples per feature")
	quiet := flag.Bool("q", false, "with -dev: print no misses")
	flag.Parse()
	if !*dev && opts != nlu.DefaultTrainOptions() {
		fmt.Fprintln(os.Stderr, "nlu gen: options other than the defaults are only for -dev (the model records the defaults)")
		os.Exit(2)
	}
	if err := run(*out, *dev, opts, *quiet); err != nil {
		fmt.Fprintln(os.Stderr, "nlu gen:", err)
		os.Exit(1)
	}
}

func run(out string, dev bool, opts nlu.TrainOptions, quiet bool) error {
	start := time.Now()
	c, err := nlu.Expand()
	if err != nil {
		return err
	}
	trainer, names, data, err := nlu.DataFiles()
	if err != nil {
		return err
	}
	var files []datahash.File
	for i, name := range names {
		files = append(files, datahash.File{Name: name, Data: data[i]})
	}
	hash := datahash.Of(trainer, files)
	train := c.Train()
	if dev {
		return runDev(c, train, opts, quiet)
	}
	m, err := nlu.Train(train, nlu.DefaultTrainOptions())
	if err != nil {
		return err
	}
	b, err := m.WithDataHash(hash).MarshalBinary()
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return fmt.Errorf("write model: %w", err)
	}
	fmt.Printf("nlu: %d templates, %d examples (%d trained on), %d features, %s: %d bytes in %v\n",
		len(c.Templates), len(c.Examples), len(train), m.Features(), out, len(b), time.Since(start).Round(time.Millisecond))
	return nil
}

func runDev(c *nlu.Corpus, train []nlu.Example, opts nlu.TrainOptions, quiet bool) error {
	var fit, held []nlu.Example
	for _, e := range train {
		if c.Templates[e.Template].Dev {
			held = append(held, e)
		} else {
			fit = append(fit, e)
		}
	}
	m, err := nlu.Train(fit, opts)
	if err != nil {
		return err
	}
	perOK, perN := map[string]int{}, map[string]int{}
	for _, e := range held {
		perN[e.Label]++
		if got := m.Classify(e.Text)[0].Intent; got == e.Label {
			perOK[e.Label]++
		} else if !quiet {
			fmt.Printf("miss %-13s got %-13s %q\n", e.Label, got, e.Text)
		}
	}
	for _, l := range nlu.Labels() {
		if perN[l] > 0 {
			fmt.Printf("%-13s %4d/%-4d %.3f\n", l, perOK[l], perN[l], float64(perOK[l])/float64(perN[l]))
		}
	}
	fmt.Printf("dev accuracy %.3f on %d examples (trained on %d, %d features)\n", m.Accuracy(held), len(held), len(fit), m.Features())
	return nil
}
