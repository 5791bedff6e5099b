//go:build e2e

package e2e

// The deploy tests run what deploy/ ships, as an operator would: the image
// deploy/build-image makes, the compose files under deploy/compose with
// docker-compose, and the CLI inside the containers (`docker exec … /robonet
// nodes --json`). They need docker and docker-compose (skipped without,
// failed when CI=true) but not the suite's network namespaces.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// deployImageName is the repository deploy/build-image tags.
const deployImageName = "robonet"

// imageUID is the user the image runs robonet as; a secret file must be
// its own (mode 0600) for robonet to accept it.
const imageUID = 65532

// deployImage is built once per test binary by requireDeploy.
var deployImage struct {
	once    sync.Once
	problem string // why deploy tests cannot run here; "" if they can
	broken  bool   // problem is a failure even outside CI (the build failed)
	tag     string // robonet:<version>
	version string
	size    int64
	built   time.Duration
	output  string
}

// requireDeploy skips the test without docker or docker-compose (fails it
// when CI=true), builds the image through deploy/build-image the first time,
// and returns its tag.
func requireDeploy(t *testing.T) string {
	t.Helper()
	deployImage.once.Do(buildDeployImage)
	if deployImage.problem == "" {
		return deployImage.tag
	}
	if deployImage.broken {
		t.Fatalf("deploy: %s", deployImage.problem)
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("deploy tests need docker and docker-compose: %s (CI=true: failing instead of skipping)", deployImage.problem)
	}
	t.Skipf("deploy tests need docker and docker-compose: %s", deployImage.problem)
	return ""
}

func buildDeployImage() {
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			deployImage.problem = "`" + tool + "` not found"
			return
		}
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		deployImage.problem = fmt.Sprintf("docker engine not reachable: %v: %s", err, bytes.TrimSpace(out))
		return
	}
	deployImage.broken = true // from here on, a problem is a failure
	script, err := filepath.Abs(filepath.Join("..", "deploy", "build-image"))
	if err != nil {
		deployImage.problem = err.Error()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	out, err := exec.CommandContext(ctx, "bash", script).CombinedOutput()
	deployImage.built, deployImage.output = time.Since(began), strings.TrimSpace(string(out))
	if err != nil {
		deployImage.problem = fmt.Sprintf("%s: %v\n%s", script, err, out)
		return
	}
	m := regexp.MustCompile(`build-image: (\S+):(\S+) \(and :latest\)`).FindStringSubmatch(string(out))
	if m == nil || m[1] != deployImageName {
		deployImage.problem = fmt.Sprintf("%s: no 'build-image: %s:<version>' line in its output:\n%s", script, deployImageName, out)
		return
	}
	deployImage.tag, deployImage.version = m[1]+":"+m[2], m[2]
	size, err := exec.Command("docker", "image", "inspect", "-f", "{{.Size}}", deployImage.tag).Output()
	if err != nil {
		deployImage.problem = fmt.Sprintf("docker image inspect %s: %v", deployImage.tag, err)
		return
	}
	if deployImage.size, err = strconv.ParseInt(strings.TrimSpace(string(size)), 10, 64); err != nil {
		deployImage.problem = fmt.Sprintf("image size %q: %v", size, err)
		return
	}
	deployImage.problem, deployImage.broken = "", false
}

// logImage logs the image's figures once per test that uses it.
func logImage(t *testing.T) {
	t.Helper()
	t.Logf("image %s: %d bytes (%.1f MB); %s", deployImage.tag, deployImage.size, float64(deployImage.size)/1e6, deployImage.output)
	record(t, "deploy/build-image (go build + docker build + run check)", deployImage.built, "")
}

// composeProject is one docker-compose project of a test: its containers,
// network and volumes are removed when the test ends, whatever happened.
type composeProject struct {
	t    *testing.T
	name string
	file string
	env  []string
}

// newComposeProject starts nothing; it registers the cleanup that takes the
// project down with its volumes (and removes anything left carrying its label).
func newComposeProject(t *testing.T, file string, env ...string) *composeProject {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("..", "deploy", "compose", file))
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	p := &composeProject{t: t, name: "rndeploy" + strconv.Itoa(os.Getpid()) + hex.EncodeToString(b[:]), file: abs,
		env: append(os.Environ(), env...)}
	t.Cleanup(p.remove)
	return p
}

// compose runs docker-compose on the project and returns its standard
// output; its standard error (warnings, progress) goes into the error.
func (p *composeProject) compose(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker-compose", append([]string{"-p", p.name, "-f", p.file}, args...)...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker-compose %s: %v\n%s%s", strings.Join(args, " "), err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String(), nil
}

func (p *composeProject) remove() {
	if p.t.Failed() {
		if out, err := p.compose(30*time.Second, "logs", "--no-color", "--tail", "40"); err == nil {
			p.t.Logf("logs of %s:\n%s", p.name, out)
		}
	}
	if _, err := p.compose(2*time.Minute, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
		p.t.Logf("cleanup: %v", err)
	}
	label := "label=com.docker.compose.project=" + p.name
	for _, kind := range [][]string{{"ps", "-aq"}, {"volume", "ls", "-q"}, {"network", "ls", "-q"}} {
		out, _ := exec.Command("docker", append(kind, "--filter", label)...).Output()
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			continue
		}
		rm := map[string][]string{"ps": {"rm", "-f", "-v"}, "volume": {"volume", "rm", "-f"}, "network": {"network", "rm"}}[kind[0]]
		_ = exec.Command("docker", append(rm, ids...)...).Run()
		p.t.Logf("cleanup: removed %s %v left by %s", kind[0], ids, p.name)
	}
}

// container is the id of service's container.
func (p *composeProject) container(service string) string {
	p.t.Helper()
	out, err := p.compose(30*time.Second, "ps", "-q", service)
	if err != nil {
		p.t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	if id == "" || strings.ContainsAny(id, " \n") {
		p.t.Fatalf("service %s: want one container, got %q", service, id)
	}
	return id
}

// dockerExec runs the image's robonet in a container and decodes its JSON.
func dockerExec(ctx context.Context, container string, v any, args ...string) error {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", container, "/robonet"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("robonet %s: %v: %s", strings.Join(args, " "), err, clip(stderr.Bytes()))
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		return fmt.Errorf("robonet %s: %v: %s", strings.Join(args, " "), err, clip(stdout.Bytes()))
	}
	return nil
}

// deployNodes is what `robonet nodes --json` shows inside container: the
// names alive, and the leaders among them.
func deployNodes(container string) (alive, leaders []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var ms []member
	if err := dockerExec(ctx, container, &ms, "nodes", "--json", "--data", "/var/lib/robonet"); err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		if m.State == "alive" {
			alive = append(alive, m.Name)
		}
		if m.Leader {
			leaders = append(leaders, m.Name)
		}
	}
	slices.Sort(alive)
	return alive, leaders, nil
}

// wantSwarm polls container's view until exactly names are alive with one
// leader among them.
func wantSwarm(t *testing.T, container string, timeout time.Duration, what string, names ...string) time.Duration {
	t.Helper()
	return poll(t, timeout, what, func() error {
		alive, leaders, err := deployNodes(container)
		if err != nil {
			return err
		}
		if strings.Join(alive, ",") != strings.Join(names, ",") {
			return fmt.Errorf("alive %v, want %v", alive, names)
		}
		if len(leaders) != 1 {
			return fmt.Errorf("leaders %v, want one", leaders)
		}
		return nil
	})
}

// writeSecret writes a fresh swarm secret (the image's `token generate`)
// to a file only the image's user may read, as the compose file asks.
func writeSecret(t *testing.T, image string) string {
	t.Helper()
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", image, "token", "generate").Output()
	if err != nil {
		t.Fatalf("token generate: %v", err)
	}
	secret := strings.TrimSpace(string(out))
	if !strings.HasPrefix(secret, "rnsec_") {
		t.Fatalf("token generate printed %q, want rnsec_…", clip(out))
	}
	path := filepath.Join(t.TempDir(), "swarm.token")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, imageUID, imageUID); err != nil {
		t.Fatalf("chown %d %s: %v (the deploy tests need root)", imageUID, path, err)
	}
	return path
}

// health GETs the node's health endpoint from the host, over the compose
// network's address of the container.
func health(container, path string) (int, map[string]any, error) {
	ip, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", container).Output()
	if err != nil {
		return 0, nil, fmt.Errorf("docker inspect %s: %v", container, err)
	}
	addrs := strings.Fields(string(ip))
	if len(addrs) == 0 {
		return 0, nil, fmt.Errorf("container %s has no address", container)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addrs[0] + ":8222" + path)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: %v: %s", path, err, clip(body))
	}
	return resp.StatusCode, v, nil
}

// TestDeployComposeSwarm builds the image, starts deploy/compose/swarm.yml,
// sees three nodes alive with one leader, checks the image's version and
// the health endpoint, stops one container (SIGTERM: lame duck), sees it exit
// 0 and leave, starts it again and sees it back.
func TestDeployComposeSwarm(t *testing.T) {
	image := requireDeploy(t)
	logImage(t)

	// The image's version, as a program reads it.
	out, err := exec.Command("docker", "run", "--rm", "--network", "none", image, "version", "--json").Output()
	if err != nil {
		t.Fatalf("version --json: %v", err)
	}
	var ver struct{ Version, Go, OS, Arch, Path string }
	if err := json.Unmarshal(out, &ver); err != nil {
		t.Fatalf("version --json: %v: %s", err, clip(out))
	}
	if ver.Version != deployImage.version || ver.Go == "" || ver.OS != "linux" || ver.Path == "" {
		t.Fatalf("version --json = %+v, want version %s, go, os linux, path", ver, deployImage.version)
	}

	p := newComposeProject(t, "swarm.yml", "ROBONET_IMAGE="+image, "ROBONET_TOKEN_FILE="+writeSecret(t, image))
	began := time.Now()
	if _, err := p.compose(3*time.Minute, "up", "-d"); err != nil {
		t.Fatal(err)
	}
	up := time.Since(began)
	rn1, rn2 := p.container("rn1"), p.container("rn2")
	wantSwarm(t, rn1, 90*time.Second, "3 nodes alive, one leader", "rn1", "rn2", "rn3")
	record(t, "compose up -d → 3 alive with one leader", time.Since(began), "")
	t.Logf("docker-compose up -d itself took %s", up.Round(time.Millisecond))
	poll(t, 60*time.Second, "rn1 /readyz 200, survives the loss of a node", func() error {
		code, v, err := health(rn1, "/readyz")
		if err != nil {
			return err
		}
		if code != http.StatusOK || v["ready"] != true || v["survives_loss"] != true {
			return fmt.Errorf("/readyz %d %v", code, v)
		}
		return nil
	})
	record(t, "compose up -d → rn1 /readyz ready and surviving a loss", time.Since(began), "")
	if code, v, err := health(rn2, "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("rn2 /healthz: %d %v %v", code, v, err)
	}

	// docker stop: SIGTERM, lame duck, a clean exit well inside the grace.
	stopped := time.Now()
	if out, err := exec.Command("docker", "stop", "-t", "45", rn2).CombinedOutput(); err != nil {
		t.Fatalf("docker stop rn2: %v: %s", err, out)
	}
	record(t, "docker stop rn2 (SIGTERM → exited)", time.Since(stopped), "lame duck ≤ 30 s")
	code, err := exec.Command("docker", "inspect", "-f", "{{.State.ExitCode}}", rn2).Output()
	if err != nil || strings.TrimSpace(string(code)) != "0" {
		t.Fatalf("rn2 exit code %q (%v), want 0", bytes.TrimSpace(code), err)
	}
	logs, _ := exec.Command("docker", "logs", "--tail", "5", rn2).CombinedOutput()
	if !bytes.Contains(logs, []byte("stopped cleanly")) {
		t.Errorf("rn2's last log lines do not say it stopped cleanly:\n%s", logs)
	}
	poll(t, 30*time.Second, "rn2 gone from rn1's view", func() error {
		alive, _, err := deployNodes(rn1)
		if err != nil {
			return err
		}
		if strings.Join(alive, ",") != "rn1,rn3" {
			return fmt.Errorf("alive %v, want [rn1 rn3]", alive)
		}
		return nil
	})

	restarted := time.Now()
	if out, err := exec.Command("docker", "start", rn2).CombinedOutput(); err != nil {
		t.Fatalf("docker start rn2: %v: %s", err, out)
	}
	wantSwarm(t, rn1, 60*time.Second, "rn2 back", "rn1", "rn2", "rn3")
	record(t, "docker start rn2 → 3 alive again", time.Since(restarted), "")

	downAt := time.Now()
	if _, err := p.compose(2*time.Minute, "down", "-v", "-t", "45"); err != nil {
		t.Fatal(err)
	}
	record(t, "compose down -v (every node lame duck)", time.Since(downAt), "")
	if out, _ := exec.Command("docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+p.name).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("volumes left after down -v: %s", out)
	}
}

// deployFedStatus is the part of `robonet federation status --json` the test reads.
type deployFedStatus struct {
	Swarm  string           `json:"swarm"`
	Hub    bool             `json:"hub"`
	Swarms []deployFedSwarm `json:"swarms"`
}

// deployFedSwarm is one swarm of the directory.
type deployFedSwarm struct {
	Prefix string `json:"prefix"`
	Parent string `json:"parent"`
	Link   string `json:"link"`
	Nodes  int    `json:"nodes"`
	Live   int    `json:"live"`
}

// writeFederationToken has the hub's founder (hub1, the admin) mint a
// federation token for the child prefix and writes it where the compose file
// reads it, owned by the image's user; the hub must be up, so it retries.
func writeFederationToken(t *testing.T, p *composeProject, prefix, path string) {
	t.Helper()
	poll(t, 90*time.Second, "federation token for "+prefix, func() error {
		out, err := p.compose(30*time.Second, "exec", "-T", "hub1", "/robonet", "token", "create", "--federate", "--prefix", prefix, "--ttl", "15m")
		if err != nil {
			return err
		}
		tok := ""
		for _, l := range strings.Fields(out) {
			if strings.HasPrefix(l, "rntok_") {
				tok = l
			}
		}
		if tok == "" {
			return fmt.Errorf("no rntok_ in %q", clip([]byte(out)))
		}
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return err
		}
		return os.Chown(path, imageUID, imageUID)
	})
}

// TestDeployComposeFederation starts deploy/compose/federation.yml as its
// comments say: the hub swarm, then two federation tokens from its admin,
// then the two child swarms, and waits until the hub's directory shows both
// children linked with every node live.
func TestDeployComposeFederation(t *testing.T) {
	image := requireDeploy(t)
	dir := t.TempDir()
	env := []string{"ROBONET_IMAGE=" + image}
	for _, s := range []string{"hub", "a", "b"} {
		env = append(env, "ROBONET_"+strings.ToUpper(s)+"_TOKEN_FILE="+writeSecret(t, image))
	}
	aFed, bFed := filepath.Join(dir, "a.federate"), filepath.Join(dir, "b.federate")
	env = append(env, "ROBONET_A_FEDERATE_FILE="+aFed, "ROBONET_B_FEDERATE_FILE="+bFed)
	p := newComposeProject(t, "federation.yml", env...)

	began := time.Now()
	if _, err := p.compose(3*time.Minute, "up", "-d", "hub1", "hub2", "hub3"); err != nil {
		t.Fatal(err)
	}
	wantSwarm(t, p.container("hub1"), 90*time.Second, "hub swarm: 3 alive, one leader", "hub1", "hub2", "hub3")
	record(t, "federation: hub up -d → 3 alive", time.Since(began), "")
	writeFederationToken(t, p, "1.1.2", aFed)
	writeFederationToken(t, p, "1.1.3", bFed)

	children := time.Now()
	if _, err := p.compose(3*time.Minute, "up", "-d"); err != nil {
		t.Fatal(err)
	}
	hub1 := p.container("hub1")
	var last deployFedStatus
	poll(t, 2*time.Minute, "both child swarms linked, 3/3 live, in the hub's directory", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		last = deployFedStatus{}
		if err := dockerExec(ctx, hub1, &last, "federation", "status", "--json"); err != nil {
			return err
		}
		if last.Swarm != "1.1.1" || !last.Hub {
			return fmt.Errorf("hub1 says swarm %q hub %v", last.Swarm, last.Hub)
		}
		for _, want := range []string{"1.1.2", "1.1.3"} {
			i := slices.IndexFunc(last.Swarms, func(s deployFedSwarm) bool { return s.Prefix == want })
			if i < 0 {
				return fmt.Errorf("no swarm %s in %+v", want, last.Swarms)
			}
			if s := last.Swarms[i]; s.Parent != "1.1.1" || s.Link != "up" || s.Live != 3 || s.Nodes != 3 {
				return fmt.Errorf("swarm %s: %+v, want parent 1.1.1, link up, 3/3 live", want, s)
			}
		}
		return nil
	})
	record(t, "federation: children up -d → both linked, 3/3 live at the hub", time.Since(children), "")
	t.Logf("hub1's directory: %+v", last.Swarms)
}

// k8sPod is one pod of deploy/k8s played by a container: the manifest's
// args with the kubelet's $(VAR) expansion, its env, and the constraints its
// security context sets (user, read-only root, no capabilities).
type k8sPod struct {
	name, hostname string
	aliases        []string
	env            map[string]string
	args           []string
}

// expandK8s does the kubelet's $(VAR) expansion of args.
func expandK8s(args []string, env map[string]string) []string {
	var out []string
	for _, a := range args {
		for k, v := range env {
			a = strings.ReplaceAll(a, "$("+k+")", v)
		}
		out = append(out, a)
	}
	return out
}

// loadK8sPodSpec reads the first container of the workload kind in file.
func loadK8sPodSpec(t *testing.T, file, kind string) *corev1.PodSpec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "deploy", "k8s", file))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		var tm struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil || tm.Kind != kind {
			continue
		}
		switch kind {
		case "StatefulSet":
			var o appsv1.StatefulSet
			if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
				t.Fatal(err)
			}
			return &o.Spec.Template.Spec
		case "DaemonSet":
			var o appsv1.DaemonSet
			if err := yaml.UnmarshalStrict([]byte(doc), &o); err != nil {
				t.Fatal(err)
			}
			return &o.Spec.Template.Spec
		}
	}
	t.Fatalf("no %s in deploy/k8s/%s", kind, file)
	return nil
}

// TestDeployK8sArgsRunInDocker runs the StatefulSet's and the DaemonSet's
// containers as the kubelet would start them, in Docker: three members named
// robonet-N reachable as robonet-N.robonet-headless, an edge, the token from
// ROBONET_TOKEN, a read-only root with /tmp, no capabilities, the image's
// user. It waits for 3 core members and the edge alive with their /readyz
// 200, then runs the preStop command in a member and sees it exit 0. What it
// cannot show is Kubernetes itself (probes, PDB, volumes' fsGroup).
func TestDeployK8sArgsRunInDocker(t *testing.T) {
	image := requireDeploy(t)
	core := loadK8sPodSpec(t, "core.yaml", "StatefulSet")
	edge := loadK8sPodSpec(t, "edges.yaml", "DaemonSet")
	secret, err := os.ReadFile(writeSecret(t, image))
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	run := "rndeployk8s" + strconv.Itoa(os.Getpid()) + hex.EncodeToString(b[:])
	label := "robonet-e2e-deploy=" + run
	t.Cleanup(func() {
		for _, kind := range [][]string{{"ps", "-aq"}, {"volume", "ls", "-q"}, {"network", "ls", "-q"}} {
			out, _ := exec.Command("docker", append(kind, "--filter", "label="+label)...).Output()
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				rm := map[string][]string{"ps": {"rm", "-f", "-v"}, "volume": {"volume", "rm", "-f"}, "network": {"network", "rm"}}[kind[0]]
				_ = exec.Command("docker", append(rm, ids...)...).Run()
			}
		}
	})
	if out, err := exec.Command("docker", "network", "create", "--label", label, run).CombinedOutput(); err != nil {
		t.Fatalf("docker network create: %v: %s", err, out)
	}
	token := strings.TrimSpace(string(secret))
	var pods []k8sPod
	for i := range 3 {
		name := fmt.Sprintf("robonet-%d", i)
		env := map[string]string{"POD_NAME": name, "POD_NAMESPACE": "default", "ROBONET_TOKEN": token}
		pods = append(pods, k8sPod{name: name, hostname: name, aliases: []string{name + ".robonet-headless"}, env: env,
			args: expandK8s(core.Containers[0].Args, env)})
	}
	edgeEnv := map[string]string{"POD_NAME": "robonet-edge-x7k2p", "NODE_NAME": "worker-1", "ROBONET_TOKEN": token}
	pods = append(pods, k8sPod{name: "robonet-edge-x7k2p", hostname: "robonet-edge-x7k2p", env: edgeEnv,
		args: expandK8s(edge.Containers[0].Args, edgeEnv)})

	containers := map[string]string{}
	began := time.Now()
	for _, p := range pods {
		args := []string{"run", "-d", "--label", label, "--name", run + "-" + p.name, "--hostname", p.hostname,
			"--network", run, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
			"--security-opt", "no-new-privileges", "--user", "65532:65532",
			"--mount", "type=volume,dst=/var/lib/robonet,volume-label=" + label}
		for _, a := range p.aliases {
			args = append(args, "--network-alias", a)
		}
		for k, v := range p.env {
			args = append(args, "-e", k+"="+v)
		}
		args = append(args, image)
		out, err := exec.Command("docker", append(args, p.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker run %s: %v: %s", p.name, err, out)
		}
		containers[p.name] = strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for name, id := range containers {
				out, _ := exec.Command("docker", "logs", "--tail", "30", id).CombinedOutput()
				t.Logf("logs of %s:\n%s", name, out)
			}
		}
	})
	r0 := containers["robonet-0"]
	wantSwarm(t, r0, 2*time.Minute, "3 members and the edge alive, one leader", "robonet-0", "robonet-1", "robonet-2", "robonet-edge-x7k2p")
	record(t, "k8s args in docker: start → 3 core + 1 edge alive", time.Since(began), "")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var roles []struct{ Name, Role string }
	if err := dockerExec(ctx, r0, &roles, "nodes", "--json"); err != nil {
		t.Fatal(err)
	}
	for _, m := range roles {
		if want := map[bool]string{true: "edge", false: "core"}[strings.HasPrefix(m.Name, "robonet-edge-")]; m.Role != want {
			t.Errorf("%s has role %q, want %s", m.Name, m.Role, want)
		}
	}
	for _, p := range pods {
		poll(t, time.Minute, p.name+" /readyz 200", func() error {
			code, v, err := health(containers[p.name], "/readyz")
			if err != nil {
				return err
			}
			if code != http.StatusOK || v["ready"] != true {
				return fmt.Errorf("/readyz %d %v", code, v)
			}
			return nil
		})
	}
	record(t, "k8s args in docker: start → every /readyz 200", time.Since(began), "")

	// The preStop hook, as the kubelet runs it.
	pre := core.Containers[0].Lifecycle.PreStop.Exec.Command
	r1 := containers["robonet-1"]
	stopped := time.Now()
	out, err := exec.Command("docker", append([]string{"exec", r1}, pre...)...).CombinedOutput()
	t.Logf("preStop %q: %v: %s", pre, err, clip(out))
	poll(t, time.Minute, "robonet-1 exited after preStop", func() error {
		st, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", r1).Output()
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(st)); s != "exited 0" {
			return fmt.Errorf("robonet-1 is %q, want exited 0", s)
		}
		return nil
	})
	record(t, "k8s args in docker: preStop robonet stop → exited 0", time.Since(stopped), "lame duck ≤ 30 s")
	poll(t, 30*time.Second, "robonet-1 gone from robonet-0's view", func() error {
		alive, _, err := deployNodes(r0)
		if err != nil {
			return err
		}
		if slices.Contains(alive, "robonet-1") || len(alive) != 3 {
			return fmt.Errorf("alive %v, want robonet-0, robonet-2 and the edge", alive)
		}
		return nil
	})
}
