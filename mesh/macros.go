package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MacroBucket is the JetStream KV bucket that holds named compositions, one
// key per macro name. Every node creates it (package node), so a macro set
// through one node can be run through any other.
const MacroBucket = "rn_macros"

// MaxMacroDepth is how deep macro calls may nest: a composition calling @a
// is at depth 1, @a calling @b at depth 2, and so on.
const MaxMacroDepth = 16

// Macro errors. Every error a Macros method or RunComposition returns about a
// macro wraps one of these (or a *ComposeError) and names the macro.
var (
	ErrMacroName     = errors.New("invalid macro name")
	ErrMacroNotFound = errors.New("no such macro")
	ErrMacroCycle    = errors.New("macro cycle")
	ErrMacroDepth    = errors.New("macro calls nest too deep")
)

// MacroInfo is one stored macro.
type MacroInfo struct {
	Name     string    `json:"name"`
	Text     string    `json:"text"`     // the composition as it was set
	Revision uint64    `json:"revision"` // the KV revision of this value
	Updated  time.Time `json:"updated"`  // when this revision was written
}

// ValidMacroName checks a macro name: [A-Za-z][A-Za-z0-9_-]{0,63}, the
// names a composition can call with "@name" (and valid KV keys).
func ValidMacroName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrMacroName)
	}
	if len(name) > 64 {
		return fmt.Errorf("%w %q: longer than 64 bytes", ErrMacroName, clip(name))
	}
	if !isASCIILetter(name[0]) {
		return fmt.Errorf("%w %q: must start with a letter", ErrMacroName, clip(name))
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isASCIILetter(c) && !(c >= '0' && c <= '9') && c != '_' && c != '-' {
			return fmt.Errorf("%w %q: character %q (want letters, digits, '_' or '-')", ErrMacroName, clip(name), c)
		}
	}
	return nil
}

// Macros is the set of named compositions in rn_macros. It is safe for
// concurrent use; it holds no state beyond the bucket's handles.
//
// Reads go to the bucket's stream leader (STREAM.INFO, and LeaderKV for
// values), so a macro just set is never missing or old to the next command.
type Macros struct {
	kv     jetstream.KeyValue
	stream jetstream.Stream // the bucket's stream, KV_rn_macros
	leader *LeaderKV
}

// NewMacros binds the rn_macros bucket through js (a node's, a test's, or a
// client's: see Client.Macros).
func NewMacros(ctx context.Context, js jetstream.JetStream) (*Macros, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	kv, err := js.KeyValue(ctx, MacroBucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, fmt.Errorf("bucket %s: %w (every node creates it once JetStream is up; is the node ready?)", MacroBucket, err)
		}
		return nil, fmt.Errorf("bucket %s: %w", MacroBucket, err)
	}
	stream, err := js.Stream(ctx, "KV_"+MacroBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", MacroBucket, err)
	}
	return &Macros{kv: kv, stream: stream, leader: NewLeaderKV(js, MacroBucket)}, nil
}

// Macros binds the rn_macros bucket through the client's connection.
func (c *Client) Macros(ctx context.Context) (*Macros, error) {
	js, err := c.jetStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", MacroBucket, err)
	}
	return NewMacros(ctx, js)
}

// Set stores text as macro name after checking that the name is valid, that
// the text parses (a *ComposeError otherwise, wrapped with the name), and
// that, with the macros stored now, name would not reach itself through
// macro calls (ErrMacroCycle, naming the path) nor nest deeper than
// MaxMacroDepth (ErrMacroDepth). Calls to macros that do not exist yet are
// allowed: they are resolved when the macro runs.
//
// The check reads the stored macros and then writes, so two concurrent Sets
// can still close a cycle; RunComposition refuses such a cycle before it
// runs anything.
func (m *Macros) Set(ctx context.Context, name, text string) (MacroInfo, error) {
	if err := ValidMacroName(name); err != nil {
		return MacroInfo{}, err
	}
	text = strings.TrimSpace(text)
	e, err := ParseComposition(text)
	if err != nil {
		return MacroInfo{}, fmt.Errorf("macro @%s: %w", name, err)
	}
	stored, err := m.List(ctx)
	if err != nil {
		return MacroInfo{}, fmt.Errorf("macro @%s: %w", name, err)
	}
	graph := map[string][]string{name: macroRefs(e)}
	for _, s := range stored {
		if s.Name == name {
			continue
		}
		if se, err := ParseComposition(s.Text); err == nil {
			graph[s.Name] = macroRefs(se)
		}
	}
	if err := checkMacroGraph(graph, name); err != nil {
		return MacroInfo{}, err
	}
	rev, err := m.kv.PutString(ctx, name, text)
	if err != nil {
		return MacroInfo{}, fmt.Errorf("macro @%s: store: %w", name, err)
	}
	return MacroInfo{Name: name, Text: text, Revision: rev, Updated: time.Now().UTC()}, nil
}

// Get returns macro name; ErrMacroNotFound if it is not stored (or deleted).
func (m *Macros) Get(ctx context.Context, name string) (MacroInfo, error) {
	if err := ValidMacroName(name); err != nil {
		return MacroInfo{}, err
	}
	mi, found, err := m.last(ctx, name)
	if err != nil {
		return MacroInfo{}, fmt.Errorf("macro @%s: %w", name, err)
	}
	if !found {
		return MacroInfo{}, fmt.Errorf("%w: @%s", ErrMacroNotFound, name)
	}
	return mi, nil
}

// Text returns the text of macro name. Its signature is RunOptions.Macros'.
func (m *Macros) Text(ctx context.Context, name string) (string, error) {
	mi, err := m.Get(ctx, name)
	return mi.Text, err
}

// List returns every stored macro, sorted by name.
func (m *Macros) List(ctx context.Context) ([]MacroInfo, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	prefix := "$KV." + MacroBucket + "."
	// STREAM.INFO with a subject filter pages through every subject.
	info, err := m.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("list macros: %w", err)
	}
	var out []MacroInfo
	for subj := range info.State.Subjects {
		name, ok := strings.CutPrefix(subj, prefix)
		if !ok || ValidMacroName(name) != nil {
			continue
		}
		mi, found, err := m.last(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("list macros: @%s: %w", name, err)
		}
		if found {
			out = append(out, mi)
		}
	}
	slices.SortFunc(out, func(a, b MacroInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Delete removes macro name; ErrMacroNotFound if it is not stored. Macros
// that call it fail at their next run with ErrMacroNotFound.
func (m *Macros) Delete(ctx context.Context, name string) error {
	if _, err := m.Get(ctx, name); err != nil {
		return err
	}
	if err := m.kv.Delete(ctx, name); err != nil {
		return fmt.Errorf("delete macro @%s: %w", name, err)
	}
	return nil
}

// last reads the newest value of macro name from the stream leader.
func (m *Macros) last(ctx context.Context, name string) (mi MacroInfo, found bool, err error) {
	e, found, err := m.leader.Get(ctx, name)
	if err != nil || !found {
		return mi, false, err
	}
	return MacroInfo{Name: name, Text: string(e.Value), Revision: e.Revision, Updated: e.Created}, true, nil
}

// macroRefs returns the names of the macros e calls, in order, duplicates
// kept.
func macroRefs(e Expr) []string {
	var out []string
	var walk func(Expr)
	walk = func(e Expr) {
		switch x := e.(type) {
		case MacroRef:
			out = append(out, x.Name)
		case *MacroRef:
			if x != nil {
				out = append(out, x.Name)
			}
		case Fork:
			for _, b := range x.Branches {
				walk(b)
			}
		case *Fork:
			if x != nil {
				for _, b := range x.Branches {
					walk(b)
				}
			}
		case Pipe:
			walk(x.Left)
			walk(x.Right)
		case *Pipe:
			if x != nil {
				walk(x.Left)
				walk(x.Right)
			}
		}
	}
	walk(e)
	return out
}

// checkMacroGraph checks the calls reachable from root (graph maps a macro
// to the macros it calls; a name missing from it is unknown and ends a path,
// to be resolved when the macro runs): the first cycle found is an
// ErrMacroCycle naming it, a chain of calls longer than MaxMacroDepth an
// ErrMacroDepth naming the longest one. Each macro is explored once, so a
// graph of many shared calls costs its size, not its number of paths.
func checkMacroGraph(graph map[string][]string, root string) error {
	height := map[string]int{} // longest chain of calls from a macro, itself included
	onStack := map[string]bool{}
	var stack []string
	var visit func(name string) (int, error)
	visit = func(name string) (int, error) {
		if onStack[name] {
			return 0, cycleError(stack, name)
		}
		if h, ok := height[name]; ok {
			return h, nil
		}
		refs, known := graph[name]
		if !known {
			return 1, nil
		}
		stack = append(stack, name)
		onStack[name] = true
		h := 1
		for _, r := range refs {
			rh, err := visit(r)
			if err != nil {
				return 0, err
			}
			h = max(h, rh+1)
		}
		stack = stack[:len(stack)-1]
		onStack[name] = false
		height[name] = h
		return h, nil
	}
	h, err := visit(root)
	if err != nil {
		return err
	}
	if h <= MaxMacroDepth {
		return nil
	}
	// Follow the deepest calls to name the chain.
	path := []string{root}
	for cur := root; ; {
		next, best := "", 0
		for _, r := range graph[cur] {
			if rh := height[r]; rh > best {
				next, best = r, rh
			}
		}
		if next == "" || len(path) > MaxMacroDepth {
			break
		}
		path = append(path, next)
		cur = next
	}
	return fmt.Errorf("%w: @%s calls macros %d deep, limit %d: %s", ErrMacroDepth, root, h, MaxMacroDepth, macroPath(path))
}

// cycleError names the cycle: the part of the call stack from name's first
// call back to name, e.g. "@a -> @b -> @a".
func cycleError(stack []string, name string) error {
	i := slices.Index(stack, name)
	path := append(slices.Clone(stack[max(i, 0):]), name)
	return fmt.Errorf("%w: %s", ErrMacroCycle, macroPath(path))
}

// macroPath formats a call path as "@a -> @b -> @c".
func macroPath(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = "@" + n
	}
	return strings.Join(parts, " -> ")
}
