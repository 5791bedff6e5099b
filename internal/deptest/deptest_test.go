// Package deptest enforces DESIGN.md's layering: imports only point down the
// table, each package imports only the third-party modules its row names, and
// every package has a package doc comment.
package deptest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/robonet-mesh/robonet"

// rules mirrors the table in DESIGN.md ("Module and layers"): for each
// package, the module packages and third-party path prefixes it may import.
var rules = map[string]struct {
	local []string
	third []string
}{
	"subjects":   {},
	"wire":       {},
	"trust":      {local: []string{"subjects", "wire"}, third: []string{"github.com/nats-io/nkeys"}},
	"command":    {local: []string{"subjects", "wire"}, third: []string{"github.com/shirou/gopsutil/"}},
	"sentinel":   {local: []string{"wire"}},
	"mesh":       {local: []string{"subjects", "wire", "trust", "command", "sentinel"}, third: []string{"github.com/nats-io/nats.go", "github.com/nats-io/nkeys", "github.com/nats-io/nuid"}},
	"leafnode":   {local: []string{"subjects", "wire", "trust"}, third: []string{"github.com/nats-io/nats-server/"}},
	"node":       {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh", "leafnode"}, third: []string{"github.com/nats-io/", "github.com/shirou/gopsutil/"}},
	"federation": {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh", "leafnode", "node"}, third: []string{"github.com/nats-io/"}},
	"intents":    {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh", "intents/nlu"}, third: []string{"github.com/sashabaranov/go-openai", "github.com/nats-io/nats.go"}},
	// The intent classifier of ask: pure, stdlib only; gen trains it (go generate).
	"intents/nlu":                   {local: []string{"intents/nlu/internal/datahash"}},
	"intents/nlu/internal/datahash": {},
	"intents/nlu/gen":               {local: []string{"intents/nlu", "intents/nlu/internal/datahash"}},
	"colonize":                      {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh"}, third: []string{"golang.org/x/crypto/ssh", "github.com/kevinburke/ssh_config", "github.com/skeema/knownhosts", "github.com/nats-io/nats.go", "github.com/nats-io/nkeys", "golang.org/x/term"}},
	"media":                         {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh"}, third: []string{"github.com/pion/", "github.com/nats-io/nats.go"}},
	"gateway":                       {local: []string{"subjects", "wire", "trust", "command", "sentinel", "mesh", "leafnode", "node", "federation", "intents", "colonize", "media", "gateway/tunnel"}, third: []string{"github.com/nats-io/", "github.com/coder/websocket", "github.com/pion/", "github.com/prometheus/"}},
	"gateway/tunnel":                {local: []string{"subjects", "wire", "trust", "mesh", "node"}, third: []string{"github.com/nats-io/nats.go"}},
	"cmd/robonet":                   {local: []string{"*"}, third: []string{"github.com/spf13/", "github.com/nats-io/", "golang.org/x/term", "charm.land/bubbletea/v2"}},
	"internal/testmesh":             {local: []string{"*"}, third: []string{"github.com/nats-io/"}},
	"internal/deptest":              {},
	// deploy holds the images, compose files, systemd unit and Kubernetes
	// manifests; its Go code is their tests (k8s.io/api, sigs.k8s.io/yaml).
	"deploy": {},
}

type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
	GoFiles    []string
	Standard   bool
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func TestImportsPointDown(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.HasPrefix(rel, "e2e") || strings.HasPrefix(rel, "bench") {
			continue
		}
		r, ok := rules[rel]
		if !ok {
			t.Errorf("package %s is not in DESIGN.md's layer table (add it there and here)", rel)
			continue
		}
		for _, imp := range p.Imports {
			switch {
			case isStd(imp):
			case strings.HasPrefix(imp, module+"/"):
				to := strings.TrimPrefix(imp, module+"/")
				if !allowed(r.local, to) {
					t.Errorf("%s imports %s: against the layering in DESIGN.md", rel, to)
				}
			default:
				if !hasPrefix(r.third, imp) {
					t.Errorf("%s imports third-party %s: not in its DESIGN.md row", rel, imp)
				}
			}
		}
	}
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if strings.HasPrefix(rel, "e2e") {
			continue
		}
		if len(p.GoFiles) > 0 && strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package doc comment", rel)
		}
	}
}

func allowed(list []string, to string) bool {
	for _, a := range list {
		if a == "*" || a == to || strings.HasPrefix(to, a+"/") {
			return true
		}
	}
	return false
}

func hasPrefix(list []string, imp string) bool {
	for _, a := range list {
		if imp == strings.TrimSuffix(a, "/") || strings.HasPrefix(imp, a) {
			return true
		}
	}
	return false
}
