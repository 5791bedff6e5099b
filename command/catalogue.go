package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Errors returned by the catalogue and its verbs; Run maps them to wire codes.
var (
	ErrUnknownVerb = errors.New("unknown verb")               // wire.CodeUnknownVerb
	ErrBadArgs     = errors.New("bad arguments")              // wire.CodeBadRequest
	ErrNotFound    = errors.New("not found")                  // wire.CodeNotFound
	ErrUnavailable = errors.New("not available on this node") // wire.CodeUnavailable
	ErrTimeout     = errors.New("timed out")                  // wire.CodeTimeout
	ErrChecksum    = errors.New("checksum mismatch")          // wire.CodeFailed
	ErrExists      = errors.New("already exists")             // wire.CodeFailed
	ErrOptions     = errors.New("invalid catalogue options")  // from New
)

// Risk is a verb's risk class. The catalogue, not the caller, decides it.
type Risk int

// Risk classes, in increasing order.
const (
	Read      Risk = iota // looks, changes nothing
	Mutate                // changes state in a way the verb bounds (a catalogued program, a config key, a file)
	Dangerous             // can do anything the node's user can: needs the critical tier
)

// String returns "read", "mutate" or "dangerous".
func (r Risk) String() string {
	switch r {
	case Read:
		return "read"
	case Mutate:
		return "mutate"
	case Dangerous:
		return "dangerous"
	}
	return fmt.Sprintf("risk(%d)", int(r))
}

// MarshalText encodes the String form.
func (r Risk) MarshalText() ([]byte, error) {
	if r < Read || r > Dangerous {
		return nil, fmt.Errorf("invalid risk %d", int(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText reads the String form.
func (r *Risk) UnmarshalText(b []byte) error {
	for _, v := range []Risk{Read, Mutate, Dangerous} {
		if string(b) == v.String() {
			*r = v
			return nil
		}
	}
	return fmt.Errorf("invalid risk %q: want read, mutate or dangerous", clip(string(b)))
}

// Trust tiers that gate verbs (see DESIGN.md, Identity and trust).
const (
	TierRead     = 0 // ping, info, caps
	TierObserve  = 1 // status, gauge, scan
	TierOperate  = 2 // exec of allow-listed programs, config, file transfer
	TierCritical = 3 // anything dangerous; the node also wants a quorum of approvers
)

// TierFor is the lowest tier a risk class needs: mutate needs operate,
// dangerous needs critical.
func TierFor(r Risk) int {
	switch r {
	case Read:
		return TierRead
	case Mutate:
		return TierOperate
	}
	return TierCritical
}

// Output is what a Handler returns: Value becomes the Result's Output (as
// JSON) and Text its rendering for people.
type Output struct {
	Value any
	Text  string
}

// Handler runs a verb with arguments the catalogue has already validated. It
// returns when ctx is done at the latest. On error it may still return the
// Output produced so far.
type Handler func(ctx context.Context, args json.RawMessage) (Output, error)

// Spec is one verb of the catalogue. Its JSON form (without the functions) is
// what `robonet commands --json` prints.
type Spec struct {
	Name    string `json:"name"` // the verb: a subject token, see subjects.ValidToken
	Summary string `json:"summary"`
	Args    Schema `json:"args"`
	// Risk is the verb's class with no RiskFor, or the highest class RiskFor
	// returns.
	Risk Risk `json:"risk"`
	// Tier is the lowest trust tier that may run the verb at all; a call
	// needs max(Tier, TierFor(risk of the call)).
	Tier int `json:"tier"`
	// RiskFor, when set, decides the risk of one call from its validated
	// arguments.
	RiskFor func(args json.RawMessage) Risk `json:"-"`
	// TierFor, when set, raises the tier one call needs above Tier from its
	// validated arguments (file get writing an executable mode: tier 3).
	TierFor func(args json.RawMessage) int `json:"-"`
	// Check, when set, applies the rules a Schema cannot say (paths absolute,
	// no NUL bytes, fields that go together) to schema-valid arguments.
	Check   func(args json.RawMessage) error `json:"-"`
	Handler Handler                          `json:"-"`
}

// clone copies the slices a caller could otherwise change under the catalogue.
func (s Spec) clone() Spec {
	s.Args.Fields = slices.Clone(s.Args.Fields)
	for i := range s.Args.Fields {
		s.Args.Fields[i].Enum = slices.Clone(s.Args.Fields[i].Enum)
	}
	s.Args.Positional = slices.Clone(s.Args.Positional)
	return s
}

func (s Spec) check() error {
	if err := subjects.ValidToken(s.Name); err != nil {
		return fmt.Errorf("verb: %w", err)
	}
	if s.Handler == nil {
		return fmt.Errorf("verb %q: no handler", s.Name)
	}
	if s.Risk < Read || s.Risk > Dangerous {
		return fmt.Errorf("verb %q: invalid risk %d", s.Name, int(s.Risk))
	}
	if s.Tier < TierRead || s.Tier > TierCritical {
		return fmt.Errorf("verb %q: tier %d outside %d..%d", s.Name, s.Tier, TierRead, TierCritical)
	}
	if err := s.Args.check(); err != nil {
		return fmt.Errorf("verb %q: %w", s.Name, err)
	}
	return nil
}

// Host is what the node tells the catalogue about itself. Implementations must
// be safe for concurrent use and must not block.
type Host interface {
	// Status is the node's runtime state as the status verb shows it; it must
	// encode as JSON, and a fmt.Stringer renders as its String.
	Status() any
	// Caps are the capabilities the node declares (as in selectors' caps=).
	Caps() []string
	// ClockOffset is this node's clock minus the swarm's reference clock;
	// known is false until the node has a reference.
	ClockOffset() (offset time.Duration, known bool)
}

// Default limits.
const (
	DefaultMaxOutput   = 1 << 20 // bytes kept of each of exec's stdout and stderr
	DefaultMaxFileSize = 1 << 30 // bytes of one file transfer
)

// Options configure a Catalogue. The zero value is a working catalogue with no
// allow-list, no file or config store and no host: those verbs answer
// "unavailable".
type Options struct {
	// ExecAllow lists programs exec runs as mutate instead of dangerous: a
	// bare name ("systemctl") matches argv[0] written the same way and is
	// found through the node's PATH; an absolute path matches argv[0] exactly.
	// A shell command (shell: true) is always dangerous.
	ExecAllow []string
	Files     FileStore   // rn_files; nil: file answers unavailable
	Config    ConfigStore // rn_config; nil: config answers unavailable
	Host      Host        // nil: status answers unavailable, caps lists verbs only
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ListenBaseline is the set of listening TCP endpoints scan compares
	// against, in ListeningPorts' form. Nil: New takes it from the machine,
	// so create the catalogue after the node's own listeners are up. A
	// catalogue that never runs scan (the CLI's) can pass an empty slice.
	ListenBaseline []string
	// MaxOutput is how many bytes exec keeps of stdout and of stderr; 0
	// means DefaultMaxOutput. A whole exec Result can hold both, JSON-escaped,
	// plus up to 128 KiB of Text: the reply must fit the NATS max_payload.
	MaxOutput   int
	MaxFileSize int64 // file: bytes per transfer; 0 means DefaultMaxFileSize
	// FileRoots are the directories file put reads from and file get writes
	// to (absolute, existing); none: file answers unavailable.
	FileRoots []string
	// Protected are directories no file root may be or contain: the node's
	// data dir (its seeds, secret and JetStream store).
	Protected []string
	// Extra verbs served beside the built-ins (they may not reuse a name).
	Extra  []Spec
	Logger *slog.Logger // nil: discard
}

// Catalogue is the set of verbs a node serves. It is immutable after New and
// safe for concurrent use.
type Catalogue struct {
	specs map[string]Spec
	names []string // sorted

	allow       map[string]bool
	files       FileStore
	config      ConfigStore
	host        Host
	now         func() time.Time
	log         *slog.Logger
	maxOutput   int
	maxFileSize int64
	roots       []fileRoot

	baseline    map[string]bool // nil when none could be taken
	baselineErr error

	// Where the machine is looked at; tests point these at prepared trees.
	drmRoot   string // /sys/class/drm
	systemctl string // path, "" when absent
	nvidiaSMI string // path, "" when absent
}

// New validates opts and builds the catalogue. It starts nothing; unless a
// baseline is given it reads the listening ports once.
func New(opts Options) (*Catalogue, error) {
	c := &Catalogue{
		specs:       map[string]Spec{},
		allow:       map[string]bool{},
		files:       opts.Files,
		config:      opts.Config,
		host:        opts.Host,
		now:         opts.Now,
		log:         opts.Logger,
		maxOutput:   opts.MaxOutput,
		maxFileSize: opts.MaxFileSize,
		drmRoot:     "/sys/class/drm",
	}
	for _, p := range opts.ExecAllow {
		switch {
		case p == "" || strings.ContainsRune(p, 0):
			return nil, fmt.Errorf("%w: exec allow-list entry %q: empty or NUL byte", ErrOptions, p)
		case filepath.IsAbs(p):
			if filepath.Clean(p) != p {
				return nil, fmt.Errorf("%w: exec allow-list entry %q: not a clean path (want %q)", ErrOptions, p, filepath.Clean(p))
			}
		case strings.ContainsRune(p, '/'):
			return nil, fmt.Errorf("%w: exec allow-list entry %q: want a bare program name or an absolute path", ErrOptions, p)
		}
		c.allow[p] = true
	}
	var err error
	if c.roots, err = newFileRoots(opts.FileRoots, opts.Protected); err != nil {
		return nil, err
	}
	if c.maxOutput < 0 || c.maxFileSize < 0 {
		return nil, fmt.Errorf("%w: negative limit (MaxOutput %d, MaxFileSize %d)", ErrOptions, c.maxOutput, c.maxFileSize)
	}
	if c.maxOutput == 0 {
		c.maxOutput = DefaultMaxOutput
	}
	if c.maxFileSize == 0 {
		c.maxFileSize = DefaultMaxFileSize
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for _, s := range append(c.builtins(), opts.Extra...) {
		if err := s.check(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOptions, err)
		}
		if _, dup := c.specs[s.Name]; dup {
			return nil, fmt.Errorf("%w: verb %q defined twice", ErrOptions, s.Name)
		}
		c.specs[s.Name] = s.clone()
		c.names = append(c.names, s.Name)
	}
	slices.Sort(c.names)

	if opts.ListenBaseline != nil {
		c.baseline = setOf(opts.ListenBaseline)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ports, err := ListeningPorts(ctx)
		cancel()
		if err != nil {
			c.baselineErr = err
		} else {
			c.baseline = setOf(ports)
		}
	}
	if p, err := exec.LookPath("systemctl"); err == nil {
		c.systemctl = p
	}
	if p, err := exec.LookPath("nvidia-smi"); err == nil {
		c.nvidiaSMI = p
	}
	return c, nil
}

func setOf(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, s := range list {
		m[s] = true
	}
	return m
}

// Lookup returns the verb's spec.
func (c *Catalogue) Lookup(verb string) (Spec, bool) {
	s, ok := c.specs[verb]
	if !ok {
		return Spec{}, false
	}
	return s.clone(), true
}

// List returns every verb's spec, sorted by name.
func (c *Catalogue) List() []Spec {
	out := make([]Spec, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.specs[n].clone())
	}
	return out
}

func (c *Catalogue) spec(verb string) (Spec, error) {
	s, ok := c.specs[verb]
	if !ok {
		return Spec{}, fmt.Errorf("%w %q (verbs: %s)", ErrUnknownVerb, clip(verb), strings.Join(c.names, ", "))
	}
	return s, nil
}

func validate(s Spec, args json.RawMessage) error {
	if err := s.Args.validate(args); err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	if s.Check != nil {
		if err := s.Check(args); err != nil {
			if !errors.Is(err, ErrBadArgs) {
				err = fmt.Errorf("%w: %w", ErrBadArgs, err)
			}
			return fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return nil
}

// Validate checks args against the verb's schema and rules. The error wraps
// ErrUnknownVerb or ErrBadArgs and names the argument and the value.
func (c *Catalogue) Validate(verb string, args json.RawMessage) error {
	s, err := c.spec(verb)
	if err != nil {
		return err
	}
	return validate(s, args)
}

// Risk returns the risk class of running verb with args, which must be valid.
func (c *Catalogue) Risk(verb string, args json.RawMessage) (Risk, error) {
	s, err := c.spec(verb)
	if err != nil {
		return Dangerous, err
	}
	if err := validate(s, args); err != nil {
		return Dangerous, err
	}
	if s.RiskFor == nil {
		return s.Risk, nil
	}
	return s.RiskFor(args), nil
}

// Tier returns the trust tier a caller needs to run verb with args:
// max(the verb's Tier, TierFor(its risk for these args)).
func (c *Catalogue) Tier(verb string, args json.RawMessage) (int, error) {
	r, err := c.Risk(verb, args)
	if err != nil {
		return TierCritical, err
	}
	s := c.specs[verb]
	need := max(s.Tier, TierFor(r))
	if s.TierFor != nil {
		need = max(need, s.TierFor(args))
	}
	return need, nil
}

// ArgsFromWords turns the words after a verb on the command line into its
// JSON arguments, as described at Schema, and validates them:
// `gauge cpu` → {"metric":"cpu"}, `exec -- systemctl is-active nginx` →
// {"argv":["systemctl","is-active","nginx"]}.
func (c *Catalogue) ArgsFromWords(verb string, words []string) (json.RawMessage, error) {
	s, err := c.spec(verb)
	if err != nil {
		return nil, err
	}
	m, err := s.Args.fromWords(words)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", verb, err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", verb, ErrBadArgs, err)
	}
	if err := validate(s, raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// Run validates and runs one request within ctx's deadline. It always returns
// a Result: a handler's panic becomes an error with code internal (and is
// logged with its stack), never a crash.
func (c *Catalogue) Run(ctx context.Context, req wire.Request) (res wire.Result) {
	start := c.now()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("command panicked", "verb", clip(req.Verb), "id", clip(req.ID), "panic", p, "stack", string(debug.Stack()))
			res = wire.Result{
				Status: wire.StatusError,
				Error:  &wire.Error{Code: wire.CodeInternal, Msg: fmt.Sprintf("%s: internal error", clip(req.Verb))},
			}
		}
		res.ID = req.ID
		res.Ms = float64(c.now().Sub(start)) / float64(time.Millisecond)
	}()
	s, err := c.spec(req.Verb)
	if err != nil {
		return errorResult(err, nil)
	}
	if err := validate(s, req.Args); err != nil {
		return errorResult(err, nil)
	}
	if err := ctx.Err(); err != nil {
		return errorResult(fmt.Errorf("%s: %w", s.Name, err), nil)
	}
	out, err := s.Handler(ctx, req.Args)
	var raw json.RawMessage
	if out.Value != nil {
		b, merr := json.Marshal(out.Value)
		if merr != nil {
			c.log.Error("command output does not encode", "verb", s.Name, "err", merr)
			return wire.Result{Status: wire.StatusError, Error: &wire.Error{Code: wire.CodeInternal,
				Msg: fmt.Sprintf("%s: output does not encode: %v", s.Name, merr)}}
		}
		raw = b
	}
	if err != nil {
		res = errorResult(fmt.Errorf("%s: %w", s.Name, err), raw)
		res.Text = out.Text
		return res
	}
	return wire.Result{Status: wire.StatusOK, Output: raw, Text: out.Text}
}

func errorResult(err error, output json.RawMessage) wire.Result {
	return wire.Result{
		Status: wire.StatusError,
		Output: output,
		Error:  &wire.Error{Code: Code(err), Msg: err.Error()},
	}
}

// Code maps an error from the catalogue or a verb to its stable wire code.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrUnknownVerb):
		return wire.CodeUnknownVerb
	case errors.Is(err, ErrBadArgs):
		return wire.CodeBadRequest
	case errors.Is(err, ErrNotFound):
		return wire.CodeNotFound
	case errors.Is(err, ErrUnavailable):
		return wire.CodeUnavailable
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return wire.CodeTimeout
	case errors.Is(err, context.Canceled):
		return wire.CodeCanceled
	}
	return wire.CodeFailed
}
