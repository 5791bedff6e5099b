package deploy

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// The contract the manifests are held to (the product's, see README):
const (
	healthPort   = 8222  // robonet up --health
	clientPort   = 4222  // --listen
	routePort    = 6222  // --cluster
	leafPort     = 7422  // --edge-listen
	imageUID     = 65532 // the image's user robonet
	dataDir      = "/var/lib/robonet"
	lameDuckMax  = 30 * time.Second // SIGTERM → exit, at most
	tokenEnv     = "ROBONET_TOKEN"
	secretName   = "robonet-swarm"
	stopTimeout  = "45s"
	minStopGrace = 45 * time.Second
)

// manifests holds every object of deploy/k8s, decoded strictly into the
// Kubernetes API types.
type manifests struct {
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	daemonSets   map[string]*appsv1.DaemonSet
	pdbs         map[string]*policyv1.PodDisruptionBudget
}

// splitYAML splits a multi-document YAML file on its "---" lines, dropping
// documents that hold only comments.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		meaningful := false
		for _, line := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				meaningful = true
				break
			}
		}
		if meaningful {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no deploy/k8s/*.yaml: %v", err)
	}
	m := &manifests{services: map[string]*corev1.Service{}, statefulSets: map[string]*appsv1.StatefulSet{},
		daemonSets: map[string]*appsv1.DaemonSet{}, pdbs: map[string]*policyv1.PodDisruptionBudget{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAML(data) {
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name      string `json:"name"`
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			where := fmt.Sprintf("%s document %d (%s %s)", f, i+1, tm.Kind, tm.Metadata.Name)
			if tm.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", where)
			}
			if tm.Metadata.Namespace != "" {
				t.Errorf("%s: namespace %q: the manifests are namespace-agnostic (kubectl -n)", where, tm.Metadata.Namespace)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Service":
				obj = &corev1.Service{}
			case "apps/v1 StatefulSet":
				obj = &appsv1.StatefulSet{}
			case "apps/v1 DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "policy/v1 PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			default:
				t.Fatalf("%s: kind %s %s: not one the tests know (add it to loadManifests)", where, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			name := tm.Metadata.Name
			switch o := obj.(type) {
			case *corev1.Service:
				m.services[name] = o
			case *appsv1.StatefulSet:
				m.statefulSets[name] = o
			case *appsv1.DaemonSet:
				m.daemonSets[name] = o
			case *policyv1.PodDisruptionBudget:
				m.pdbs[name] = o
			}
		}
	}
	return m
}

// TestK8sManifestsDecodeStrictly decodes every document of deploy/k8s into
// the real API types (an unknown or misspelt field fails) and checks the set
// of objects is the one the README describes.
func TestK8sManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if got := slices.Sorted(maps.Keys(m.services)); !slices.Equal(got, []string{"robonet", "robonet-headless"}) {
		t.Errorf("services %v, want robonet and robonet-headless", got)
	}
	if len(m.statefulSets) != 1 || m.statefulSets["robonet"] == nil {
		t.Errorf("statefulsets %v, want robonet", slices.Collect(maps.Keys(m.statefulSets)))
	}
	if len(m.daemonSets) != 1 || m.daemonSets["robonet-edge"] == nil {
		t.Errorf("daemonsets %v, want robonet-edge", slices.Collect(maps.Keys(m.daemonSets)))
	}
	if len(m.pdbs) != 1 || m.pdbs["robonet"] == nil {
		t.Errorf("poddisruptionbudgets %v, want robonet", slices.Collect(maps.Keys(m.pdbs)))
	}
}

// flagValues are the values of --name in args, in either --name=v or
// --name v form.
func flagValues(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		} else if a == "--"+name && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	v := flagValues(args, name)
	if len(v) != 1 {
		t.Fatalf("--%s given %d times in %q, want once", name, len(v), args)
	}
	return v[0]
}

func hasFlag(args []string, name string) bool {
	return slices.Contains(args, "--"+name) || slices.ContainsFunc(args, func(a string) bool {
		return strings.HasPrefix(a, "--"+name+"=")
	})
}

func servicePort(svc *corev1.Service, name string) (corev1.ServicePort, bool) {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return p, true
		}
	}
	return corev1.ServicePort{}, false
}

func containerPort(c *corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// selects reports whether selector matches every label of it in labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestK8sHeadlessServicePublishesEveryMember(t *testing.T) {
	m := loadManifests(t)
	sts := m.statefulSets["robonet"]
	h := m.services[sts.Spec.ServiceName]
	if h == nil {
		t.Fatalf("the StatefulSet's serviceName %q is no service of deploy/k8s", sts.Spec.ServiceName)
	}
	if h.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: clusterIP %q, want None (headless: one DNS name per member)", h.Name, h.Spec.ClusterIP)
	}
	if !h.Spec.PublishNotReadyAddresses {
		t.Errorf("%s: publishNotReadyAddresses false: members are not ready until the swarm forms, so they could never find each other", h.Name)
	}
	if !selects(h.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("%s selects %v, not the StatefulSet's pods %v", h.Name, h.Spec.Selector, sts.Spec.Template.Labels)
	}
	c := &sts.Spec.Template.Spec.Containers[0]
	for name, want := range map[string]int32{"client": clientPort, "route": routePort, "health": healthPort, "leaf": leafPort} {
		p, ok := servicePort(h, name)
		if !ok || p.Port != want {
			t.Errorf("%s: port %s = %+v, want %d", h.Name, name, p, want)
			continue
		}
		if p.TargetPort.StrVal != name || containerPort(c, name) != want {
			t.Errorf("%s: port %s targets %q, container port %d, want the container's %s port %d", h.Name, name, p.TargetPort.String(), containerPort(c, name), name, want)
		}
	}
	client := m.services["robonet"]
	if p, ok := servicePort(client, "client"); !ok || p.Port != clientPort || client.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("service robonet: %+v, want a ClusterIP service on %d", client.Spec, clientPort)
	}
	if !selects(client.Spec.Selector, sts.Spec.Template.Labels) || selects(client.Spec.Selector, m.daemonSets["robonet-edge"].Spec.Template.Labels) {
		t.Errorf("service robonet selects %v: want the core's pods only", client.Spec.Selector)
	}
}

// coreJoin is the --join every member and edge must carry: every replica's
// stable name under the headless service, on the route port.
func coreJoin(sts *appsv1.StatefulSet) string {
	var addrs []string
	for i := range int(*sts.Spec.Replicas) {
		addrs = append(addrs, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, routePort))
	}
	return strings.Join(addrs, ",")
}

func TestK8sStatefulSetFormsASwarm(t *testing.T) {
	m := loadManifests(t)
	sts := m.statefulSets["robonet"]
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("replicas %v, want 3", sts.Spec.Replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel (a member is not ready alone: ordered start would wait forever)", sts.Spec.PodManagementPolicy)
	}
	if sts.Spec.Selector == nil || !selects(sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the template's labels %v", sts.Spec.Selector, sts.Spec.Template.Labels)
	}
	pod := &sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := &pod.Containers[0]
	if len(c.Command) != 0 || len(c.Args) == 0 || c.Args[0] != "up" {
		t.Fatalf("command %q args %q: want the image's entrypoint with args up …", c.Command, c.Args)
	}
	args := c.Args
	if got, want := flagValue(t, args, "join"), coreJoin(sts); got != want {
		t.Errorf("--join %s, want every replica's stable name: %s", got, want)
	}
	if got := flagValue(t, args, "name"); got != "$(POD_NAME)" || envField(c, "POD_NAME") != "metadata.name" {
		t.Errorf("--name %s with POD_NAME from %q: want $(POD_NAME) from metadata.name", got, envField(c, "POD_NAME"))
	}
	for flag, want := range map[string]string{
		"data": dataDir, "listen": "0.0.0.0:" + strconv.Itoa(clientPort), "cluster": "0.0.0.0:" + strconv.Itoa(routePort),
		"edge-listen": "0.0.0.0:" + strconv.Itoa(leafPort), "health": "0.0.0.0:" + strconv.Itoa(healthPort),
	} {
		if got := flagValue(t, args, flag); got != want {
			t.Errorf("--%s %s, want %s", flag, got, want)
		}
	}
	checkPodSecurity(t, "statefulset robonet", pod)
	checkToken(t, "statefulset robonet", pod)
	checkProbesAndStop(t, "statefulset robonet", pod)

	// The data dir is the claim of each member, so a rescheduled member keeps
	// its identity, chevron and JetStream store.
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volumeClaimTemplates, want 1", len(sts.Spec.VolumeClaimTemplates))
	}
	claim := sts.Spec.VolumeClaimTemplates[0]
	if mountOf(c, claim.Name) != dataDir {
		t.Errorf("claim %s mounted at %q, want %s (--data)", claim.Name, mountOf(c, claim.Name), dataDir)
	}
	if !slices.Contains(claim.Spec.AccessModes, corev1.ReadWriteOnce) || claim.Spec.Resources.Requests.Storage().IsZero() {
		t.Errorf("claim %s: %+v, want ReadWriteOnce with a storage request", claim.Name, claim.Spec)
	}
}

func TestK8sPodDisruptionBudgetAllowsOneMemberDown(t *testing.T) {
	m := loadManifests(t)
	pdb, sts, edge := m.pdbs["robonet"], m.statefulSets["robonet"], m.daemonSets["robonet-edge"]
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MaxUnavailable.StrVal != "" {
		t.Errorf("maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if pdb.Spec.MinAvailable != nil {
		t.Errorf("minAvailable %v set too", pdb.Spec.MinAvailable)
	}
	if pdb.Spec.Selector == nil || len(pdb.Spec.Selector.MatchExpressions) > 0 || !selects(pdb.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the StatefulSet's pods %v", pdb.Spec.Selector, sts.Spec.Template.Labels)
	}
	if pdb.Spec.Selector != nil && selects(pdb.Spec.Selector.MatchLabels, edge.Spec.Template.Labels) {
		t.Errorf("selector %v selects the edges too: one edge down would block a member's eviction", pdb.Spec.Selector.MatchLabels)
	}
}

func TestK8sEdgeDaemonSetJoinsTheCore(t *testing.T) {
	m := loadManifests(t)
	ds, sts := m.daemonSets["robonet-edge"], m.statefulSets["robonet"]
	if ds.Spec.Selector == nil || !selects(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the template's labels %v", ds.Spec.Selector, ds.Spec.Template.Labels)
	}
	if selects(sts.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) || selects(ds.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("the edge and core selectors overlap: %v, %v", ds.Spec.Selector.MatchLabels, sts.Spec.Selector.MatchLabels)
	}
	pod := &ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	args := pod.Containers[0].Args
	if len(args) == 0 || args[0] != "up" || !slices.Contains(args, "--edge") {
		t.Errorf("args %q: want up --edge …", args)
	}
	for _, f := range []string{"cluster", "leaf-listen", "federate", "swarm", "chevron"} {
		if hasFlag(args, f) {
			t.Errorf("an edge with --%s: an edge takes them from the core (and refuses --leaf-listen, --federate)", f)
		}
	}
	if got, want := flagValue(t, args, "join"), coreJoin(sts); got != want {
		t.Errorf("--join %s, want the core members' stable names: %s", got, want)
	}
	if _, ok := servicePort(m.services[sts.Spec.ServiceName], "leaf"); !ok {
		t.Errorf("the headless service has no leaf port: edges link to the core there")
	}
	if got := flagValue(t, args, "data"); mountOf(&pod.Containers[0], "data") != got {
		t.Errorf("--data %s is not the data volume's mount %q", got, mountOf(&pod.Containers[0], "data"))
	}
	checkPodSecurity(t, "daemonset robonet-edge", pod)
	checkToken(t, "daemonset robonet-edge", pod)
	checkProbesAndStop(t, "daemonset robonet-edge", pod)
}

func envField(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

func mountOf(c *corev1.Container, volume string) string {
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume {
			return vm.MountPath
		}
	}
	return ""
}

// checkPodSecurity: robonet runs as the image's user, unprivileged, on a
// read-only root with a writable data dir and /tmp.
func checkPodSecurity(t *testing.T, what string, pod *corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: runAsNonRoot not set", what)
		return
	}
	for name, v := range map[string]*int64{"runAsUser": psc.RunAsUser, "runAsGroup": psc.RunAsGroup, "fsGroup": psc.FSGroup} {
		if v == nil || *v != imageUID {
			t.Errorf("%s: %s %v, want %d (the image's robonet)", what, name, v, imageUID)
		}
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile %v, want RuntimeDefault", what, psc.SeccompProfile)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted; robonet does not use the API", what)
	}
	c := &pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem not set", what)
	} else if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation not false", what)
	} else if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %v, want drop ALL, add none", what, sc.Capabilities)
	} else if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", what)
	}
	if mountOf(c, "tmp") != "/tmp" {
		t.Errorf("%s: no writable /tmp on the read-only root", what)
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		t.Errorf("%s: image %q, want a versioned tag", what, c.Image)
	}
}

// checkToken: the swarm secret comes from the Secret, never the command
// line, and not as a file: with fsGroup (needed for the data volume) the
// kubelet adds group read to every file of a secret volume whatever
// defaultMode says (kubernetes/kubernetes#57923), and robonet refuses a
// --token-file group or others may read, so a mounted file could not work.
func checkToken(t *testing.T, what string, pod *corev1.PodSpec) {
	t.Helper()
	c := &pod.Containers[0]
	for _, f := range []string{"token", "token-file", "federate-token"} {
		if hasFlag(c.Args, f) {
			t.Errorf("%s: --%s on the command line", what, f)
		}
	}
	for _, a := range c.Args {
		if strings.Contains(a, "rnsec_") || strings.Contains(a, "rntok_") {
			t.Errorf("%s: a secret in the args: %q", what, a)
		}
	}
	var found bool
	for _, e := range c.Env {
		if e.Name != tokenEnv {
			continue
		}
		found = true
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != secretName || e.ValueFrom.SecretKeyRef.Key != "token" {
			t.Errorf("%s: %s = %+v, want it from secret %s key token", what, tokenEnv, e, secretName)
		}
	}
	if !found {
		t.Errorf("%s: no %s from the Secret %s", what, tokenEnv, secretName)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil || (v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.Secret != nil })) {
			t.Errorf("%s: volume %s mounts a secret as files: with fsGroup they become mode 0440, which robonet refuses", what, v.Name)
		}
	}
}

// checkProbesAndStop: probes on the health port, a preStop that waits for
// the lame duck, and a grace longer than that wait.
func checkProbesAndStop(t *testing.T, what string, pod *corev1.PodSpec) {
	t.Helper()
	c := &pod.Containers[0]
	if got := flagValue(t, c.Args, "health"); got != "0.0.0.0:"+strconv.Itoa(healthPort) {
		t.Errorf("%s: --health %s, want 0.0.0.0:%d", what, got, healthPort)
	}
	for name, pr := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		p := pr.probe
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet probe", what, name)
			continue
		}
		port := p.HTTPGet.Port.IntValue()
		if p.HTTPGet.Port.StrVal != "" {
			port = int(containerPort(c, p.HTTPGet.Port.StrVal))
		}
		if p.HTTPGet.Path != pr.path || port != healthPort || (p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP) {
			t.Errorf("%s: %s probe %s %v (port %d), want HTTP %s on %d", what, name, p.HTTPGet.Path, p.HTTPGet.Port.String(), port, pr.path, healthPort)
		}
	}
	// A liveness probe must not kill a member that is merely waiting for the
	// swarm: it asks /healthz, and the startup probe gives the process a minute.
	if p := c.StartupProbe; p != nil && time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < 30*time.Second {
		t.Errorf("%s: the startup probe gives up after %ds", what, p.PeriodSeconds*p.FailureThreshold)
	}
	// The hook only starts the lame duck: the node is the container's main
	// process, so a hook waiting for its exit would die with it (exit 137,
	// a FailedPreStopHook event on every stop).
	want := []string{"/robonet", "stop", "--data", dataDir, "--wait=false"}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil ||
		!slices.Equal(c.Lifecycle.PreStop.Exec.Command, want) {
		t.Errorf("%s: preStop %+v, want exec %q", what, c.Lifecycle, want)
	}
	stop, err := time.ParseDuration(stopTimeout)
	if err != nil || stop < minStopGrace || stop <= lameDuckMax {
		t.Fatalf("stop timeout %s must exceed the lame duck (%s)", stopTimeout, lameDuckMax)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= stop {
		got := "unset"
		if g != nil {
			got = strconv.FormatInt(*g, 10)
		}
		t.Errorf("%s: terminationGracePeriodSeconds %s, want more than the preStop's %s", what, got, stop)
	}
}

// TestK8sManifestsNameOneImage keeps every image reference on one versioned
// tag (what build-image tags) and every secret out of the manifests.
func TestK8sManifestsNameOneImage(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	images := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*image:\s*(\S+)`).FindAllSubmatch(data, -1) {
			images[string(m[1])] = true
		}
		if bytes.Contains(data, []byte("rnsec_")) || bytes.Contains(data, []byte("rntok_")) {
			t.Errorf("%s holds a secret", f)
		}
	}
	if len(images) != 1 {
		t.Errorf("images %v: want one, the same everywhere", slices.Collect(maps.Keys(images)))
	}
}
