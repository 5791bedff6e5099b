package nlu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// TrainOptions are the trainer's hyper-parameters. They are part of
// the data hash (DataFiles), so changing DefaultTrainOptions calls for a new
// model file.
type TrainOptions struct {
	Epochs   int     // passes over the examples
	Rate     float64 // initial SGD step; step e is Rate/(1+e/2)
	L2       float64 // weight decay per update of a feature's row
	MinCount int     // a feature seen in fewer training examples is pruned
	MinQuant int8    // after quantizing, a feature whose |weights| are all below is pruned
	Seed     uint64  // of the shuffle
}

// DefaultTrainOptions are the options `go generate` trains with.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{Epochs: 12, Rate: 0.5, L2: 1e-4, MinCount: 2, MinQuant: 2, Seed: 16}
}

// Train fits a model to examples (their labels must be among Labels).
// Labels are balanced: each label's examples weigh as much in total as any
// other's. The result depends only on the examples, their order and opts.
func Train(examples []Example, opts TrainOptions) (*Model, error) {
	labels := Labels()
	nl := len(labels)
	labelIndex := map[string]int{}
	for i, l := range labels {
		labelIndex[l] = i
	}
	perLabel := make([]int, nl)
	for _, e := range examples {
		l, ok := labelIndex[e.Label]
		if !ok {
			return nil, fmt.Errorf("%w: example %q has unknown label %q", ErrCorpus, e.Text, e.Label)
		}
		perLabel[l]++
	}
	for l, n := range perLabel {
		if n == 0 {
			return nil, fmt.Errorf("%w: no training example for label %q", ErrCorpus, labels[l])
		}
	}

	vocab, exFeats, rows := vocabulary(examples, opts.MinCount)
	w := make([]float64, len(vocab)*nl)
	b := make([]float64, nl)
	weight := make([]float64, nl)
	for l, n := range perLabel {
		weight[l] = float64(len(examples)) / float64(nl*n)
	}
	order := make([]int, len(examples))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x74726169))
	z := make([]float64, nl)
	for epoch := range opts.Epochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		rate := opts.Rate / (1 + float64(epoch)/2)
		for _, i := range order {
			y := labelIndex[examples[i].Label]
			x := 0.0
			if len(exFeats[i]) > 0 {
				x = 1 / math.Sqrt(float64(len(exFeats[i])))
			}
			copy(z, b)
			for _, r := range rows[i] {
				for l := range nl {
					z[l] += w[r*nl+l] * x
				}
			}
			p := softmax(z)
			for l := range nl {
				g := p[l]
				if l == y {
					g -= 1
				}
				g *= weight[y]
				b[l] -= rate * g
				for _, r := range rows[i] {
					k := r*nl + l
					w[k] -= rate * (g*x + opts.L2*w[k])
				}
			}
		}
	}
	return quantize(vocab, w, b, opts.MinQuant), nil
}

// vocabulary returns the features of at least minCount examples, sorted,
// and per example its distinct features and their rows in the vocabulary.
func vocabulary(examples []Example, minCount int) (vocab []string, exFeats [][]string, rows [][]int) {
	count := map[string]int{}
	exFeats = make([][]string, len(examples))
	for i, e := range examples {
		seen := map[string]bool{}
		features(Words(e.Text), func(f string) {
			if !seen[f] {
				seen[f] = true
				exFeats[i] = append(exFeats[i], f)
				count[f]++
			}
		})
	}
	for f, n := range count {
		if n >= minCount {
			vocab = append(vocab, f)
		}
	}
	slices.Sort(vocab)
	index := make(map[string]int, len(vocab))
	for i, f := range vocab {
		index[f] = i
	}
	rows = make([][]int, len(examples))
	for i, fs := range exFeats {
		for _, f := range fs {
			if j, ok := index[f]; ok {
				rows[i] = append(rows[i], j)
			}
		}
		slices.Sort(rows[i])
	}
	return vocab, exFeats, rows
}

// quantize turns float weights into int8 with a scale per label, dropping
// the features whose quantized weights are all below minQuant in size.
func quantize(vocab []string, w, b []float64, minQuant int8) *Model {
	labels := Labels()
	nl := len(labels)
	m := &Model{labels: labels, scale: make([]float32, nl), bias: make([]float32, nl), version: TrainerVersion}
	for l := range nl {
		mx := 0.0
		for r := range vocab {
			mx = max(mx, math.Abs(w[r*nl+l]))
		}
		if mx == 0 {
			mx = 1
		}
		m.scale[l] = float32(mx / 127)
		m.bias[l] = float32(b[l])
	}
	for r, f := range vocab {
		q := make([]int8, nl)
		keep := false
		for l := range nl {
			v := math.Round(w[r*nl+l] / float64(m.scale[l]))
			q[l] = int8(max(-127, min(127, v)))
			if q[l] >= minQuant || q[l] <= -minQuant {
				keep = true
			}
		}
		if keep {
			m.feats = append(m.feats, f)
			m.weights = append(m.weights, q...)
		}
	}
	m.index = make(map[string]int32, len(m.feats))
	for i, f := range m.feats {
		m.index[f] = int32(i)
	}
	return m
}

// WithDataHash returns a copy of m that records hash as the DataHash of its
// training data.
func (m *Model) WithDataHash(hash string) *Model {
	c := *m
	c.dataHash = hash
	return &c
}

// Accuracy is the share of examples whose best reading is their label.
func (m *Model) Accuracy(examples []Example) float64 {
	if len(examples) == 0 {
		return 0
	}
	ok := 0
	for _, e := range examples {
		if m.Classify(e.Text)[0].Intent == e.Label {
			ok++
		}
	}
	return float64(ok) / float64(len(examples))
}
