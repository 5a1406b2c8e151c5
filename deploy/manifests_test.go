package deploy

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rosetta-gateway/rosetta/config"
)

// The manifests are decoded into the structs below with unknown fields
// rejected, so a misspelt or misplaced key (readinessprobe, a probe under
// the pod instead of the container) fails the test. The structs hold only
// the fields the manifests use: a new field needs a line here too.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type configMap struct {
	header `yaml:",inline"`
	Data   map[string]string `yaml:"data"`
}

type deployment struct {
	header `yaml:",inline"`
	Spec   struct {
		Replicas *int          `yaml:"replicas"`
		Selector labelSelector `yaml:"selector"`
		Strategy struct {
			Type          string `yaml:"type"`
			RollingUpdate *struct {
				MaxSurge       string `yaml:"maxSurge"`
				MaxUnavailable string `yaml:"maxUnavailable"`
			} `yaml:"rollingUpdate"`
		} `yaml:"strategy"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               *struct {
		RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
		RunAsUser      *int  `yaml:"runAsUser"`
		RunAsGroup     *int  `yaml:"runAsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	TopologySpreadConstraints []struct {
		MaxSkew           int           `yaml:"maxSkew"`
		TopologyKey       string        `yaml:"topologyKey"`
		WhenUnsatisfiable string        `yaml:"whenUnsatisfiable"`
		LabelSelector     labelSelector `yaml:"labelSelector"`
	} `yaml:"topologySpreadConstraints"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name     string `yaml:"name"`
				Key      string `yaml:"key"`
				Optional bool   `yaml:"optional"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext *struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		// Port is a number or a container port's name.
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type service struct {
	header `yaml:",inline"`
	Spec   struct {
		Type     string            `yaml:"type"`
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type podDisruptionBudget struct {
	header `yaml:",inline"`
	Spec   struct {
		MaxUnavailable string        `yaml:"maxUnavailable"`
		MinAvailable   string        `yaml:"minAvailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// apiVersions are the kinds the manifests may hold, with their API
// version. Redis is not one of them: the gateway refers to a Redis run
// apart from it.
var apiVersions = map[string]string{
	"ConfigMap":           "v1",
	"Deployment":          "apps/v1",
	"Service":             "v1",
	"PodDisruptionBudget": "policy/v1",
}

// manifests is every document of kubernetes/*.yaml, decoded.
type manifests struct {
	configMaps  []configMap
	deployments []deployment
	services    []service
	pdbs        []podDisruptionBudget
}

// decodeStrict decodes one document into v, rejecting unknown fields.
func decodeStrict(doc *yaml.Node, v any) error {
	raw, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/ (%v)", err)
	}
	var m manifests
	names := map[string]string{} // kind/name → file
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			var h struct {
				header `yaml:",inline"`
				Rest   map[string]any `yaml:",inline"`
			}
			if err := doc.Decode(&h); err != nil {
				t.Fatalf("%s: document %d: %v", file, i, err)
			}
			where := file + ": " + h.Kind + " " + h.Metadata.Name
			if h.Kind == "" || h.APIVersion == "" || h.Metadata.Name == "" {
				t.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", file, i)
				continue
			}
			want, ok := apiVersions[h.Kind]
			if !ok {
				t.Errorf("%s: kind %s is not one the test knows (add it to apiVersions and check it)", where, h.Kind)
				continue
			}
			if h.APIVersion != want {
				t.Errorf("%s: apiVersion %s, want %s", where, h.APIVersion, want)
			}
			if prev, dup := names[h.Kind+"/"+h.Metadata.Name]; dup {
				t.Errorf("%s: also defined in %s", where, prev)
			}
			names[h.Kind+"/"+h.Metadata.Name] = file
			switch h.Kind {
			case "ConfigMap":
				var v configMap
				err = decodeStrict(&doc, &v)
				m.configMaps = append(m.configMaps, v)
			case "Deployment":
				var v deployment
				err = decodeStrict(&doc, &v)
				m.deployments = append(m.deployments, v)
			case "Service":
				var v service
				err = decodeStrict(&doc, &v)
				m.services = append(m.services, v)
			case "PodDisruptionBudget":
				var v podDisruptionBudget
				err = decodeStrict(&doc, &v)
				m.pdbs = append(m.pdbs, v)
			}
			if err != nil {
				t.Errorf("%s: %v", where, err)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(m.deployments) != 1 || len(m.configMaps) != 1 || len(m.services) != 1 {
		t.Fatalf("want one Deployment, one ConfigMap and one Service, got %d, %d and %d",
			len(m.deployments), len(m.configMaps), len(m.services))
	}
	return m
}

// subset reports whether every label of sel is in labels, and sel is
// not empty.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// portOf returns the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: port %v", addr, err)
	}
	return n
}

// resolvePort returns the container port a probe or Service names: a
// number, or a container port's name. 0 when it names none.
func resolvePort(c container, port string) int {
	for _, p := range c.Ports {
		if p.Name == port || strconv.Itoa(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	return 0
}

// gatewayConfig is the ConfigMap's config file as the pods see it: its
// path in the container and its contents.
type gatewayConfig struct {
	file string
	data []byte
}

// mountedConfig returns the config file the Deployment mounts from the
// ConfigMap at the path the image's ENTRYPOINT reads (--config).
func mountedConfig(t *testing.T, m manifests, c container, volumes map[string]string) gatewayConfig {
	t.Helper()
	file := entrypointConfig(t, readDockerfile(t))
	dir, key := path.Split(file)
	cm := m.configMaps[0]
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) != path.Clean(dir) {
			continue
		}
		if volumes[vm.Name] != cm.Metadata.Name {
			t.Fatalf("volume %s mounted at %s is not the ConfigMap %s", vm.Name, vm.MountPath, cm.Metadata.Name)
		}
		if vm.SubPath != "" {
			t.Errorf("volume %s: subPath mounts never see ConfigMap updates; mount the directory", vm.Name)
		}
		if !vm.ReadOnly {
			t.Errorf("volume %s: mount it readOnly", vm.Name)
		}
		data, ok := cm.Data[key]
		if !ok {
			t.Fatalf("ConfigMap %s has no key %q, which the image reads as %s", cm.Metadata.Name, key, file)
		}
		return gatewayConfig{file: file, data: []byte(data)}
	}
	t.Fatalf("container %s mounts nothing at %s, where the image's ENTRYPOINT reads --config %s", c.Name, dir, file)
	return gatewayConfig{}
}

// TestManifests checks that the manifests agree with each other and with
// the Dockerfile, and that the config they ship passes Rosetta's own
// validation with the environment the Deployment gives it.
func TestManifests(t *testing.T) {
	m := loadManifests(t)
	d := m.deployments[0]
	where := "Deployment " + d.Metadata.Name
	spec := d.Spec.Template.Spec
	podLabels := d.Spec.Template.Metadata.Labels

	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("%s: replicas must be set, at least 2 (a fleet)", where)
	}
	if !subset(d.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("%s: selector %v does not select the pod template's labels %v", where, d.Spec.Selector.MatchLabels, podLabels)
	}
	if d.Spec.Strategy.Type != "RollingUpdate" || d.Spec.Strategy.RollingUpdate == nil {
		t.Errorf("%s: want strategy RollingUpdate with rollingUpdate set", where)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", where)
	}
	// Kubernetes verifies runAsNonRoot from the image's USER only when
	// that is numeric; distroless's "nonroot" needs runAsUser.
	final := readDockerfile(t)
	if users := final[len(final)-1].all("USER"); len(users) > 0 {
		name, _, _ := strings.Cut(users[len(users)-1], ":")
		if _, err := strconv.Atoi(name); err != nil {
			if sc := spec.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Errorf("%s: the image's USER %s is a name: set the pod's securityContext.runAsUser (non-zero), or the kubelet refuses to start it with runAsNonRoot", where, name)
			}
		}
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: want one container, got %d", where, len(spec.Containers))
	}
	c := spec.Containers[0]
	where += " container " + c.Name

	// The image's ENTRYPOINT holds the config path and log format.
	if c.Image == "" || strings.ContainsAny(c.Image, " \t") {
		t.Errorf("%s: image %q", where, c.Image)
	}
	if len(c.Command) > 0 {
		t.Errorf("%s: command replaces the image's ENTRYPOINT (and its --config path); use args", where)
	}
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: securityContext must set readOnlyRootFilesystem: true and allowPrivilegeEscalation: false", where)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("%s: resources.requests.%s is not set", where, r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Errorf("%s: resources.limits.memory is not set", where)
	}

	// The container's ports are the image's EXPOSE ports.
	ports := map[int]string{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = p.Name
	}
	exposed := exposedPorts(t, readDockerfile(t))
	for p := range ports {
		if !exposed[p] {
			t.Errorf("%s: port %d is not EXPOSEd by the Dockerfile", where, p)
		}
	}
	for p := range exposed {
		if _, ok := ports[p]; !ok {
			t.Errorf("Dockerfile EXPOSEs %d, which the container does not declare", p)
		}
	}

	// The environment the config expands: values as given, secrets as
	// stand-ins. Optional secrets are checked both present and absent.
	env := map[string]string{}
	var optional []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			if ref.Name == "" || ref.Key == "" {
				t.Errorf("%s: env %s: secretKeyRef needs name and key", where, e.Name)
			}
			env[e.Name] = "test-" + ref.Key
			if ref.Optional {
				optional = append(optional, e.Name)
			}
		default:
			t.Errorf("%s: env %s: valueFrom other than secretKeyRef: teach the test its stand-in value", where, e.Name)
		}
	}
	if _, ok := env["ADMIN_TOKEN"]; !ok {
		t.Errorf("%s: no ADMIN_TOKEN in env", where)
	}

	volumes := map[string]string{}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			volumes[v.Name] = v.ConfigMap.Name
		}
	}
	gc := mountedConfig(t, m, c, volumes)
	cfg := parseConfig(t, gc, env)
	without := map[string]string{}
	for k, v := range env {
		without[k] = v
	}
	for _, k := range optional {
		delete(without, k)
	}
	if len(optional) > 0 {
		parseConfig(t, gc, without)
	}

	// The config's listener and admin ports are the container's.
	if len(cfg.Listeners) != 1 {
		t.Fatalf("config: want one listener, got %d", len(cfg.Listeners))
	}
	listenPort := portOf(t, cfg.Listeners[0].Address)
	if _, ok := ports[listenPort]; !ok {
		t.Errorf("config: listener port %d is not a container port", listenPort)
	}
	if cfg.Admin == nil {
		t.Fatal("config: no admin block: the probes need the admin listener")
	}
	adminPort := portOf(t, cfg.Admin.Address)
	if _, ok := ports[adminPort]; !ok {
		t.Errorf("config: admin port %d is not a container port", adminPort)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Address); host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("config: admin address %s: the kubelet probes the pod IP; bind 0.0.0.0", cfg.Admin.Address)
	}

	// Probes: liveness (and startup) on /healthz, readiness on /readyz,
	// both on the admin port.
	for _, p := range []struct {
		name, path string
		probe      *probe
		required   bool
	}{
		{"startupProbe", "/healthz", c.StartupProbe, false},
		{"livenessProbe", "/healthz", c.LivenessProbe, true},
		{"readinessProbe", "/readyz", c.ReadinessProbe, true},
	} {
		if p.probe == nil {
			if p.required {
				t.Errorf("%s: no %s", where, p.name)
			}
			continue
		}
		if p.probe.HTTPGet == nil {
			t.Errorf("%s: %s: want httpGet", where, p.name)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s: %s: path %q, want %q", where, p.name, p.probe.HTTPGet.Path, p.path)
		}
		if got := resolvePort(c, p.probe.HTTPGet.Port); got != adminPort {
			t.Errorf("%s: %s: port %q is %d, want the admin port %d", where, p.name, p.probe.HTTPGet.Port, got, adminPort)
		}
	}

	// The Service selects the pods and exposes the listener, not the
	// admin port.
	s := m.services[0]
	if s.Spec.Type != "" && s.Spec.Type != "ClusterIP" {
		t.Errorf("Service %s: type %s, want ClusterIP", s.Metadata.Name, s.Spec.Type)
	}
	if !subset(s.Spec.Selector, podLabels) {
		t.Errorf("Service %s: selector %v does not select the pods %v", s.Metadata.Name, s.Spec.Selector, podLabels)
	}
	servesListener := false
	for _, p := range s.Spec.Ports {
		switch resolvePort(c, p.TargetPort) {
		case 0:
			t.Errorf("Service %s: port %s: targetPort %q is no container port", s.Metadata.Name, p.Name, p.TargetPort)
		case adminPort:
			t.Errorf("Service %s: port %s exposes the admin port", s.Metadata.Name, p.Name)
		case listenPort:
			servesListener = true
		}
	}
	if !servesListener {
		t.Errorf("Service %s: no port targets the listener's port %d", s.Metadata.Name, listenPort)
	}

	for _, pdb := range m.pdbs {
		if !subset(pdb.Spec.Selector.MatchLabels, podLabels) {
			t.Errorf("PodDisruptionBudget %s: selector does not select the pods", pdb.Metadata.Name)
		}
		if (pdb.Spec.MaxUnavailable == "") == (pdb.Spec.MinAvailable == "") {
			t.Errorf("PodDisruptionBudget %s: set one of maxUnavailable and minAvailable", pdb.Metadata.Name)
		}
	}

	// Shared state lives in a Redis the manifests refer to: the example
	// shows both uses of it.
	if cfg.Redis == nil {
		t.Fatal("config: no redis block")
	}
	if host, _, _ := net.SplitHostPort(cfg.Redis.Address); host == "" || host == "localhost" || net.ParseIP(host) != nil {
		t.Errorf("config: redis address %s: refer to the Redis Service by name", cfg.Redis.Address)
	}
	var redisLimit, redisCache bool
	for _, p := range allPlugins(cfg) {
		if p.RateLimiting != nil && p.RateLimiting.Policy == "redis" {
			redisLimit = true
		}
		if p.ProxyCache != nil && p.ProxyCache.Store == "redis" {
			redisCache = true
		}
	}
	if !redisLimit || !redisCache {
		t.Errorf("config: want a rate-limiting with policy: redis (%v) and a proxy-cache with store: redis (%v)", redisLimit, redisCache)
	}
	for name, u := range cfg.Upstreams {
		for _, tg := range u.Targets {
			host, _, _ := net.SplitHostPort(tg.Address)
			if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
				t.Errorf("config: upstream %s: target %s is the pod itself; refer to a Service", name, tg.Address)
			}
		}
	}
}

func allPlugins(cfg *config.Config) []config.Plugin {
	ps := append([]config.Plugin(nil), cfg.Plugins...)
	for _, r := range cfg.Routes {
		ps = append(ps, r.Plugins...)
	}
	return ps
}

// parseConfig runs the config through config.Parse, as `rosetta serve`
// would in the pod, with env as the environment; validation must pass
// without warnings.
func parseConfig(t *testing.T, gc gatewayConfig, env map[string]string) *config.Config {
	t.Helper()
	data := gc.data
	token := ""
	if _, ok := reflect.TypeOf(config.Admin{}).FieldByName("Token"); !ok {
		// admin.token is being added to the config schema with the admin
		// listener; until it is there, check the rest of the config.
		t.Log("config.Admin has no Token field yet: admin.token left out of the check")
		data = withoutAdminToken(t, data)
	} else {
		token = "${ADMIN_TOKEN}"
	}
	cfg, err := config.Parse(gc.file, data, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		t.Fatalf("ConfigMap config with env %v:\n%v", slices.Sorted(maps.Keys(env)), err)
	}
	for _, w := range cfg.Warnings {
		t.Errorf("ConfigMap config: warning: %s", w)
	}
	if token != "" && cfg.Admin != nil {
		got := reflect.ValueOf(cfg.Admin).Elem().FieldByName("Token").String()
		if got != env["ADMIN_TOKEN"] {
			t.Errorf("config: admin.token is %q, want ${ADMIN_TOKEN} (from the Secret)", got)
		}
	}
	return cfg
}

// withoutAdminToken returns the config with the token key of its admin
// block removed.
func withoutAdminToken(t *testing.T, data []byte) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "admin" {
			continue
		}
		admin := root.Content[i+1]
		for j := 0; j+1 < len(admin.Content); j += 2 {
			if admin.Content[j].Value == "token" {
				admin.Content = append(admin.Content[:j], admin.Content[j+2:]...)
				break
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
