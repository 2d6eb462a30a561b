package stagingtest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/node"
)

const (
	composeFile = "../compose.yaml"
	targetsFile = "../prometheus/targets/staging.json"
	// metricsPort is where every zzim service serves /metrics (ZZIM_METRICS).
	metricsPort = "9100"
)

// composeSpec is the part of a compose file these tests read.
type composeSpec struct {
	XZzimEnv map[string]string         `yaml:"x-zzim-env"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	PullPolicy  string            `yaml:"pull_policy"`
	Restart     string            `yaml:"restart"`
	Profiles    []string          `yaml:"profiles"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func readCompose(t *testing.T) composeSpec {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatalf("read compose file: %v", err)
	}
	var spec composeSpec
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("parse %s: %v", composeFile, err)
	}
	if len(spec.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return spec
}

// targetGroup is one entry of a Prometheus file_sd JSON file.
type targetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// readTargets lists the scrape targets of the staging deployment.
func readTargets(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(targetsFile)
	if err != nil {
		t.Fatalf("read targets: %v", err)
	}
	var groups []targetGroup
	if err := json.Unmarshal(b, &groups); err != nil {
		t.Fatalf("parse %s: %v", targetsFile, err)
	}
	var out []string
	for _, g := range groups {
		out = append(out, g.Targets...)
	}
	sort.Strings(out)
	return out
}

// zzimServices are the compose services running the zzim image, by name.
func zzimServices(spec composeSpec) map[string]composeService {
	out := map[string]composeService{}
	for name, s := range spec.Services {
		if s.Image == "zzim/zzim:dev" {
			out[name] = s
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestComposeServices: every role of the topology the processes are given
// runs as one service named role-slot with the matching serve command, and
// nothing else runs the zzim image.
func TestComposeServices(t *testing.T) {
	spec := readCompose(t)
	topoText := spec.XZzimEnv["ZZIM_TOPOLOGY"]
	topo, err := cluster.ParseTopology(topoText, nil)
	if err != nil {
		t.Fatalf("ZZIM_TOPOLOGY %q: %v", topoText, err)
	}
	want := map[node.Role]int{node.RoleEntry: 2, node.RoleHTTPEntry: 1, node.RoleLogic: 3, node.RoleExtLogic: 2, node.RoleDas: 2}
	for r, n := range want {
		if topo[r] != n {
			t.Errorf("topology %s: got %d slots, want %d", r, topo[r], n)
		}
	}
	zz := zzimServices(spec)
	var wantNames []string
	for _, a := range cluster.Addrs(topo) {
		name := a.String()
		wantNames = append(wantNames, name)
		s, ok := zz[name]
		if !ok {
			t.Errorf("no service %s", name)
			continue
		}
		t.Run(name, func(t *testing.T) {
			wantCmd := []string{"serve", string(a.Role), "--slot", fmt.Sprint(a.Slot)}
			if len(s.Command) < len(wantCmd) || strings.Join(s.Command[:len(wantCmd)], " ") != strings.Join(wantCmd, " ") {
				t.Errorf("command: got %q, want it to start with %q", s.Command, wantCmd)
			}
			if s.Environment["ZZIM_TOPOLOGY"] != topoText {
				t.Errorf("ZZIM_TOPOLOGY: got %q, want the shared %q", s.Environment["ZZIM_TOPOLOGY"], topoText)
			}
			if a.Role == node.RoleDas && s.Environment["ZZIM_MYSQL"] == "" {
				t.Errorf("das without ZZIM_MYSQL: %d das slots would keep disagreeing stores in memory", topo[node.RoleDas])
			}
			if (a.Role == node.RoleEntry || a.Role == node.RoleHTTPEntry) && len(s.Ports) != 1 {
				t.Errorf("ports: got %q, want one published port", s.Ports)
			}
		})
	}
	sort.Strings(wantNames)
	if got := sortedKeys(zz); strings.Join(got, " ") != strings.Join(wantNames, " ") {
		t.Errorf("services running zzim: got %v, want %v", got, wantNames)
	}
	for _, dep := range []string{"mariadb", "redis", "nats", "prometheus", "grafana"} {
		if _, ok := spec.Services[dep]; !ok {
			t.Errorf("no service %s", dep)
		}
	}
}

// haServices are the replicated dependencies' extra nodes (profile ha).
var haServices = map[string]bool{"mariadb-replica": true, "nats-1": true, "nats-2": true}

// TestComposeLocalImagesHealthRestart: every service has a health check and
// a restart policy; every image outside the grafana profile is a local
// zzim/*:dev one that compose never pulls; only the replicated
// dependencies' extra nodes are behind the profile ha.
func TestComposeLocalImagesHealthRestart(t *testing.T) {
	spec := readCompose(t)
	for _, name := range sortedKeys(spec.Services) {
		s := spec.Services[name]
		t.Run(name, func(t *testing.T) {
			if s.Restart == "" || s.Restart == "no" {
				t.Errorf("restart: got %q, want a policy", s.Restart)
			}
			if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
				t.Errorf("no healthcheck")
			}
			if name == "grafana" {
				if strings.Join(s.Profiles, ",") != "grafana" {
					t.Errorf("profiles: got %q, want only grafana (its image needs a registry)", s.Profiles)
				}
				return
			}
			switch {
			case haServices[name] && strings.Join(s.Profiles, ",") != "ha":
				t.Errorf("profiles: got %q, want only ha", s.Profiles)
			case !haServices[name] && len(s.Profiles) != 0:
				t.Errorf("profiles: got %q, want none (on by default)", s.Profiles)
			}
			if !strings.HasPrefix(s.Image, "zzim/") || !strings.HasSuffix(s.Image, ":dev") {
				t.Errorf("image: got %q, want a local zzim/*:dev image", s.Image)
			}
			if s.PullPolicy != "never" {
				t.Errorf("pull_policy: got %q, want never", s.PullPolicy)
			}
		})
	}
}

// TestPrometheusTargets: Prometheus scrapes exactly the zzim services.
func TestPrometheusTargets(t *testing.T) {
	spec := readCompose(t)
	var want []string
	for _, name := range sortedKeys(zzimServices(spec)) {
		if got := spec.Services[name].Environment["ZZIM_METRICS"]; got != "0.0.0.0:"+metricsPort {
			t.Errorf("%s ZZIM_METRICS: got %q, want 0.0.0.0:%s", name, got, metricsPort)
		}
		want = append(want, name+":"+metricsPort)
	}
	if got := readTargets(t); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("targets: got %v, want %v", got, want)
	}
}

// TestDockerfilesNameNoRegistryImage: a Dockerfile builds FROM the local
// Debian base only, so a machine without a registry builds every image.
func TestDockerfilesNameNoRegistryImage(t *testing.T) {
	files, err := filepath.Glob("../*/Dockerfile")
	if err != nil || len(files) == 0 {
		t.Fatalf("glob Dockerfiles: got %d files, err %v; want some", len(files), err)
	}
	from := regexp.MustCompile(`(?im)^\s*FROM\s+(\S+)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		ms := from.FindAllStringSubmatch(string(b), -1)
		if len(ms) == 0 {
			t.Errorf("%s: no FROM", f)
		}
		for _, m := range ms {
			if m[1] != "zzim/debian-base:bookworm" {
				t.Errorf("%s: FROM %s, want zzim/debian-base:bookworm", f, m[1])
			}
		}
	}
}
