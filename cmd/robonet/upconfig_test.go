package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/robonet-mesh/robonet/node"
)

func TestParseJSONConfig(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     map[string]string
		err      string
	}{
		{"every field", `{"data": "/var/lib/robonet", "name": "rn7", "chevron": "3.12.7.1", "listen": "0.0.0.0:4222",
			"client_names": ["rn7.lab", "10.0.0.7"], "cluster": "0.0.0.0:6222", "join": ["10.0.0.2:6222", "10.0.0.3:6222"],
			"swarm": "lab", "founder": false, "caps": ["gpu", "ai"], "tags": {"site": "lab", "role": "camera"},
			"file_roots": ["/srv/files"], "exec_allow": ["systemctl"], "log_level": "debug", "token_file": "/etc/robonet/join.token",
			"leaf_listen": "0.0.0.0:7422", "federate": ["hub1:7422", "hub2:7422"], "federate_token_file": "/etc/robonet/fed.token",
			"edge": true, "core": 5, "edge_listen": "0.0.0.0:7422"}`,
			map[string]string{"data": "/var/lib/robonet", "name": "rn7", "chevron": "3.12.7.1", "listen": "0.0.0.0:4222",
				"client-name": "rn7.lab,10.0.0.7", "cluster": "0.0.0.0:6222", "join": "10.0.0.2:6222,10.0.0.3:6222",
				"swarm": "lab", "founder": "false", "caps": "gpu,ai", "tags": "role=camera,site=lab",
				"file-root": "/srv/files", "exec-allow": "systemctl", "log-level": "debug", "token-file": "/etc/robonet/join.token",
				"leaf-listen": "0.0.0.0:7422", "federate": "hub1:7422,hub2:7422", "federate-token-file": "/etc/robonet/fed.token",
				"edge": "true", "core": "5", "edge-listen": "0.0.0.0:7422"}, ""},
		{"core not a number", `{"core": "three"}`, nil, "core"},
		{"federation token is not a field", `{"federate_token": "rntok_x"}`, nil, `unknown field "federate_token"`},
		{"empty object", ` {} `, map[string]string{}, ""},
		{"unknown field", `{"chevron": "1", "chevrn": "2"}`, nil, `unknown field "chevrn"`},
		{"token is not a field", `{"token": "rnsec_x"}`, nil, `unknown field "token"`},
		{"flag spelling is not a field", `{"log-level": "info"}`, nil, `unknown field "log-level"`},
		{"tag value with a comma", `{"tags": {"role": "a,b"}}`, nil, "tags: tag \"role\""},
		{"tag key with a space", `{"tags": {"my role": "a"}}`, nil, "tags:"},
		{"tags not an object", `{"tags": "role=camera"}`, nil, "tags"},
		{"tag value not a string", `{"tags": {"n": 1}}`, nil, "tags"},
		{"list item with a comma", `{"join": ["a:1,b:2"]}`, nil, "join: item"},
		{"empty list item", `{"caps": [""]}`, nil, "caps: item"},
		{"wrong type", `{"founder": "yes"}`, nil, "founder"},
		{"two objects", `{} {}`, nil, "after the JSON object"},
		{"not closed", `{"name": "x"`, nil, "config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !isJSONConfig([]byte(tc.in)) {
				t.Fatalf("%q not seen as JSON", tc.in)
			}
			got, err := parseJSONConfig([]byte(tc.in))
			if tc.err != "" {
				if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %v with %q", err, errConfig, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Fatalf("settings (-want +got):\n%s", d)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, path, want, err string
	}{
		{"0600", write("ok", "rntok_abc\n", 0o600), "rntok_abc", ""},
		{"0400", write("ro", "  rntok_abc  \n", 0o400), "rntok_abc", ""},
		{"0644 refused", write("wide", "rntok_abc\n", 0o644), "", "mode 0644"},
		{"0640 refused", write("group", "rntok_abc\n", 0o640), "", "mode 0640"},
		{"0602 refused", write("others-write", "rntok_abc\n", 0o602), "", "mode 0602"},
		{"missing means no token", filepath.Join(dir, "gone"), "", ""},
		{"empty", write("empty", " \n", 0o600), "", "empty"},
		{"directory", dir, "", "not a regular file"},
		{"too large", write("large", strings.Repeat("a", maxTokenFile+1), 0o600), "", "over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readTokenFile(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("readTokenFile = %q, %v; want an error with %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("readTokenFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// A JSON --config fills up's flags (the global --data included), and flags
// given on the command line win over it.
func TestJSONConfigLayersUnderFlags(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "robonet.json")
	if err := os.WriteFile(cfg, []byte(`{"data": "/from/file", "chevron": "7", "name": "from-file", "join": ["a:1", "b:2"],
		"tags": {"role": "camera"}, "token_file": "/etc/robonet/join.token", "founder": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	up, _, err := root.Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.ParseFlags([]string{"--config", cfg, "--name", "from-flag", "--data", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyLayers(up, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"data": "/from/flag", "chevron": "7", "name": "from-flag", "join": "[a:1,b:2]",
		"tags": "role=camera", "token-file": "/etc/robonet/join.token", "founder": "true"} {
		if got := up.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}

	// Without --data on the command line, the file's data wins over the default.
	root = newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	up, _, _ = root.Find([]string{"up"})
	if err := up.ParseFlags([]string{"--config", cfg}); err != nil {
		t.Fatal(err)
	}
	if err := applyLayers(up, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	if got := up.Flags().Lookup("data").Value.String(); got != "/from/file" {
		t.Errorf("--data = %q, want /from/file", got)
	}

	// An unknown field names the file and the field.
	if err := os.WriteFile(cfg, []byte(`{"chevrn": "1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	root = newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	up, _, _ = root.Find([]string{"up"})
	_ = up.ParseFlags([]string{"--config", cfg})
	if err := applyLayers(up, func(string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), `"chevrn"`) {
		t.Fatalf("unknown field: %v", err)
	}
}

// --token and a token file cannot both give the token; a token file that is
// too open stops up before anything starts.
func TestUpTokenFileRules(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "join.token")
	if err := os.WriteFile(tf, []byte("rntok_x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if _, _, err := rncli(t, "up", "--data", data, "--token-file", tf, "--token", "rnsec_y"); err == nil || !strings.Contains(err.Error(), "both give a token") {
		t.Fatalf("--token with --token-file: %v", err)
	}
	if err := os.Chmod(tf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rncli(t, "up", "--data", data, "--token-file", tf); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Fatalf("token file 0644: %v", err)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Fatalf("up created its data dir before refusing: %v", err)
	}
}

func FuzzParseJSONConfig(f *testing.F) {
	f.Add([]byte(`{"chevron": "3.12", "join": ["a:1", "b:2"], "tags": {"role": "camera"}, "founder": true}`))
	f.Add([]byte(`{"tags": {"a": "b=c"}}`))
	f.Add([]byte(`{"caps": ["x,y"]}`))
	f.Add([]byte(`{} x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseJSONConfig(data)
		if err != nil {
			if !errors.Is(err, errConfig) {
				t.Fatalf("error does not wrap errConfig: %v", err)
			}
			return
		}
		known := map[string]bool{"data": true, "name": true, "chevron": true, "listen": true, "client-name": true, "cluster": true,
			"join": true, "swarm": true, "founder": true, "caps": true, "tags": true, "file-root": true, "exec-allow": true,
			"log-level": true, "token-file": true}
		for k := range m {
			if !known[k] {
				t.Fatalf("setting %q is no flag of up", k)
			}
		}
		if tags, ok := m["tags"]; ok && tags != "" {
			if _, err := node.ParseTags(tags); err != nil {
				t.Fatalf("tags %q accepted but --tags refuses them: %v", tags, err)
			}
		}
	})
}
