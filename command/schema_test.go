package command

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateRejectsBadArgumentsWithClearMessages(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	tests := []struct {
		verb, args string
		want       string // substring of the error
	}{
		{"gauge", `{"metric":"gpu"}`, `gauge: bad arguments: argument "metric": "gpu" is not one of list, cpu, mem, disk, net, load`},
		{"gauge", `{"interval":"1h"}`, `argument "interval": 1h0m0s is above the maximum 5s`},
		{"gauge", `{"interval":"1ms"}`, `argument "interval": 1ms is below the minimum 10ms`},
		{"gauge", `{"interval":5}`, `argument "interval": want a duration such as "30s", got number 5`},
		{"gauge", `{"interval":"5x"}`, `argument "interval": "5x" is not a duration`},
		{"gauge", `{"bogus":1}`, `unknown argument "bogus" (arguments: metric, interval)`},
		{"gauge", `[]`, `want a JSON object, got []`},
		{"gauge", `"cpu"`, `want a JSON object, got "cpu"`},
		{"gauge", `{"metric":"cpu","metric":"mem"}`, `argument "metric" given twice`},
		{"gauge", `{"metric":"cpu"} {}`, `data after the arguments object`},
		{"gauge", `{"metric":`, `not JSON`},
		{"gauge", `not json`, `not JSON`},
		{"ping", `{"echo":5}`, `argument "echo": want a string, got number 5`},
		{"ping", `{"echo":"` + strings.Repeat("x", 4097) + `"}`, `argument "echo": 4097 bytes, limit 4096`},
		{"info", `{"x":1}`, `unknown argument "x" (arguments: none)`},
		{"scan", `{"disk_pct":101}`, `argument "disk_pct": 101 is above the maximum 100`},
		{"scan", `{"disk_pct":-1}`, `argument "disk_pct": -1 is below the minimum 0`},
		{"scan", `{"disk_pct":"90"}`, `argument "disk_pct": want a number, got string "90"`},
		{"scan", `{"checks":["disk","cpu"]}`, `argument "checks": "cpu" is not one of disk, inodes, memory, load, zombies, systemd, ports, clock`},
		{"scan", `{"checks":"disk"}`, `argument "checks": want an array of strings, got string "disk"`},
		{"exec", `{}`, `exec: bad arguments: missing required argument "argv"`},
		{"exec", `{"argv":null}`, `missing required argument "argv"`},
		{"exec", `{"argv":[]}`, `argument "argv": empty: name a program`},
		{"exec", `{"argv":[""]}`, `argument "argv": the program (argv[0]) is empty`},
		{"exec", `{"argv":["echo","a\u0000b"]}`, `argument "argv": element 1 "a\x00b" holds a NUL byte`},
		{"exec", `{"argv":"ls"}`, `argument "argv": want an array of strings, got string "ls"`},
		{"exec", `{"argv":[1]}`, `argument "argv": want an array of strings, got an array`},
		{"exec", `{"argv":["ls"],"timeout":"-1s"}`, `argument "timeout": -1s is negative`},
		{"exec", `{"argv":["ls"],"timeout":"48h"}`, `argument "timeout": 48h0m0s is above the maximum 24h0m0s`},
		{"exec", `{"argv":["ls"],"shell":"yes"}`, `argument "shell": want true or false, got string "yes"`},
		{"exec", `{"argv":["ls"],"dir":"tmp"}`, `argument "dir": "tmp" is not an absolute path`},
		{"file", `{"op":"get","name":"../x","path":"/tmp/x"}`, `argument "name": "../x"`},
		{"file", `{"op":"get","name":"a//b","path":"/tmp/x"}`, `argument "name": "a//b": empty, . or .. segment`},
		{"file", `{"op":"get","name":"a b","path":"/tmp/x"}`, `argument "name": "a b": byte 1 ' ' not allowed`},
		{"file", `{"op":"get","name":"x","path":"tmp/x"}`, `argument "path": "tmp/x": want a clean absolute path`},
		{"file", `{"op":"get","name":"x","path":"/tmp/../x"}`, `argument "path": "/tmp/../x": want a clean absolute path`},
		{"file", `{"op":"get","name":"x"}`, `missing required argument "path"`},
		{"file", `{"op":"put","name":"x","path":"/tmp/x","mode":"0644"}`, `mode and overwrite apply to get, not put`},
		{"file", `{"op":"get","name":"x","path":"/tmp/x","mode":"4755"}`, `argument "mode": "4755": want octal permission bits`},
		{"file", `{"op":"get","name":"x","path":"/tmp/x","mode":"rw"}`, `argument "mode": "rw"`},
		{"file", `{"op":"get","name":"x","path":"/tmp/x","sha256":"xyz"}`, `argument "sha256": "xyz": want 64 hex digits`},
		{"file", `{"op":"move","name":"x","path":"/tmp/x"}`, `argument "op": "move" is not one of get, put`},
		{"config", `{"op":"set","key":"a"}`, `missing required argument "value" for set`},
		{"config", `{"op":"get","key":"a..b"}`, `argument "key": "a..b"`},
		{"config", `{"op":"get","key":"a b"}`, `argument "key": "a b": byte 1 ' ' not allowed`},
		{"config", `{"op":"get","key":"a","value":"x"}`, `argument "value": only set takes a value`},
		{"config", `{"op":"del","key":"a"}`, `argument "op": "del" is not one of get, set`},
	}
	for _, tt := range tests {
		err := c.Validate(tt.verb, json.RawMessage(tt.args))
		if !errors.Is(err, ErrBadArgs) {
			t.Errorf("Validate(%s, %.60s) = %v, want ErrBadArgs", tt.verb, tt.args, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%s, %.60s) = %q, want it to contain %q", tt.verb, tt.args, err, tt.want)
		}
		if !strings.HasPrefix(err.Error(), tt.verb+": ") {
			t.Errorf("Validate(%s) error %q does not name the verb", tt.verb, err)
		}
	}
}

func TestValidateAcceptsGoodArguments(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}})
	for _, tt := range []struct{ verb, args string }{
		{"ping", ``},
		{"ping", `null`},
		{"ping", ` {} `},
		{"ping", `{"echo":null}`},
		{"info", `{}`},
		{"gauge", `{"metric":"cpu","interval":"100ms"}`},
		{"scan", `{"checks":["ports","clock"],"disk_pct":80.5,"clock_skew":"500ms"}`},
		{"exec", `{"argv":["ls","-l"],"timeout":"5s","stdin":"x","dir":"/tmp"}`},
		{"exec", `{"argv":["echo hi | wc"],"shell":true}`},
		{"file", `{"op":"get","name":"fw/v1.bin","path":"/opt/fw.bin","mode":"0600","overwrite":true,"sha256":"` + strings.Repeat("aB", 32) + `"}`},
		{"file", `{"op":"put","name":"logs/x","path":"/var/log/x"}`},
		{"config", `{"op":"set","key":"log.level","value":""}`},
		{"config", `{"op":"get","key":"a-b/c_d=e.f"}`},
	} {
		if err := c.Validate(tt.verb, json.RawMessage(tt.args)); err != nil {
			t.Errorf("Validate(%s, %s) = %v", tt.verb, tt.args, err)
		}
	}
	if err := c.Validate("reboot", nil); !errors.Is(err, ErrUnknownVerb) || !strings.Contains(err.Error(), `"reboot"`) {
		t.Errorf("Validate(reboot) = %v, want ErrUnknownVerb naming it", err)
	}
}

// typesSpec is a verb with one field of every type, for the schema's own tests.
func typesSpec() Spec {
	return Spec{
		Name: "types", Summary: "every argument type", Risk: Read, Tier: TierRead,
		Args: Schema{Fields: []Field{
			{Name: "s", Type: TypeString, MaxLen: 3, Enum: []string{"a", "bb", "ccc"}},
			{Name: "n", Type: TypeInt, Min: 1, Max: 10},
			{Name: "f", Type: TypeFloat, Min: -1, Max: 1},
			{Name: "b", Type: TypeBool},
			{Name: "l", Type: TypeStrings, MaxItems: 2, MaxLen: 2},
			{Name: "d", Type: TypeDuration},
			{Name: "o", Type: TypeObject, MaxLen: 20},
			{Name: "big", Type: TypeInt},
		}, Positional: []string{"s", "n"}, Rest: "l"},
		Handler: func(_ context.Context, args json.RawMessage) (Output, error) {
			return Output{Value: args, Text: string(args)}, nil
		},
	}
}

func TestSchemaTypes(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	tests := []struct {
		args string
		want string // "" for valid
	}{
		{`{"s":"bb","n":10,"f":-0.5,"b":false,"l":["x","yy"],"d":"1m","o":{"k":[1]},"big":-9223372036854775808}`, ""},
		{`{"s":"dddd"}`, `argument "s": 4 bytes, limit 3`},
		{`{"s":"d"}`, `argument "s": "d" is not one of a, bb, ccc`},
		{`{"n":1.5}`, `argument "n": want an integer, got number 1.5`},
		{`{"n":1e1}`, `argument "n": want an integer`},
		{`{"n":"1"}`, `argument "n": want an integer, got string "1"`},
		{`{"n":0}`, `argument "n": 0 is below the minimum 1`},
		{`{"n":11}`, `argument "n": 11 is above the maximum 10`},
		{`{"big":9223372036854775808}`, `argument "big": want an integer`},
		{`{"f":1.0001}`, `argument "f": 1.0001 is above the maximum 1`},
		{`{"f":true}`, `argument "f": want a number, got true`},
		{`{"f":1e999}`, `argument "f": want a number`},
		{`{"b":1}`, `argument "b": want true or false, got number 1`},
		{`{"l":["a","b","c"]}`, `argument "l": 3 items, limit 2`},
		{`{"l":["abc"]}`, `argument "l": 3 bytes, limit 2`},
		{`{"d":"soon"}`, `argument "d": "soon" is not a duration`},
		{`{"o":[1]}`, `argument "o": want an object, got an array`},
		{`{"o":{"k":"0123456789abcdef"}}`, `argument "o": 24 bytes, limit 20`},
	}
	for _, tt := range tests {
		err := c.Validate("types", json.RawMessage(tt.args))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%s) = %v", tt.args, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Validate(%s) = %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestArgsFromWordsForEveryVerb(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	tests := []struct {
		verb  string
		words []string
		want  string // JSON
	}{
		{"ping", nil, `{}`},
		{"ping", []string{"hello"}, `{"echo":"hello"}`},
		{"ping", []string{"echo=a=b"}, `{"echo":"a=b"}`},
		{"info", nil, `{}`},
		{"caps", nil, `{}`},
		{"status", nil, `{}`},
		{"gauge", []string{"cpu"}, `{"metric":"cpu"}`},
		{"gauge", []string{"interval=50ms", "net"}, `{"metric":"net","interval":"50ms"}`},
		{"gauge", []string{"metric=list"}, `{"metric":"list"}`},
		{"scan", nil, `{}`},
		{"scan", []string{"disk", "ports", "disk_pct=80"}, `{"checks":["disk","ports"],"disk_pct":80}`},
		{"scan", []string{"checks=disk,memory", "clock", "clock_skew=1s"}, `{"checks":["disk","memory","clock"],"clock_skew":"1s"}`},
		{"exec", []string{"--", "systemctl", "is-active", "nginx"}, `{"argv":["systemctl","is-active","nginx"]}`},
		{"exec", []string{"systemctl", "is-active", "nginx"}, `{"argv":["systemctl","is-active","nginx"]}`},
		{"exec", []string{"timeout=5s", "shell=true", "--", "echo hi | wc -c"}, `{"argv":["echo hi | wc -c"],"shell":true,"timeout":"5s"}`},
		{"exec", []string{"ls", "-l", "timeout=5s"}, `{"argv":["ls","-l"],"timeout":"5s"}`},
		{"exec", []string{"--", "env", "A=b", "timeout=1s"}, `{"argv":["env","A=b","timeout=1s"]}`},
		{"exec", []string{"dir=/tmp", "stdin=hi", "cat"}, `{"argv":["cat"],"dir":"/tmp","stdin":"hi"}`},
		{"file", []string{"get", "fw.bin", "/opt/fw.bin", "overwrite=true"}, `{"op":"get","name":"fw.bin","path":"/opt/fw.bin","overwrite":true}`},
		{"file", []string{"put", "logs/syslog", "/var/log/syslog"}, `{"op":"put","name":"logs/syslog","path":"/var/log/syslog"}`},
		{"config", []string{"set", "log.level", "debug"}, `{"op":"set","key":"log.level","value":"debug"}`},
		{"config", []string{"set", "k", "a=b"}, `{"op":"set","key":"k","value":"a=b"}`},
		{"config", []string{"set", "k", "--", "key=x"}, `{"op":"set","key":"k","value":"key=x"}`},
		{"config", []string{"get", "log.level"}, `{"op":"get","key":"log.level"}`},
		{"types", []string{"bb", "3", "x", "y", "f=0.5", "b=true", "d=2s", `o={"k":1}`, "big=-4"},
			`{"s":"bb","n":3,"l":["x","y"],"f":0.5,"b":true,"d":"2s","o":{"k":1},"big":-4}`},
	}
	for _, tt := range tests {
		raw, err := c.ArgsFromWords(tt.verb, tt.words)
		if err != nil {
			t.Errorf("ArgsFromWords(%s, %q): %v", tt.verb, tt.words, err)
			continue
		}
		var got, want any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("ArgsFromWords(%s, %q) = %s: %v", tt.verb, tt.words, raw, err)
		}
		if err := json.Unmarshal([]byte(tt.want), &want); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("ArgsFromWords(%s, %q) (-want +got):\n%s", tt.verb, tt.words, d)
		}
		if err := c.Validate(tt.verb, raw); err != nil {
			t.Errorf("ArgsFromWords(%s, %q) = %s, which does not validate: %v", tt.verb, tt.words, raw, err)
		}
	}
}

func TestArgsFromWordsRejects(t *testing.T) {
	t.Parallel()
	c := newCatalogue(t, Options{ListenBaseline: []string{}, Extra: []Spec{typesSpec()}})
	tests := []struct {
		verb  string
		words []string
		want  string
	}{
		{"ping", []string{"a", "b"}, `ping: bad arguments: unexpected word "b" after echo`},
		{"info", []string{"x"}, `unexpected word "x": this verb takes only name=value arguments (none)`},
		{"gauge", []string{"gpu"}, `argument "metric": "gpu" is not one of`},
		{"gauge", []string{"metric=cpu", "mem"}, `argument "metric" given twice`},
		{"scan", []string{"disk_pct=abc"}, `argument "disk_pct": "abc" is not a number`},
		{"scan", []string{"load"}, ""}, // valid
		{"config", []string{"set", "k"}, `missing required argument "value" for set`},
		{"exec", nil, `missing required argument "argv"`},
		{"exec", []string{"shell=maybe", "ls"}, `argument "shell": "maybe" is not true or false`},
		{"file", []string{"get", "x"}, `missing required argument "path"`},
		{"types", []string{"a", "x1"}, `argument "n": "x1" is not an integer`},
		{"types", []string{"o=[1]"}, `argument "o": "[1]" is not a JSON object`},
		{"reboot", nil, `unknown verb "reboot"`},
	}
	for _, tt := range tests {
		_, err := c.ArgsFromWords(tt.verb, tt.words)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ArgsFromWords(%s, %q) = %v", tt.verb, tt.words, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ArgsFromWords(%s, %q) = %v, want %q", tt.verb, tt.words, err, tt.want)
		}
	}
}

func TestSchemaCheckRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	h := func(context.Context, json.RawMessage) (Output, error) { return Output{}, nil }
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"bad verb", Spec{Name: "Reboot", Handler: h}, "verb"},
		{"built-in name", Spec{Name: "ping", Handler: h}, `verb "ping" defined twice`},
		{"no handler", Spec{Name: "x"}, "no handler"},
		{"bad risk", Spec{Name: "x", Handler: h, Risk: 7}, "invalid risk"},
		{"bad tier", Spec{Name: "x", Handler: h, Tier: 4}, "tier 4"},
		{"bad field name", Spec{Name: "x", Handler: h, Args: Schema{Fields: []Field{{Name: "A", Type: TypeString}}}}, `name "A"`},
		{"twice", Spec{Name: "x", Handler: h, Args: Schema{Fields: []Field{{Name: "a", Type: TypeString}, {Name: "a", Type: TypeInt}}}}, "declared twice"},
		{"bad type", Spec{Name: "x", Handler: h, Args: Schema{Fields: []Field{{Name: "a", Type: "map"}}}}, `unknown type "map"`},
		{"positional missing", Spec{Name: "x", Handler: h, Args: Schema{Positional: []string{"a"}}}, `positional "a" is not a field`},
		{"positional list", Spec{Name: "x", Handler: h, Args: Schema{Fields: []Field{{Name: "a", Type: TypeStrings}}, Positional: []string{"a"}}}, "make it Rest"},
		{"rest not list", Spec{Name: "x", Handler: h, Args: Schema{Fields: []Field{{Name: "a", Type: TypeString}}, Rest: "a"}}, `rest "a"`},
	}
	for _, tt := range tests {
		_, err := New(Options{ListenBaseline: []string{}, Extra: []Spec{tt.spec}})
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want ErrOptions containing %q", tt.name, err, tt.want)
		}
	}
}
