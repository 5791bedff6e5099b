package deploy

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of a compose file the contract is about; unknown
// keys are allowed (compose has many), the ones below are checked.
type composeFile struct {
	Version  string                    `json:"version"`
	Services map[string]composeService `json:"services"`
	Secrets  map[string]struct {
		File     string `json:"file"`
		External bool   `json:"external"`
	} `json:"secrets"`
	Volumes map[string]any `json:"volumes"`
}

type composeService struct {
	Image           string            `json:"image"`
	Hostname        string            `json:"hostname"`
	Command         []string          `json:"command"`
	Entrypoint      any               `json:"entrypoint"`
	Environment     map[string]string `json:"environment"`
	Secrets         []string          `json:"secrets"`
	Volumes         []string          `json:"volumes"`
	StopSignal      string            `json:"stop_signal"`
	StopGracePeriod string            `json:"stop_grace_period"`
	User            string            `json:"user"`
	DependsOn       []string          `json:"depends_on"`
	Healthcheck     *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
}

func loadCompose(t *testing.T, name string) composeFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("compose", name))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(data, &f); err != nil { // merge keys (<<: *robonet) resolved
		t.Fatalf("%s: %v", name, err)
	}
	if len(f.Services) == 0 {
		t.Fatalf("%s: no services", name)
	}
	return f
}

func composeFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("compose", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/compose/*.yml: %v", err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	return names
}

// TestComposeSecretsComeFromFiles holds every robonet service of every
// compose file to the deploy contract: the secret is a compose secret read
// from a file (never on the command line or in the environment), every node
// has --token-file on it, its data lives in a named volume at --data, and a
// stop leaves the lame duck time to finish.
func TestComposeSecretsComeFromFiles(t *testing.T) {
	for _, name := range composeFiles(t) {
		t.Run(name, func(t *testing.T) {
			f := loadCompose(t, name)
			for svcName, s := range f.Services {
				where := name + ": service " + svcName
				if len(s.Command) == 0 || s.Command[0] != "up" || s.Entrypoint != nil {
					t.Errorf("%s: command %q entrypoint %v: want the image's /robonet with up …", where, s.Command, s.Entrypoint)
					continue
				}
				checkComposeToken(t, where, f, s)
				for _, flag := range []string{"federate-token-file"} {
					if hasFlag(s.Command, flag) {
						checkSecretFlag(t, where, f, s, flag)
					}
				}
				data := flagValue(t, s.Command, "data")
				var named bool
				for _, v := range s.Volumes {
					src, dst, _ := strings.Cut(v, ":")
					dst, _, _ = strings.Cut(dst, ":")
					if _, ok := f.Volumes[src]; ok && dst == data {
						named = true
					}
				}
				if !named {
					t.Errorf("%s: --data %s is not a named volume (volumes %q)", where, data, s.Volumes)
				}
				grace, err := time.ParseDuration(s.StopGracePeriod)
				if err != nil || grace < minStopGrace {
					t.Errorf("%s: stop_grace_period %q, want at least %s (the lame duck takes up to %s)", where, s.StopGracePeriod, minStopGrace, lameDuckMax)
				}
				if s.StopSignal != "" && s.StopSignal != "SIGTERM" {
					t.Errorf("%s: stop_signal %s, want SIGTERM (lame duck)", where, s.StopSignal)
				}
				if hc := s.Healthcheck; hc != nil && (len(hc.Test) < 2 || hc.Test[0] != "CMD" || hc.Test[1] != "/robonet") {
					t.Errorf("%s: healthcheck %q: the image has no shell, only /robonet", where, hc.Test)
				}
				if got := flagValue(t, s.Command, "name"); got != svcName || s.Hostname != svcName {
					t.Errorf("%s: --name %s hostname %s, want both %s", where, got, s.Hostname, svcName)
				}
			}
		})
	}
}

// checkComposeToken: the swarm secret is --token-file on a compose secret.
func checkComposeToken(t *testing.T, where string, f composeFile, s composeService) {
	t.Helper()
	for _, flag := range []string{"token", "federate-token"} {
		if hasFlag(s.Command, flag) {
			t.Errorf("%s: --%s on the command line", where, flag)
		}
	}
	for k, v := range s.Environment {
		if k == "ROBONET_TOKEN" || k == "ROBONET_FEDERATE_TOKEN" || strings.Contains(v, "rnsec_") || strings.Contains(v, "rntok_") {
			t.Errorf("%s: secret in the environment (%s)", where, k)
		}
	}
	for _, a := range s.Command {
		if strings.Contains(a, "rnsec_") || strings.Contains(a, "rntok_") {
			t.Errorf("%s: a secret on the command line: %q", where, a)
		}
	}
	if !hasFlag(s.Command, "token-file") {
		t.Errorf("%s: no --token-file", where)
		return
	}
	checkSecretFlag(t, where, f, s, "token-file")
}

// checkSecretFlag: --flag names /run/secrets/<secret>, a secret the service
// lists and the file declares as read from a file.
func checkSecretFlag(t *testing.T, where string, f composeFile, s composeService, flag string) {
	t.Helper()
	path := flagValue(t, s.Command, flag)
	secret, ok := strings.CutPrefix(path, "/run/secrets/")
	if !ok || secret == "" || strings.Contains(secret, "/") {
		t.Errorf("%s: --%s %s, want /run/secrets/<a compose secret>", where, flag, path)
		return
	}
	if !slices.Contains(s.Secrets, secret) {
		t.Errorf("%s: --%s %s, but the service does not list secret %s (%q)", where, flag, path, secret, s.Secrets)
	}
	decl, ok := f.Secrets[secret]
	if !ok || decl.File == "" || decl.External {
		t.Errorf("%s: secret %s is not declared with file: (%+v)", where, secret, decl)
	}
}

// TestComposeSwarmRoutesByServiceName: every core member of swarm.yml joins
// every member by its service name on the route port, and exactly one founds.
func TestComposeSwarmRoutesByServiceName(t *testing.T) {
	f := loadCompose(t, "swarm.yml")
	names := slices.Sorted(maps.Keys(f.Services))
	if len(names) != 3 {
		t.Fatalf("services %v, want 3 nodes", names)
	}
	var want []string
	for _, n := range names {
		want = append(want, fmt.Sprintf("%s:%d", n, routePort))
	}
	founders := 0
	for _, n := range names {
		s := f.Services[n]
		if got := flagValue(t, s.Command, "join"); got != strings.Join(want, ",") {
			t.Errorf("%s: --join %s, want %s", n, got, strings.Join(want, ","))
		}
		if got := flagValue(t, s.Command, "cluster"); got != fmt.Sprintf("0.0.0.0:%d", routePort) {
			t.Errorf("%s: --cluster %s", n, got)
		}
		if got := flagValue(t, s.Command, "health"); got != fmt.Sprintf("0.0.0.0:%d", healthPort) {
			t.Errorf("%s: --health %s, want 0.0.0.0:%d", n, got, healthPort)
		}
		if slices.Contains(s.Command, "--founder") {
			founders++
		}
	}
	if founders != 1 {
		t.Errorf("%d services with --founder, want one (its operator key is the swarm's admin)", founders)
	}
}
