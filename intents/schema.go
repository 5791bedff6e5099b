package intents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// planSchema is the JSON Schema of a plan as a planner writes it. It is
// written for OpenAI's strict structured output, the narrowest dialect the
// LLM planner speaks: every object lists all its properties as required and
// refuses others, optional members are nullable, and only type, properties,
// required, additionalProperties, items, enum, anyOf and description are
// used (no pattern, length or range keywords, which some servers refuse).
// Plan.Validate enforces what the schema cannot say; the numbers in the
// descriptions are MaxSteps and MaxNodes (a test keeps them in step).
//
// It differs from Plan's own JSON in two ways, both undone by
// normalizePlanJSON: optional members may be null, and args is the
// arguments object encoded as a JSON string, because strict mode cannot
// describe an object whose members depend on the verb. Sentence, planner
// and note are the planner's to fill, not the model's, so the schema
// leaves them out.
const planSchema = `{
  "type": "object",
  "description": "A robonet plan: a small DAG of steps, each running one catalogue verb on the nodes a selector names.",
  "properties": {
    "steps": {
      "type": "array",
      "description": "1 to 16 steps; a step runs after every step in its depends_on.",
      "items": {
        "type": "object",
        "properties": {
          "id": {
            "type": "string",
            "description": "unique in the plan: a lower-case letter, then lower-case letters, digits, '_' or '-', at most 32 bytes, e.g. \"s1\""
          },
          "selector": {
            "type": "string",
            "description": "the nodes to run on, in the selector grammar: \"all\", \"3.12\", \"caps=gpu,ai\", \"tag=role:camera,load<0.5\", \"os=linux|trust>=2\", a node name"
          },
          "verb": {
            "type": "string",
            "description": "a verb of the catalogue, exactly as listed"
          },
          "args": {
            "type": ["string", "null"],
            "description": "the verb's arguments: one JSON object encoded as a string, e.g. \"{\\\"metric\\\":\\\"cpu\\\"}\"; null when the defaults do"
          },
          "depends_on": {
            "type": "array",
            "items": {"type": "string"},
            "description": "ids of the steps that must finish first; [] for none"
          },
          "from": {
            "anyOf": [
              {
                "type": "object",
                "properties": {
                  "step": {"type": "string", "description": "an id in this step's depends_on"},
                  "which": {"type": "string", "enum": ["ok", "failed", "slowest", "fastest", "all"]},
                  "n": {"type": ["integer", "null"], "description": "for slowest and fastest: how many nodes, 1..10000; otherwise null"}
                },
                "required": ["step", "which", "n"],
                "additionalProperties": false
              },
              {"type": "null"}
            ],
            "description": "run only on nodes an earlier step picked: those that answered ok, those that failed, the n slowest or fastest, or all it targeted; null for every node the selector names"
          },
          "order": {
            "anyOf": [
              {"type": "string", "enum": ["load_desc", "load_asc"]},
              {"type": "null"}
            ],
            "description": "order the nodes before limit: load_desc busiest first, load_asc idlest first; null for no order"
          },
          "limit": {
            "type": ["integer", "null"],
            "description": "at most this many nodes, 1..10000; null for no cap"
          },
          "why": {
            "type": ["string", "null"],
            "description": "one short line for people saying what the step is for"
          }
        },
        "required": ["id", "selector", "verb", "args", "depends_on", "from", "order", "limit", "why"],
        "additionalProperties": false
      }
    }
  },
  "required": ["steps"],
  "additionalProperties": false
}`

// PlanSchema returns the JSON Schema of a plan as a planner writes it (a
// fresh copy each call). It is strict-mode compatible: null stands for an
// absent optional member and a step's args is its arguments object encoded
// as a JSON string. The LLM planner undoes both before DecodePlan, which
// stays the one place that reads a plan.
func PlanSchema() json.RawMessage {
	return json.RawMessage(planSchema)
}

// Members of a plan, a step and a pick that may be null in a model's
// answer, meaning absent.
func nullablePlan(key string) bool { return key == "sentence" || key == "planner" || key == "note" }

func nullableStep(key string) bool {
	switch key {
	case "args", "depends_on", "from", "order", "limit", "why":
		return true
	}
	return false
}

func nullablePick(key string) bool { return key == "n" }

// normalizePlanJSON rewrites a plan in PlanSchema's form into Plan's own
// JSON: null optional members and an empty depends_on are dropped, and a
// step's args given as a string is replaced by the JSON object the string
// holds (an empty string means no arguments). An args object is kept as it is, so a plan already in
// Plan's form passes unchanged. Members given twice are refused (a decoder
// would silently keep one of them); unknown members and wrong types are left
// for DecodePlan to refuse.
func normalizePlanJSON(data []byte) ([]byte, error) {
	if len(data) > MaxPlanSize {
		return nil, fmt.Errorf("%w: %d bytes of JSON (limit %d)", ErrPlan, len(data), MaxPlanSize)
	}
	top, err := jsonMembers(data, "the plan")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for _, m := range top {
		v := m.val
		switch {
		case nullablePlan(m.key) && isNull(v):
			continue
		case m.key == "steps" && bytes.HasPrefix(v, []byte("[")):
			if v, err = normalizeSteps(v); err != nil {
				return nil, err
			}
		}
		writeMember(&b, m.key, v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func normalizeSteps(raw json.RawMessage) (json.RawMessage, error) {
	var steps []json.RawMessage
	if err := json.Unmarshal(raw, &steps); err != nil {
		return nil, fmt.Errorf("%w: steps: %v", ErrPlan, err)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, s := range steps {
		if i > 0 {
			b.WriteByte(',')
		}
		if !bytes.HasPrefix(s, []byte("{")) {
			b.Write(s) // DecodePlan names the type error
			continue
		}
		ms, err := jsonMembers(s, fmt.Sprintf("step %d", i+1))
		if err != nil {
			return nil, err
		}
		b.WriteByte('{')
		for _, m := range ms {
			v := m.val
			switch {
			case nullableStep(m.key) && isNull(v):
				continue
			case m.key == "depends_on" && isEmptyArray(v):
				continue // [] is how strict mode says none; Plan says it by omission
			case m.key == "args" && bytes.HasPrefix(v, []byte(`"`)):
				var inner string
				if err := json.Unmarshal(v, &inner); err != nil {
					return nil, fmt.Errorf("%w: step %d: args: %v", ErrPlan, i+1, err)
				}
				inner = strings.TrimSpace(inner)
				if inner == "" {
					continue
				}
				if !strings.HasPrefix(inner, "{") || !json.Valid([]byte(inner)) {
					return nil, fmt.Errorf("%w: step %d: args: the string %q does not hold a JSON object", ErrPlan, i+1, clip(inner))
				}
				v = json.RawMessage(inner)
			case m.key == "from" && bytes.HasPrefix(v, []byte("{")):
				pick, err := jsonMembers(v, fmt.Sprintf("step %d: from", i+1))
				if err != nil {
					return nil, err
				}
				var pb bytes.Buffer
				pb.WriteByte('{')
				for _, pm := range pick {
					if nullablePick(pm.key) && isNull(pm.val) {
						continue
					}
					writeMember(&pb, pm.key, pm.val)
				}
				pb.WriteByte('}')
				v = pb.Bytes()
			}
			writeMember(&b, m.key, v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}

type jsonMember struct {
	key string
	val json.RawMessage
}

// jsonMembers splits one JSON object into its members in order, refusing
// anything else, trailing data and members given twice.
func jsonMembers(raw []byte, what string) ([]jsonMember, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not JSON: %v", ErrPlan, what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrPlan, what)
	}
	var out []jsonMember
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not JSON: %v", ErrPlan, what, err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s is not JSON: key %v", ErrPlan, what, tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: %s: %q is not JSON: %v", ErrPlan, what, clip(key), err)
		}
		if seen[key] {
			return nil, fmt.Errorf("%w: %s: %q given twice", ErrPlan, what, clip(key))
		}
		seen[key] = true
		out = append(out, jsonMember{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %s is not JSON: %v", ErrPlan, what, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after %s", ErrPlan, what)
	}
	return out, nil
}

// writeMember appends "key":val to an object being written into b, with a
// comma unless it is the object's first member.
func writeMember(b *bytes.Buffer, key string, val json.RawMessage) {
	k, _ := json.Marshal(key) // a string always encodes
	if last := b.Bytes()[b.Len()-1]; last != '{' {
		b.WriteByte(',')
	}
	b.Write(k)
	b.WriteByte(':')
	b.Write(val)
}

func isEmptyArray(v json.RawMessage) bool {
	var a []json.RawMessage
	return bytes.HasPrefix(v, []byte("[")) && json.Unmarshal(v, &a) == nil && len(a) == 0
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }
