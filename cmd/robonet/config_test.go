package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	got, err := parseConfig([]byte(`
# a node
chevron = 3.12.7.1
join: 10.0.0.2:6222,10.0.0.3:6222
name = "rn 1"   
caps = gpu,ai  # trailing comment
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"chevron": "3.12.7.1", "join": "10.0.0.2:6222,10.0.0.3:6222", "name": "rn 1", "caps": "gpu,ai"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("parseConfig (-want +got):\n%s", d)
	}
}

func TestParseConfigErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"chevron 1", "line 1"},
		{"a = 1\n\n= 2", "line 3"},
		{"a = 1\na = 2", `line 2: "a" set twice`},
		{`a = "x`, "unterminated quote"},
		{"bad key = 1", "bad key"},
	} {
		_, err := parseConfig([]byte(tc.in))
		if !errors.Is(err, errConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseConfig(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

// Flags win over the environment, which wins over the file.
func TestLayersFlagOverEnvOverFile(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "robonet.conf")
	if err := os.WriteFile(cfg, []byte("chevron = 7\nname = from-file\nswarm = fileswarm\ncaps = a,b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ROBONET_NAME": "from-env", "ROBONET_SWARM": "envswarm", "ROBONET_CONFIG": cfg}
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	up, _, err := root.Find([]string{"up"})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.ParseFlags([]string{"--swarm", "flagswarm"}); err != nil {
		t.Fatal(err)
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := applyLayers(up, lookup); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"chevron": "7", "name": "from-env", "swarm": "flagswarm", "caps": "[a,b]"} {
		if got := up.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
}

func TestLayersRejectUnknownSettingAndBadValue(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ file, want string }{
		{"chevrn = 1\n", `unknown setting "chevrn"`},
		{"wait = soon\n", `--wait "soon"`},
	} {
		cfg := filepath.Join(dir, "c.conf")
		if err := os.WriteFile(cfg, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
		up, _, _ := root.Find([]string{"up"})
		if err := up.ParseFlags([]string{"--config", cfg}); err != nil {
			t.Fatal(err)
		}
		err := applyLayers(up, func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("file %q: %v, want %q", tc.file, err, tc.want)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("chevron = 3.12\njoin: a:1,b:2\n# c\nname = \"x y\"\n"))
	f.Add([]byte("="))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseConfig(data)
		if err != nil {
			if !errors.Is(err, errConfig) {
				t.Fatalf("error does not wrap errConfig: %v", err)
			}
			return
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k, " \t\"") {
				t.Fatalf("bad key %q accepted", k)
			}
		}
	})
}
