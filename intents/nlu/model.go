package nlu

import (
	"bufio"
	"bytes"
	"compress/flate"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
)

//go:embed model.bin
var modelFile []byte

// Labels returns the intent labels, sorted.
func Labels() []string {
	return []string{
		"caps", "config.get", "config.set",
		"exec.active", "exec.logs", "exec.named", "exec.service",
		"file.get", "file.put",
		"gauge.cpu", "gauge.disk", "gauge.list", "gauge.load", "gauge.mem", "gauge.net",
		"info", "none", "ping", "scan", "status",
	}
}

// Reading is one interpretation of a clause: an intent label and its
// probability (a softmax over all labels: the P of one Classify sum to 1).
type Reading struct {
	Intent string
	P      float64
}

// Model is a trained classifier. It is immutable and safe for concurrent use.
type Model struct {
	labels   []string
	feats    []string         // sorted
	index    map[string]int32 // feature -> row
	weights  []int8           // len(feats) rows of len(labels)
	scale    []float32        // per label
	bias     []float32        // per label
	dataHash string
	version  int
}

// ErrModel is wrapped by every error decoding a model file.
var ErrModel = errors.New("nlu model")

// TrainerVersion changes whenever the features, the trainer or the file
// format change in a way that calls for a new model file.
const TrainerVersion = 1

var defaultModel = sync.OnceValues(func() (*Model, error) { return Decode(modelFile) })

// Default returns the embedded model, decoded on first use.
func Default() (*Model, error) { return defaultModel() }

// Labels returns the model's labels, sorted.
func (m *Model) Labels() []string { return slices.Clone(m.labels) }

// DataHash is the SHA-256 (hex) of the data and trainer the model came
// from (see DataFiles and package internal/datahash).
func (m *Model) DataHash() string { return m.dataHash }

// Version is the TrainerVersion that made the model.
func (m *Model) Version() int { return m.version }

// Features is the number of features the model knows.
func (m *Model) Features() int { return len(m.feats) }

// Classify returns every label with its probability for one masked clause
// (see the package doc for what masked means), best first; ties keep label
// order. Words the model never saw add nothing; an empty clause gets the
// model's prior.
func (m *Model) Classify(masked string) []Reading {
	return m.classifyWords(Words(masked))
}

func (m *Model) classifyWords(words []string) []Reading {
	nl := len(m.labels)
	var all []string
	features(words, func(f string) { all = append(all, f) })
	slices.Sort(all)
	all = slices.Compact(all)
	var rows []int32
	for _, f := range all {
		if i, ok := m.index[f]; ok {
			rows = append(rows, i)
		}
	}
	sums := make([]float64, nl)
	for _, r := range rows {
		w := m.weights[int(r)*nl : int(r)*nl+nl]
		for l := range nl {
			sums[l] += float64(w[l])
		}
	}
	// Scaled by the sentence's features, known or not, as in training.
	x := 0.0
	if len(all) > 0 {
		x = 1 / math.Sqrt(float64(len(all)))
	}
	z := make([]float64, nl)
	for l := range nl {
		z[l] = float64(m.bias[l]) + float64(m.scale[l])*sums[l]*x
	}
	p := softmax(z)
	out := make([]Reading, nl)
	for l := range nl {
		out[l] = Reading{Intent: m.labels[l], P: p[l]}
	}
	slices.SortStableFunc(out, func(a, b Reading) int {
		switch {
		case a.P > b.P:
			return -1
		case a.P < b.P:
			return 1
		}
		return 0
	})
	return out
}

func softmax(z []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = max(mx, v)
	}
	p := make([]float64, len(z))
	sum := 0.0
	for i, v := range z {
		p[i] = math.Exp(v - mx)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// The file format, compressed with DEFLATE (compress/flate): magic, then uvarints and
// length-prefixed strings: version, data hash, labels, per-label scale and
// bias (float32 bits), the features sorted and front-coded (shared prefix
// length, suffix), then the int8 weights row by row.
const modelMagic = "robonet-nlu\n"

// MarshalBinary encodes the model in the format Decode reads.
func (m *Model) MarshalBinary() ([]byte, error) {
	var raw bytes.Buffer
	raw.WriteString(modelMagic)
	putU := func(v uint64) { raw.Write(binary.AppendUvarint(nil, v)) }
	putS := func(s string) { putU(uint64(len(s))); raw.WriteString(s) }
	putU(uint64(m.version))
	putS(m.dataHash)
	putU(uint64(len(m.labels)))
	for _, l := range m.labels {
		putS(l)
	}
	for l := range m.labels {
		putU(uint64(math.Float32bits(m.scale[l])))
		putU(uint64(math.Float32bits(m.bias[l])))
	}
	putU(uint64(len(m.feats)))
	prev := ""
	for _, f := range m.feats {
		n := 0
		for n < len(prev) && n < len(f) && prev[n] == f[n] {
			n++
		}
		putU(uint64(n))
		putS(f[n:])
		prev = f
	}
	for _, w := range m.weights {
		raw.WriteByte(byte(w))
	}
	var out bytes.Buffer
	zw, err := flate.NewWriter(&out, flate.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Limits that keep Decode from allocating without bound on a corrupt file.
const (
	maxLabels   = 256
	maxFeatures = 1 << 20
	maxString   = 1 << 10
)

// Decode reads a model file written by MarshalBinary.
func Decode(file []byte) (*Model, error) {
	zr := flate.NewReader(bytes.NewReader(file))
	defer zr.Close()
	r := bufio.NewReader(io.LimitReader(zr, 64<<20))
	magic := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != modelMagic {
		return nil, fmt.Errorf("%w: not a model file (magic %q)", ErrModel, magic)
	}
	d := decoder{r: r}
	m := &Model{version: int(d.u(math.MaxInt32)), dataHash: d.s()}
	nl := int(d.u(maxLabels))
	for range nl {
		m.labels = append(m.labels, d.s())
	}
	m.scale = make([]float32, nl)
	m.bias = make([]float32, nl)
	for l := range nl {
		m.scale[l] = math.Float32frombits(uint32(d.u(math.MaxUint32)))
		m.bias[l] = math.Float32frombits(uint32(d.u(math.MaxUint32)))
	}
	nf := int(d.u(maxFeatures))
	m.feats = make([]string, 0, min(nf, 1<<16))
	prev := ""
	for range nf {
		if d.err != nil {
			break
		}
		n := int(d.u(uint64(len(prev))))
		f := prev[:n] + d.s()
		m.feats = append(m.feats, f)
		prev = f
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrModel, d.err)
	}
	m.weights = make([]int8, nf*nl)
	buf := make([]byte, len(m.weights))
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("%w: weights: %w", ErrModel, err)
	}
	for i, b := range buf {
		m.weights[i] = int8(b)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	m.index = make(map[string]int32, nf)
	for i, f := range m.feats {
		m.index[f] = int32(i)
	}
	return m, nil
}

func (m *Model) check() error {
	if !slices.Equal(m.labels, Labels()) {
		return fmt.Errorf("%w: labels %q, want %q (run go generate ./intents/nlu)", ErrModel, m.labels, Labels())
	}
	if !slices.IsSorted(m.feats) {
		return fmt.Errorf("%w: features not sorted", ErrModel)
	}
	for l := range m.labels {
		if s, b := float64(m.scale[l]), float64(m.bias[l]); math.IsNaN(s) || math.IsInf(s, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
			return fmt.Errorf("%w: label %s has scale %v bias %v", ErrModel, m.labels[l], s, b)
		}
	}
	return nil
}

type decoder struct {
	r   *bufio.Reader
	err error
}

func (d *decoder) u(limit uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(d.r)
	if err != nil {
		d.err = err
		return 0
	}
	if v > limit {
		d.err = fmt.Errorf("value %d over its limit %d", v, limit)
		return 0
	}
	return v
}

func (d *decoder) s() string {
	n := d.u(maxString)
	if d.err != nil {
		return ""
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		d.err = err
		return ""
	}
	return string(b)
}
