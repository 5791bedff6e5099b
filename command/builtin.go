package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/wire"
)

// Limits of built-in arguments.
const (
	MaxConfigValue = 64 << 10 // bytes of one config value
	maxPathLen     = 4096
	maxNameLen     = 255
)

// builtins returns the built-in verbs, bound to c.
func (c *Catalogue) builtins() []Spec {
	return []Spec{
		{
			Name:    "ping",
			Summary: "answer at once: is the node there, and how far",
			Args: Schema{
				Fields:     []Field{{Name: "echo", Type: TypeString, MaxLen: 4096, Doc: "returned unchanged"}},
				Positional: []string{"echo"},
			},
			Risk: Read, Tier: TierRead,
			Handler: c.ping,
		},
		{
			Name:    "info",
			Summary: "hardware inventory: OS, kernel, arch, CPUs, memory, disks, network interfaces, GPUs",
			Risk:    Read, Tier: TierRead,
			Handler: c.info,
		},
		{
			Name:    "caps",
			Summary: "the capabilities this node declares and the verbs it serves",
			Risk:    Read, Tier: TierRead,
			Handler: c.caps,
		},
		{
			Name:    "status",
			Summary: "the node's own runtime state",
			Risk:    Read, Tier: TierObserve,
			Handler: c.status,
		},
		{
			Name:    "gauge",
			Summary: "current values: cpu, mem, disk, net, load, or list for all of them",
			Args: Schema{
				Fields: []Field{
					{Name: "metric", Type: TypeString, Enum: gaugeMetrics(), Default: "list"},
					{Name: "interval", Type: TypeDuration, Min: 0.01, Max: 5, Default: "250ms",
						Doc: "sampling window for cpu busy and network rates"},
				},
				Positional: []string{"metric"},
			},
			Risk: Read, Tier: TierObserve,
			Handler: c.gauge,
		},
		{
			Name:    "scan",
			Summary: "host health findings: disks, inodes, memory, load, zombies, systemd, new listening ports, clock skew",
			Args: Schema{
				Fields: []Field{
					{Name: "checks", Type: TypeStrings, Enum: scanChecks(), MaxItems: 16, Default: "all"},
					{Name: "disk_pct", Type: TypeFloat, Min: 0, Max: 100, Default: "90",
						Doc: "disk and inode use (percent) that is a warning; critical halfway to 100"},
					{Name: "mem_pct", Type: TypeFloat, Min: 0, Max: 100, Default: "90",
						Doc: "memory use (percent) that is a warning; critical halfway to 100"},
					{Name: "load_factor", Type: TypeFloat, Min: 0, Max: 1000, Default: "1",
						Doc: "5-minute load per CPU that is a warning; critical at twice it"},
					{Name: "clock_skew", Type: TypeDuration, Min: 0, Max: 3600, Default: "2s",
						Doc: "offset from the swarm's clock that is a warning; critical at ten times it"},
				},
				Rest: "checks",
			},
			Risk: Read, Tier: TierObserve,
			Handler: c.scan,
		},
		{
			Name: "exec",
			Summary: "run a program with argv (no shell unless shell=true), with timeout and stdin; " +
				"dangerous unless the program is on the node's allow-list",
			Args: Schema{
				Fields: []Field{
					{Name: "argv", Type: TypeStrings, Required: true, MaxItems: 4096, MaxLen: 128 << 10,
						Doc: "program and arguments; with shell=true, joined by spaces into one /bin/sh -c script"},
					{Name: "shell", Type: TypeBool, Default: "false"},
					{Name: "timeout", Type: TypeDuration, Min: 0.001, Max: 24 * 3600, Default: "60s"},
					{Name: "stdin", Type: TypeString, MaxLen: wire.MaxMessage},
					{Name: "dir", Type: TypeString, MaxLen: maxPathLen, Doc: "working directory, absolute"},
				},
				Rest: "argv",
			},
			Risk: Dangerous, Tier: TierOperate,
			RiskFor: c.execRisk,
			Check:   checkExec,
			Handler: c.exec,
		},
		{
			Name: "file",
			Summary: "file transfer through rn_files with SHA-256 checks: put uploads a file of this node, " +
				"get writes an object to a path of this node",
			Args: Schema{
				Fields: []Field{
					{Name: "op", Type: TypeString, Required: true, Enum: []string{"get", "put"}},
					{Name: "name", Type: TypeString, Required: true, MaxLen: maxNameLen, Doc: "object name in rn_files"},
					{Name: "path", Type: TypeString, Required: true, MaxLen: maxPathLen, Doc: "absolute path on the node"},
					{Name: "sha256", Type: TypeString, MaxLen: 64, Doc: "expected SHA-256 (hex) of the content"},
					{Name: "mode", Type: TypeString, MaxLen: 4, Default: "0644", Doc: "get: permission bits, octal"},
					{Name: "overwrite", Type: TypeBool, Default: "false", Doc: "get: replace an existing file"},
				},
				Positional: []string{"op", "name", "path"},
			},
			Risk: Mutate, Tier: TierOperate, TierFor: fileTier,
			Check:   checkFile,
			Handler: c.file,
		},
		{
			Name:    "config",
			Summary: "read or write a key of rn_config",
			Args: Schema{
				Fields: []Field{
					{Name: "op", Type: TypeString, Required: true, Enum: []string{"get", "set"}},
					{Name: "key", Type: TypeString, Required: true, MaxLen: 256},
					{Name: "value", Type: TypeString, MaxLen: MaxConfigValue, Doc: "set: the new value"},
				},
				Positional: []string{"op", "key", "value"},
			},
			Risk: Mutate, Tier: TierOperate,
			RiskFor: configRisk,
			Check:   checkConfig,
			Handler: c.configVerb,
		},
	}
}

// PingReply is the output of ping.
type PingReply struct {
	Time time.Time `json:"time"` // the node's clock when it answered
	Echo string    `json:"echo,omitempty"`
}

func (c *Catalogue) ping(_ context.Context, args json.RawMessage) (Output, error) {
	var a struct {
		Echo string `json:"echo"`
	}
	if err := decodeArgs(args, &a); err != nil {
		return Output{}, err
	}
	return Output{Value: PingReply{Time: c.now().UTC(), Echo: a.Echo}, Text: strings.TrimSpace("pong " + a.Echo)}, nil
}

// CapsReply is the output of caps.
type CapsReply struct {
	Caps  []string `json:"caps"`
	Verbs []string `json:"verbs"`
}

func (c *Catalogue) caps(context.Context, json.RawMessage) (Output, error) {
	r := CapsReply{Caps: []string{}, Verbs: slices.Clone(c.names)}
	if c.host != nil {
		r.Caps = append(r.Caps, c.host.Caps()...)
		slices.Sort(r.Caps)
	}
	text := "caps: " + strings.Join(r.Caps, ", ") + "\nverbs: " + strings.Join(r.Verbs, ", ")
	if len(r.Caps) == 0 {
		text = "caps: none\nverbs: " + strings.Join(r.Verbs, ", ")
	}
	return Output{Value: r, Text: text}, nil
}

func (c *Catalogue) status(context.Context, json.RawMessage) (Output, error) {
	if c.host == nil {
		return Output{}, fmt.Errorf("%w: no host status", ErrUnavailable)
	}
	v := c.host.Status()
	b, err := json.Marshal(v)
	if err != nil {
		return Output{}, fmt.Errorf("host status does not encode: %w", err)
	}
	text := ""
	if s, ok := v.(fmt.Stringer); ok {
		text = s.String()
	} else {
		text = indentJSON(b)
	}
	return Output{Value: json.RawMessage(b), Text: text}, nil
}

// decodeArgs decodes validated arguments into a handler's struct.
func decodeArgs(args json.RawMessage, v any) error {
	args = bytes.TrimSpace(args)
	if len(args) == 0 || string(args) == "null" {
		return nil
	}
	if err := json.Unmarshal(args, v); err != nil {
		return fmt.Errorf("%w: %v", ErrBadArgs, err)
	}
	return nil
}

func indentJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}
