package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/node"
)

// errConfig is wrapped by every config-file error.
var errConfig = errors.New("config")

// maxConfigSize bounds the config file we read.
const maxConfigSize = 1 << 20

// parseConfig reads a config file: one `flag = value` (or `flag: value`) per
// line, '#' starts a comment, blank lines are skipped, a value may be quoted
// with double quotes. Keys are flag names. Errors name the line.
func parseConfig(data []byte) (map[string]string, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errConfig, len(data), maxConfigSize)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxConfigSize)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			return nil, fmt.Errorf("%w line %d: %q: want 'flag = value'", errConfig, ln, clip(line))
		}
		key, val := strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
		if key == "" || strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("%w line %d: bad key %q", errConfig, ln, clip(key))
		}
		if strings.HasPrefix(val, `"`) {
			if len(val) < 2 || !strings.HasSuffix(val, `"`) {
				return nil, fmt.Errorf("%w line %d: unterminated quote in %q", errConfig, ln, clip(val))
			}
			val = val[1 : len(val)-1]
		} else if j := strings.Index(val, " #"); j >= 0 {
			val = strings.TrimSpace(val[:j])
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%w line %d: %q set twice", errConfig, ln, key)
		}
		out[key] = val
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", errConfig, err)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// envName is the environment variable for a flag: ROBONET_ + upper snake case.
func envName(flag string) string {
	return "ROBONET_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyLayers fills every flag the command line did not set from the
// environment, then from the config file: flags > env > file. The file is
// lines of 'flag = value' or, when it starts with '{', a JSON object
// (upConfig).
func applyLayers(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	flags := cmd.Flags()
	// --config itself may come from the environment.
	cfgPath, _ := flags.GetString("config")
	if !flags.Changed("config") {
		if v, ok := lookup(envName("config")); ok {
			cfgPath = v
		}
	}
	file := map[string]string{}
	if cfgPath != "" {
		data, err := os.ReadFile(cfgPath)
		if err != nil {
			return fmt.Errorf("%w %s: %v", errConfig, cfgPath, err)
		}
		parse := parseConfig
		if isJSONConfig(data) {
			parse = parseJSONConfig
		}
		if file, err = parse(data); err != nil {
			return fmt.Errorf("%s: %w", cfgPath, err)
		}
		for k := range file {
			if flags.Lookup(k) == nil && cmd.Root().PersistentFlags().Lookup(k) == nil && !knownAnywhere(cmd.Root(), k) {
				return fmt.Errorf("%w %s: unknown setting %q (settings are flag names, e.g. chevron, join)", errConfig, cfgPath, k)
			}
		}
	}
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		src, val, ok := "", "", false
		if v, found := lookup(envName(f.Name)); found {
			src, val, ok = envName(f.Name), v, true
		} else if v, found := file[f.Name]; found {
			src, val, ok = cfgPath, v, true
		}
		if !ok {
			return
		}
		if f.Value.Type() == "stringSlice" || f.Value.Type() == "stringArray" {
			if sv, isSlice := f.Value.(pflag.SliceValue); isSlice {
				var items []string
				for _, it := range strings.Split(val, ",") {
					if it = strings.TrimSpace(it); it != "" {
						items = append(items, it)
					}
				}
				if e := sv.Replace(items); e != nil {
					err = fmt.Errorf("%s: --%s %q: %v", src, f.Name, val, e)
				}
				return
			}
		}
		if e := f.Value.Set(val); e != nil {
			err = fmt.Errorf("%s: --%s %q: %v", src, f.Name, val, e)
		}
	})
	return err
}

// knownAnywhere reports whether any command defines the flag, so one config
// file can serve `up` and the client commands alike.
func knownAnywhere(c *cobra.Command, name string) bool {
	if c.Flags().Lookup(name) != nil || c.PersistentFlags().Lookup(name) != nil {
		return true
	}
	for _, sub := range c.Commands() {
		if knownAnywhere(sub, name) {
			return true
		}
	}
	return false
}

func defaultDataDir() string {
	return node.DefaultDataDir()
}
