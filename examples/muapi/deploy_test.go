package main

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// moduleRoot is the directory of the go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// decodeAll decodes every document of a YAML stream into a value of type
// T, failing on the first error.
func decodeAll[T any](r io.Reader) ([]T, error) {
	dec := yaml.NewDecoder(r)
	var docs []T
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, err
		}
		docs = append(docs, v)
	}
}

func decodeFile[T any](t *testing.T, path string) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll[T](bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return docs
}

// TestYAMLFilesParse parses every .yaml and .yml file under a directory
// named examples or deploy in the module, every document of each.
func TestYAMLFilesParse(t *testing.T) {
	root := moduleRoot(t)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		parts := strings.Split(filepath.ToSlash(rel), "/")
		ext := filepath.Ext(path)
		if (ext == ".yaml" || ext == ".yml") &&
			(slices.Contains(parts[:len(parts)-1], "examples") || slices.Contains(parts[:len(parts)-1], "deploy")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("found only %d YAML files under examples/ and deploy/: %q", len(files), files)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		t.Run(filepath.ToSlash(rel), func(t *testing.T) {
			docs := decodeFile[any](t, f)
			n := 0
			for _, d := range docs {
				if d != nil {
					n++
				}
			}
			if n == 0 {
				t.Errorf("no documents")
			}
		})
	}
}

// The parts of Kubernetes objects the checks below read.
type (
	k8sObject struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			// Deployment: {matchLabels: {...}}; Service: the labels.
			Selector map[string]any `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			Ports []struct { // Service
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
		Data map[string]string `yaml:"data"`
	}
	podSpec struct {
		TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               struct {
			RunAsNonRoot *bool `yaml:"runAsNonRoot"`
			RunAsUser    *int  `yaml:"runAsUser"`
		} `yaml:"securityContext"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
		Volumes        []volume    `yaml:"volumes"`
	}
	volume struct {
		Name     string `yaml:"name"`
		EmptyDir *struct {
			SizeLimit string `yaml:"sizeLimit"`
		} `yaml:"emptyDir"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	}
	containerPort struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	}
	container struct {
		Name  string          `yaml:"name"`
		Image string          `yaml:"image"`
		Ports []containerPort `yaml:"ports"`
		Env   []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom any    `yaml:"valueFrom"`
		} `yaml:"env"`
		Resources struct {
			Limits map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		ReadinessProbe  *probe `yaml:"readinessProbe"`
		LivenessProbe   *probe `yaml:"livenessProbe"`
		SecurityContext struct {
			ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
)

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// manifest reads a Kubernetes file of the deploy directory, keyed by kind.
func manifest(t *testing.T, name string) map[string]k8sObject {
	t.Helper()
	objs := map[string]k8sObject{}
	for _, o := range decodeFile[k8sObject](t, filepath.Join("deploy", name)) {
		if _, dup := objs[o.Kind]; dup {
			t.Fatalf("%s: two objects of kind %s", name, o.Kind)
		}
		objs[o.Kind] = o
	}
	return objs
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func TestKubernetesManifest(t *testing.T) {
	objs := manifest(t, "kubernetes.yaml")
	dep, ok := objs["Deployment"]
	if !ok {
		t.Fatal("no Deployment")
	}
	pod := dep.Spec.Template.Spec

	// No sidecar: one container, nothing like a log shipper anywhere.
	if len(pod.Containers) != 1 {
		t.Errorf("%d containers, want only the app", len(pod.Containers))
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		for _, s := range []string{strings.ToLower(c.Name), strings.ToLower(c.Image)} {
			for _, shipper := range []string{"fluent", "promtail", "alloy", "vector"} {
				if strings.Contains(s, shipper) {
					t.Errorf("container %q (%s) looks like a log shipper", c.Name, c.Image)
				}
			}
		}
	}
	if len(pod.Containers) == 0 {
		t.FailNow()
	}
	app := pod.Containers[0]

	if got := app.Resources.Limits["cpu"]; got != "100m" {
		t.Errorf("cpu limit %q, want 100m", got)
	}
	if got := app.Resources.Limits["memory"]; got != "50Mi" {
		t.Errorf("memory limit %q, want 50Mi", got)
	}

	// The spool: LOKI_SPOOL_DIR is the mount path of a size-limited emptyDir.
	spool, ok := app.env("LOKI_SPOOL_DIR")
	if !ok || spool == "" {
		t.Fatal("no LOKI_SPOOL_DIR")
	}
	mounted := false
	var sizeLimit string
	for _, m := range app.VolumeMounts {
		if m.MountPath != spool {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				mounted = true
				sizeLimit = v.EmptyDir.SizeLimit
				if v.EmptyDir.SizeLimit == "" {
					t.Errorf("emptyDir %q has no sizeLimit", v.Name)
				}
			}
		}
	}
	if !mounted {
		t.Errorf("no emptyDir mounted at LOKI_SPOOL_DIR %s", spool)
	}

	// Configuration from the environment.
	for _, name := range []string{"LOKI_URL", "LOKI_TENANT_ID", "LOKI_LABELS"} {
		if v, ok := app.env(name); !ok || v == "" {
			t.Errorf("env %s not set", name)
		}
	}
	// $(VAR) in a value is expanded only when VAR is listed before it.
	defined := map[string]bool{}
	for _, e := range app.Env {
		for _, m := range envRef.FindAllStringSubmatch(e.Value, -1) {
			if !defined[m[1]] {
				t.Errorf("env %s refers to $(%s), which is not defined before it", e.Name, m[1])
			}
		}
		defined[e.Name] = true
	}
	labels, _ := app.env("LOKI_LABELS")
	if !strings.Contains(labels, "service_name=mu-api") || !strings.Contains(labels, "namespace=$(POD_NAMESPACE)") {
		t.Errorf("LOKI_LABELS %q", labels)
	}
	env := map[string]string{}
	for _, e := range app.Env {
		env[e.Name] = e.Value
	}
	setEnv(t, env)
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("the manifest's environment does not load: %v", err)
	}
	if cfg.Loki.SpoolDir != spool || cfg.Loki.Labels["service_name"] != "mu-api" {
		t.Errorf("loaded config %+v", cfg.Loki)
	}

	// The spool's bound, plus the two preallocated 8 MiB segments (the one
	// written and the next, prepared ahead), is below the emptyDir's
	// limit (else: eviction).
	const prealloc = 2 * 8 << 20
	if limit, ok := quantity(sizeLimit); !ok || cfg.Loki.MaxSpoolBytes <= 0 || cfg.Loki.MaxSpoolBytes+prealloc >= limit {
		t.Errorf("LOKI_MAX_SPOOL_BYTES %d, emptyDir sizeLimit %q: want a set bound 16 MiB or more below the limit",
			cfg.Loki.MaxSpoolBytes, sizeLimit)
	}

	// SIGKILL must not come before the shutdown deadline.
	grace := 30 * time.Second // Kubernetes' default
	if g := pod.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v, want more than the shutdown timeout %v", grace, cfg.ShutdownTimeout)
	}

	for name, p := range map[string]*probe{"readiness": app.ReadinessProbe, "liveness": app.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe: want httpGet /healthz", name)
		}
	}
	if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if ro := app.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("container securityContext: want readOnlyRootFilesystem")
	}

	// The Service reaches the pods.
	svc, ok := objs["Service"]
	if !ok {
		t.Fatal("no Service")
	}
	podLabels := dep.Spec.Template.Metadata.Labels
	matchLabels, _ := dep.Spec.Selector["matchLabels"].(map[string]any)
	for what, sel := range map[string]map[string]any{"Service selector": svc.Spec.Selector, "Deployment selector": matchLabels} {
		if len(sel) == 0 {
			t.Errorf("%s is empty", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s %s=%v does not match the pod labels %v", what, k, v, podLabels)
			}
		}
	}
	for _, p := range svc.Spec.Ports {
		if !slices.ContainsFunc(app.Ports, func(cp containerPort) bool { return cp.Name == p.TargetPort }) {
			t.Errorf("Service targetPort %q is no container port", p.TargetPort)
		}
	}
}

// quantity reads a Kubernetes byte quantity with a binary suffix ("300Mi").
func quantity(s string) (int64, bool) {
	for i, suffix := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v << (10 * (i + 1)), err == nil && v > 0
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

func TestKubernetesSidecarBefore(t *testing.T) {
	objs := manifest(t, "kubernetes-sidecar-before.yaml")
	cm, ok := objs["ConfigMap"]
	if !ok {
		t.Fatal("no ConfigMap")
	}
	conf := cm.Data["fluent-bit.conf"]
	for _, want := range []string{"[INPUT]", "Name              tail", "[OUTPUT]", "Name              loki", "Parsers_File      parsers.conf"} {
		if !strings.Contains(conf, want) {
			t.Errorf("fluent-bit.conf lacks %q", want)
		}
	}
	if !strings.Contains(cm.Data["parsers.conf"], "Name        json") {
		t.Error("parsers.conf lacks the json parser the tail input uses")
	}
	pod := objs["Deployment"].Spec.Template.Spec
	var app, fb *container
	for i, c := range pod.Containers {
		switch {
		case strings.Contains(c.Image, "fluent-bit"):
			fb = &pod.Containers[i]
		case c.Name == "mu-api":
			app = &pod.Containers[i]
		}
	}
	if app == nil || fb == nil {
		t.Fatalf("want the app and a fluent-bit sidecar, have %d containers", len(pod.Containers))
	}
	// Both see the log directory through the same volume.
	mountOf := func(c *container, path string) string {
		for _, m := range c.VolumeMounts {
			if m.MountPath == path {
				return m.Name
			}
		}
		return ""
	}
	logFile, _ := app.env("LOG_FILE")
	dir := filepath.ToSlash(filepath.Dir(logFile))
	if v := mountOf(app, dir); v == "" || v != mountOf(fb, dir) {
		t.Errorf("app and sidecar do not share %s", dir)
	}
	if !strings.Contains(conf, "Path              "+dir+"/") {
		t.Errorf("the tail input does not read %s", dir)
	}
	if !slices.ContainsFunc(pod.Volumes, func(v volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name
	}) {
		t.Errorf("no volume from ConfigMap %s", cm.Metadata.Name)
	}
}

func TestDockerCompose(t *testing.T) {
	type service struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
	}
	type compose struct {
		Services map[string]service `yaml:"services"`
		Volumes  map[string]any     `yaml:"volumes"`
	}
	docs := decodeFile[compose](t, filepath.Join("deploy", "docker-compose.yaml"))
	if len(docs) != 1 {
		t.Fatalf("%d documents", len(docs))
	}
	svcs := docs[0].Services
	for _, name := range []string{"loki", "grafana", "mu-api"} {
		if _, ok := svcs[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	if img := svcs["loki"].Image; !strings.HasPrefix(img, "grafana/loki:") {
		t.Errorf("loki image %q", img)
	}
	if img := svcs["grafana"].Image; !strings.HasPrefix(img, "grafana/grafana:") {
		t.Errorf("grafana image %q", img)
	}

	// mu-api is built from the repository root with this directory's Dockerfile.
	api := svcs["mu-api"]
	if api.Build == nil {
		t.Fatal("mu-api has no build")
	}
	ctxDir := filepath.Join("deploy", filepath.FromSlash(api.Build.Context))
	if abs, _ := filepath.Abs(ctxDir); abs != moduleRoot(t) {
		t.Errorf("build context %s is not the module root", api.Build.Context)
	}
	if _, err := os.Stat(filepath.Join(ctxDir, filepath.FromSlash(api.Build.Dockerfile))); err != nil {
		t.Errorf("dockerfile: %v", err)
	}
	if api.Environment["LOKI_URL"] != "http://loki:3100" {
		t.Errorf("mu-api LOKI_URL %q", api.Environment["LOKI_URL"])
	}
	setEnv(t, api.Environment)
	if _, err := loadConfig(); err != nil {
		t.Errorf("mu-api environment does not load: %v", err)
	}
	spool := api.Environment["LOKI_SPOOL_DIR"]
	if !slices.ContainsFunc(api.Volumes, func(v string) bool { return strings.HasSuffix(v, ":"+spool) }) {
		t.Errorf("no volume at LOKI_SPOOL_DIR %s", spool)
	}
	for _, v := range api.Volumes {
		name, _, _ := strings.Cut(v, ":")
		if _, ok := docs[0].Volumes[name]; !ok && !strings.HasPrefix(name, ".") {
			t.Errorf("volume %s is not declared", name)
		}
	}

	// Grafana's provisioning file exists and names the compose Loki.
	var provisioned string
	for _, v := range svcs["grafana"].Volumes {
		src, dst, _ := strings.Cut(v, ":")
		if strings.HasPrefix(dst, "/etc/grafana/provisioning/datasources/") {
			provisioned = filepath.Join("deploy", filepath.FromSlash(src))
		}
	}
	if provisioned == "" {
		t.Fatal("grafana mounts no data source provisioning file")
	}
	type datasources struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, URL, Access string
		} `yaml:"datasources"`
	}
	ds := decodeFile[datasources](t, provisioned)
	if len(ds) != 1 || ds[0].APIVersion != 1 || len(ds[0].Datasources) != 1 {
		t.Fatalf("provisioning %+v", ds)
	}
	if d := ds[0].Datasources[0]; d.Type != "loki" || d.URL != "http://loki:3100" || d.Access != "proxy" {
		t.Errorf("data source %+v", d)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(froms) < 2 {
		t.Errorf("%d stages, want a multi-stage build", len(froms))
	}
	for _, want := range []string{"./examples/muapi", "CGO_ENABLED=0", "USER 65532"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}
