package command

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// Type is the type of one argument. Its values are the words used in the
// catalogue's JSON form.
type Type string

// Argument types and how each is written in JSON.
const (
	TypeString   Type = "string"   // a JSON string
	TypeInt      Type = "int"      // a JSON number without fraction or exponent
	TypeFloat    Type = "float"    // a JSON number
	TypeBool     Type = "bool"     // true or false
	TypeStrings  Type = "[]string" // an array of strings
	TypeDuration Type = "duration" // a string time.ParseDuration reads, such as "1m30s"; never negative
	TypeObject   Type = "object"   // any JSON object
)

// Field describes one named argument.
type Field struct {
	Name     string   `json:"name"`
	Type     Type     `json:"type"`
	Required bool     `json:"required,omitempty"`
	Enum     []string `json:"enum,omitempty"` // allowed values of a string, or of each element of a []string
	// Min and Max bound int and float values, and durations in seconds;
	// they are checked only when Max > Min.
	Min      float64 `json:"min,omitempty"`
	Max      float64 `json:"max,omitempty"`
	MaxLen   int     `json:"max_len,omitempty"`   // bytes of a string or of each []string element, or of an object's JSON; 0: no limit
	MaxItems int     `json:"max_items,omitempty"` // elements of a []string; 0: no limit
	Default  string  `json:"default,omitempty"`   // what the verb uses when the argument is absent, for documentation
	Doc      string  `json:"doc,omitempty"`
}

// Schema describes a verb's arguments: a JSON object whose members are the
// Fields, no others, none twice. Null members count as absent.
//
// For the CLI, ArgsFromWords reads words: "name=value" sets an argument
// (repeat it or separate values with commas for a []string; an object's value
// is JSON); other words fill the Positional fields in order and then the Rest
// field, a []string. After a word "--" every word is positional, so
// `exec -- env A=b` passes "A=b" to the program.
type Schema struct {
	Fields     []Field  `json:"fields,omitempty"`
	Positional []string `json:"positional,omitempty"`
	Rest       string   `json:"rest,omitempty"`
}

// Field returns the field called name.
func (s Schema) Field(name string) (Field, bool) {
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

func (s Schema) names() string {
	var out []string
	for _, f := range s.Fields {
		out = append(out, f.Name)
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// check reports mistakes in the schema itself.
func (s Schema) check() error {
	seen := map[string]bool{}
	for i, f := range s.Fields {
		if !validFieldName(f.Name) {
			return fmt.Errorf("field %d: name %q: want [a-z][a-z0-9_]*", i, f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("field %q declared twice", f.Name)
		}
		seen[f.Name] = true
		switch f.Type {
		case TypeString, TypeInt, TypeFloat, TypeBool, TypeStrings, TypeDuration, TypeObject:
		default:
			return fmt.Errorf("field %q: unknown type %q", f.Name, f.Type)
		}
		if f.MaxLen < 0 || f.MaxItems < 0 || math.IsNaN(f.Min) || math.IsNaN(f.Max) {
			return fmt.Errorf("field %q: bad limits", f.Name)
		}
	}
	for _, p := range s.Positional {
		f, ok := s.Field(p)
		if !ok {
			return fmt.Errorf("positional %q is not a field", p)
		}
		if f.Type == TypeStrings {
			return fmt.Errorf("positional %q is a []string: make it Rest", p)
		}
	}
	if s.Rest != "" {
		f, ok := s.Field(s.Rest)
		if !ok || f.Type != TypeStrings {
			return fmt.Errorf("rest %q is not a []string field", s.Rest)
		}
	}
	return nil
}

func validFieldName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// badArg builds an error wrapping ErrBadArgs that names the argument.
func badArg(name, format string, a ...any) error {
	return fmt.Errorf("%w: argument %q: %s", ErrBadArgs, name, fmt.Sprintf(format, a...))
}

// decodeObject splits a JSON object into its members and their names in
// order, refusing anything that is not one object, and members given twice
// (encoding/json would silently keep the last one, and a reviewer reading the
// first would be misled).
func decodeObject(raw json.RawMessage) (map[string]json.RawMessage, []string, error) {
	raw = bytes.TrimSpace(raw)
	out := map[string]json.RawMessage{}
	var order []string
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil, nil
	}
	if len(raw) > wire.MaxMessage {
		return nil, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrBadArgs, len(raw), wire.MaxMessage)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not JSON: %v", ErrBadArgs, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("%w: want a JSON object, got %s", ErrBadArgs, clip(string(raw)))
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: not JSON: %v", ErrBadArgs, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("%w: not JSON: object key %v", ErrBadArgs, tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("%w: argument %q: not JSON: %v", ErrBadArgs, clip(key), err)
		}
		if _, dup := out[key]; dup {
			return nil, nil, fmt.Errorf("%w: argument %q given twice", ErrBadArgs, clip(key))
		}
		out[key] = v
		order = append(order, key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("%w: not JSON: %v", ErrBadArgs, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("%w: data after the arguments object", ErrBadArgs)
	}
	return out, order, nil
}

// validate checks args against the schema.
func (s Schema) validate(args json.RawMessage) error {
	members, order, err := decodeObject(args)
	if err != nil {
		return err
	}
	for _, name := range order {
		v := members[name]
		f, ok := s.Field(name)
		if !ok {
			return fmt.Errorf("%w: unknown argument %q (arguments: %s)", ErrBadArgs, clip(name), s.names())
		}
		if string(v) == "null" {
			continue
		}
		if err := f.check(v); err != nil {
			return err
		}
	}
	for _, f := range s.Fields {
		if v, ok := members[f.Name]; f.Required && (!ok || string(v) == "null") {
			return fmt.Errorf("%w: missing required argument %q", ErrBadArgs, f.Name)
		}
	}
	return nil
}

// kind names the JSON kind of a value for error messages.
func kind(v json.RawMessage) string {
	if len(v) == 0 {
		return "nothing"
	}
	switch c := v[0]; {
	case c == '"':
		return "string " + clip(string(v))
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return string(v)
	default:
		return "number " + clip(string(v))
	}
}

func isNumber(v json.RawMessage) bool {
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}

func (f Field) bounded() bool { return f.Max > f.Min }

func num(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }

func (f Field) inRange(name string, x float64, unit string) error {
	if !f.bounded() {
		return nil
	}
	if x < f.Min {
		return badArg(name, "%s%s is below the minimum %s%s", num(x), unit, num(f.Min), unit)
	}
	if x > f.Max {
		return badArg(name, "%s%s is above the maximum %s%s", num(x), unit, num(f.Max), unit)
	}
	return nil
}

// checkString applies MaxLen and Enum to one string value.
func (f Field) checkString(s string) error {
	if f.MaxLen > 0 && len(s) > f.MaxLen {
		return badArg(f.Name, "%d bytes, limit %d", len(s), f.MaxLen)
	}
	if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
		return badArg(f.Name, "%q is not one of %s", clip(s), strings.Join(f.Enum, ", "))
	}
	return nil
}

// check validates one non-null JSON value against the field.
func (f Field) check(v json.RawMessage) error {
	switch f.Type {
	case TypeString:
		var s string
		if v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return badArg(f.Name, "want a string, got %s", kind(v))
		}
		return f.checkString(s)
	case TypeInt:
		if !isNumber(v) {
			return badArg(f.Name, "want an integer, got %s", kind(v))
		}
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return badArg(f.Name, "want an integer, got %s", kind(v))
		}
		return f.inRange(f.Name, float64(n), "")
	case TypeFloat:
		if !isNumber(v) {
			return badArg(f.Name, "want a number, got %s", kind(v))
		}
		x, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsInf(x, 0) {
			return badArg(f.Name, "want a number, got %s", kind(v))
		}
		return f.inRange(f.Name, x, "")
	case TypeBool:
		if string(v) != "true" && string(v) != "false" {
			return badArg(f.Name, "want true or false, got %s", kind(v))
		}
	case TypeStrings:
		var ss []string
		if v[0] != '[' || json.Unmarshal(v, &ss) != nil {
			return badArg(f.Name, "want an array of strings, got %s", kind(v))
		}
		if f.MaxItems > 0 && len(ss) > f.MaxItems {
			return badArg(f.Name, "%d items, limit %d", len(ss), f.MaxItems)
		}
		for _, s := range ss {
			if err := f.checkString(s); err != nil {
				return err
			}
		}
	case TypeDuration:
		var s string
		if v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return badArg(f.Name, "want a duration such as \"30s\", got %s", kind(v))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return badArg(f.Name, "%q is not a duration such as \"30s\"", clip(s))
		}
		if d < 0 {
			return badArg(f.Name, "%s is negative", d)
		}
		if f.bounded() {
			lo, hi := time.Duration(f.Min*float64(time.Second)), time.Duration(f.Max*float64(time.Second))
			if d < lo {
				return badArg(f.Name, "%s is below the minimum %s", d, lo)
			}
			if d > hi {
				return badArg(f.Name, "%s is above the maximum %s", d, hi)
			}
		}
	case TypeObject:
		if v[0] != '{' {
			return badArg(f.Name, "want an object, got %s", kind(v))
		}
		if f.MaxLen > 0 && len(v) > f.MaxLen {
			return badArg(f.Name, "%d bytes, limit %d", len(v), f.MaxLen)
		}
	default:
		return badArg(f.Name, "field has unknown type %q", f.Type)
	}
	return nil
}

// fromWords turns CLI words into an arguments object (see Schema). It converts
// types; the caller validates the result.
func (s Schema) fromWords(words []string) (map[string]any, error) {
	out := map[string]any{}
	pos := 0
	named := true
	for _, w := range words {
		if named && w == "--" {
			named = false
			continue
		}
		if named {
			if name, val, ok := strings.Cut(w, "="); ok {
				if f, ok := s.Field(name); ok {
					if err := setWord(out, f, val, true); err != nil {
						return nil, err
					}
					continue
				}
			}
		}
		if pos < len(s.Positional) {
			f, _ := s.Field(s.Positional[pos])
			pos++
			if err := setWord(out, f, w, false); err != nil {
				return nil, err
			}
			continue
		}
		if s.Rest != "" {
			f, _ := s.Field(s.Rest)
			if err := setWord(out, f, w, false); err != nil {
				return nil, err
			}
			continue
		}
		if len(s.Positional) == 0 {
			return nil, fmt.Errorf("%w: unexpected word %q: this verb takes only name=value arguments (%s)", ErrBadArgs, clip(w), s.names())
		}
		return nil, fmt.Errorf("%w: unexpected word %q after %s", ErrBadArgs, clip(w), strings.Join(s.Positional, ", "))
	}
	return out, nil
}

// setWord stores one word's value for field f; named values of a []string
// are split at commas.
func setWord(out map[string]any, f Field, val string, named bool) error {
	if f.Type == TypeStrings {
		list, _ := out[f.Name].([]string)
		if named {
			list = append(list, strings.Split(val, ",")...)
		} else {
			list = append(list, val)
		}
		out[f.Name] = list
		return nil
	}
	if _, dup := out[f.Name]; dup {
		return fmt.Errorf("%w: argument %q given twice", ErrBadArgs, f.Name)
	}
	switch f.Type {
	case TypeInt:
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return badArg(f.Name, "%q is not an integer", clip(val))
		}
		out[f.Name] = n
	case TypeFloat:
		x, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsInf(x, 0) || math.IsNaN(x) {
			return badArg(f.Name, "%q is not a number", clip(val))
		}
		out[f.Name] = x
	case TypeBool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return badArg(f.Name, "%q is not true or false", clip(val))
		}
		out[f.Name] = b
	case TypeObject:
		if !json.Valid([]byte(val)) || !strings.HasPrefix(strings.TrimSpace(val), "{") {
			return badArg(f.Name, "%q is not a JSON object", clip(val))
		}
		out[f.Name] = json.RawMessage(val)
	default: // string, duration
		out[f.Name] = val
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// argDuration is a TypeDuration argument in a handler's argument struct.
type argDuration time.Duration

// UnmarshalJSON reads the "30s" form.
func (d *argDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = argDuration(v)
	return nil
}
