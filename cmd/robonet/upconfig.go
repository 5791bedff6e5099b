package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/robonet-mesh/robonet/node"
)

// upConfig is the JSON form of a config file, for tools that write JSON
// (colonize writes the 'flag = value' form): its fields mirror up's flags. There is no
// token field on purpose: a secret belongs in token_file (mode 0600), not
// in a config file that is easily made world-readable; the same goes for
// the federation token (federate_token_file).
type upConfig struct {
	Data        *string           `json:"data"`
	Name        *string           `json:"name"`
	Chevron     *string           `json:"chevron"`
	Listen      *string           `json:"listen"`
	ClientNames []string          `json:"client_names"`
	Cluster     *string           `json:"cluster"`
	Join        []string          `json:"join"`
	Swarm       *string           `json:"swarm"`
	Founder     *bool             `json:"founder"`
	Caps        []string          `json:"caps"`
	Tags        map[string]string `json:"tags"`
	FileRoots   []string          `json:"file_roots"`
	ExecAllow   []string          `json:"exec_allow"`
	LogLevel    *string           `json:"log_level"`
	TokenFile   *string           `json:"token_file"`
	// Federation.
	LeafListen        *string  `json:"leaf_listen"`
	Federate          []string `json:"federate"`
	FederateTokenFile *string  `json:"federate_token_file"`
	// Core and edges.
	Edge       *bool   `json:"edge"`
	Core       *int    `json:"core"`
	EdgeListen *string `json:"edge_listen"`
}

// isJSONConfig reports whether a config file is the JSON form (its first
// non-space byte is '{') rather than lines of 'flag = value'.
func isJSONConfig(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{"))
}

// parseJSONConfig reads the JSON form of a config file into the same
// flag → value settings parseConfig returns, so the layering (flags >
// environment > file) is one. An unknown field is an error naming it.
func parseJSONConfig(data []byte) (map[string]string, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errConfig, len(data), maxConfigSize)
	}
	var c upConfig
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", errConfig, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: data after the JSON object", errConfig)
	}
	out := map[string]string{}
	str := func(flag string, v *string) {
		if v != nil {
			out[flag] = *v
		}
	}
	str("data", c.Data)
	str("name", c.Name)
	str("chevron", c.Chevron)
	str("listen", c.Listen)
	str("cluster", c.Cluster)
	str("swarm", c.Swarm)
	str("log-level", c.LogLevel)
	str("token-file", c.TokenFile)
	str("leaf-listen", c.LeafListen)
	str("federate-token-file", c.FederateTokenFile)
	str("edge-listen", c.EdgeListen)
	if c.Founder != nil {
		out["founder"] = strconv.FormatBool(*c.Founder)
	}
	if c.Edge != nil {
		out["edge"] = strconv.FormatBool(*c.Edge)
	}
	if c.Core != nil {
		out["core"] = strconv.Itoa(*c.Core)
	}
	for _, l := range []struct {
		field, flag string
		v           []string
	}{
		{"client_names", "client-name", c.ClientNames},
		{"join", "join", c.Join},
		{"caps", "caps", c.Caps},
		{"file_roots", "file-root", c.FileRoots},
		{"exec_allow", "exec-allow", c.ExecAllow},
		{"federate", "federate", c.Federate},
	} {
		if l.v == nil {
			continue
		}
		for _, it := range l.v {
			// Flags take lists comma-separated.
			if it = strings.TrimSpace(it); it == "" || strings.Contains(it, ",") {
				return nil, fmt.Errorf("%w: %s: item %q: want a non-empty value without commas", errConfig, l.field, clip(it))
			}
		}
		out[l.flag] = strings.Join(l.v, ",")
	}
	if c.Tags != nil {
		s, err := formatTags(c.Tags)
		if err != nil {
			return nil, fmt.Errorf("%w: tags: %v", errConfig, err)
		}
		out["tags"] = s
	}
	return out, nil
}

// formatTags is the --tags form of a tag object; it refuses what --tags
// would read back differently.
func formatTags(tags map[string]string) (string, error) {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		v := tags[k]
		if strings.ContainsAny(v, ",=") || strings.TrimSpace(v) != v {
			return "", fmt.Errorf("tag %q: value %q: no commas, '=' or surrounding spaces", clip(k), clip(v))
		}
		kv = append(kv, k+"="+v)
	}
	s := strings.Join(kv, ",")
	back, err := node.ParseTags(s)
	if err != nil {
		return "", err
	}
	if !maps.Equal(back, tags) {
		return "", fmt.Errorf("%q does not read back as the same tags", clip(s))
	}
	return s, nil
}

// maxTokenFile bounds what readTokenFile reads: a token is 136 characters.
const maxTokenFile = 4 << 10

// readTokenFile reads the token in path (--token-file, token_file): ""
// when the file does not exist (a colonized node deletes it once it has
// joined, and a member needs no token to come back). The file must be a
// regular file that neither group nor others can read or write.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("--token-file %s: not a regular file (%v)", path, st.Mode().Type())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--token-file %s: mode %#o lets group or others at it; chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("--token-file %s: over %d bytes, not a token", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: empty", path)
	}
	return tok, nil
}
