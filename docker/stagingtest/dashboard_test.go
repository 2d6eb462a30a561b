package stagingtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.yaml.in/yaml/v3"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/wire"
)

const (
	dashboardFile  = "../grafana/dashboards/zzim.json"
	datasourceFile = "../grafana/provisioning/datasources/prometheus.yaml"
	providerFile   = "../grafana/provisioning/dashboards/zzim.yaml"
	// dashboardMount is where compose.yaml mounts docker/grafana/dashboards.
	dashboardMount = "/etc/grafana/dashboards"
)

type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatalf("read dashboard: %v", err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("parse %s: %v", dashboardFile, err)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s: no panels", dashboardFile)
	}
	return d
}

// exported is what zzim's metrics registry holds: family names with their
// types, and the label values seen per family and label.
type exported struct {
	types  map[string]dto.MetricType
	labels map[string]map[string]map[string]bool // family → label → values
}

// series maps a name a query may use to its family: a histogram family
// name_x is queried as name_x_bucket, _sum and _count.
func (e exported) family(name string) (string, bool) {
	if _, ok := e.types[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if typ, ok := e.types[base]; ok && (typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY && suffix != "_bucket") {
			return base, true
		}
	}
	return "", false
}

// liveMetrics runs a whole zzim cluster in this process (embedded NATS,
// in-memory store and presence), sends a message each way between a TCP
// client and a long-poll client so that every labelled series exists, and
// reads the process's Prometheus registry: the names a dashboard may use
// come from running code, not from a list.
func liveMetrics(t *testing.T) exported {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{NATSDir: t.TempDir(), Redis: cluster.Memory, NeedStore: true, Name: "dashboard-test", Logger: log})
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	t.Cleanup(deps.Close)
	const secret = "dashboard-test-secret"
	cfg := cluster.Config{Topology: cluster.DefaultTopology(), Secret: []byte(secret)}
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{Deps: deps.Deps, Logger: log})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	deadline := time.Now().Add(15 * time.Second)
	for l.ReadyCheck(deps.Pings...)(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready after 15s: %v", l.ReadyCheck(deps.Pings...)(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tcp := client.Config{Transport: client.TCP, Entries: l.Entries()}
	poll := client.Config{Transport: client.LongPoll, HTTP: "http://" + l.HTTPEntries()[0], PollWait: time.Second}
	if err := exchange(ctx, secret, tcp, poll); err != nil {
		t.Fatalf("traffic: %v", err)
	}
	families, err := l.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	e := exported{types: map[string]dto.MetricType{}, labels: map[string]map[string]map[string]bool{}}
	for _, f := range families {
		e.types[f.GetName()] = f.GetType()
		byLabel := map[string]map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if byLabel[lp.GetName()] == nil {
					byLabel[lp.GetName()] = map[string]bool{}
				}
				byLabel[lp.GetName()][lp.GetValue()] = true
			}
		}
		e.labels[f.GetName()] = byLabel
	}
	return e
}

// exchange sends one message from a to b and one back, each side on its
// own transport, and waits until both are delivered.
func exchange(ctx context.Context, secret string, a, b client.Config) error {
	run := fmt.Sprint(time.Now().UnixNano())
	users := []string{"ann" + run[len(run)-6:], "ben" + run[len(run)-6:]}
	conv := "p:" + users[0] + ":" + users[1] + ":staging-" + run
	got := make(chan string, 4)
	var runners []*clientrun.Runner
	defer func() {
		for _, r := range runners {
			r.Stop()
		}
	}()
	for i, cfg := range []client.Config{a, b} {
		user := users[i]
		cfg.User, cfg.Device = user, "dev-"+run
		cfg.Token = wire.SignToken([]byte(secret), user, time.Now().Add(time.Hour))
		cfg.OnDeliver = func(_ client.Env, m *wire.ChatMessage, via string) {
			if m.SenderId != user {
				got <- user + " got " + m.Body + " via " + via
			}
		}
		runners = append(runners, clientrun.Start(cfg, clientrun.Options{}))
	}
	for i, r := range runners {
		body := fmt.Sprintf("hello from %s", users[i])
		var err error
		r.Do(func(c *client.Client, env client.Env) { _, err = c.Send(env, conv, body) })
		if err != nil {
			return fmt.Errorf("%s send: %w", users[i], err)
		}
		select {
		case <-got:
		case <-ctx.Done():
			return fmt.Errorf("%s's message not delivered to %s: %w", users[i], users[1-i], ctx.Err())
		}
	}
	return nil
}

var (
	metricRe   = regexp.MustCompile(`\bzzim_[a-z0-9_]+`)
	selectorRe = regexp.MustCompile(`\b(zzim_[a-z0-9_]+)\{([^}]*)\}`)
	matcherRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!=|!~|=)\s*"([^"]*)"`)
)

// checkExpr returns what is wrong with one query: a metric zzim does not
// export, or an equality or regexp matcher no exported series satisfies
// (a misspelt op or dep label would draw an empty panel forever).
func checkExpr(e exported, expr string) []string {
	var problems []string
	names := metricRe.FindAllString(expr, -1)
	if len(names) == 0 {
		problems = append(problems, "names no zzim metric")
	}
	for _, name := range names {
		if _, ok := e.family(name); !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exported", name))
		}
	}
	for _, sel := range selectorRe.FindAllStringSubmatch(expr, -1) {
		fam, ok := e.family(sel[1])
		if !ok {
			continue
		}
		for _, m := range matcherRe.FindAllStringSubmatch(sel[2], -1) {
			label, op, value := m[1], m[2], m[3]
			values := e.labels[fam][label]
			switch op {
			case "=":
				if !values[value] {
					problems = append(problems, fmt.Sprintf("%s{%s=%q}: no such series (values: %v)", sel[1], label, value, sortedKeys(values)))
				}
			case "=~":
				re, err := regexp.Compile("^(?:" + value + ")$")
				if err != nil {
					problems = append(problems, fmt.Sprintf("%s{%s=~%q}: %v", sel[1], label, value, err))
					continue
				}
				for _, alt := range strings.Split(value, "|") {
					if re.MatchString(alt) && !values[alt] {
						problems = append(problems, fmt.Sprintf("%s{%s=~%q}: no series with %s=%q (values: %v)", sel[1], label, value, label, alt, sortedKeys(values)))
					}
				}
			}
		}
	}
	return problems
}

// TestDashboardQueriesNameExportedMetrics: the dashboard parses, every
// panel queries the provisioned Prometheus, and every query names only
// metrics (and label values) a running zzim exports. The checker is shown
// to reject bad queries against the same registry, so the dashboard cannot
// pass by the checker accepting anything.
func TestDashboardQueriesNameExportedMetrics(t *testing.T) {
	d := readDashboard(t)
	e := liveMetrics(t)
	uid := provisionedDatasourceUID(t)
	for _, p := range d.Panels {
		t.Run(p.Title, func(t *testing.T) {
			if len(p.Targets) == 0 {
				t.Fatalf("no queries")
			}
			if p.Datasource.UID != uid {
				t.Errorf("panel datasource uid: got %q, want %q", p.Datasource.UID, uid)
			}
			for _, q := range p.Targets {
				if q.Datasource.UID != "" && q.Datasource.UID != uid {
					t.Errorf("query %s datasource uid: got %q, want %q", q.RefID, q.Datasource.UID, uid)
				}
				for _, problem := range checkExpr(e, q.Expr) {
					t.Errorf("query %s %q: %s", q.RefID, q.Expr, problem)
				}
			}
		})
	}
	checks := []struct {
		expr string
		ok   bool
	}{
		{`sum(rate(zzim_frames_in_total{op="SEND"}[1m]))`, true},
		{`histogram_quantile(0.99, sum by (le) (rate(zzim_dependency_seconds_bucket{dep=~"store|presence"}[1m])))`, true},
		{`max(zzim_mailbox_depth)`, true},
		{`sum(rate(zzim_frames_in_total{op="SENDS"}[1m]))`, false},
		{`rate(zzim_dependency_seconds_bucket{dep=~"store|disk"}[1m])`, false},
		{`sum(zzim_messages_total)`, false},
		{`zzim_mailbox_depth_bucket`, false},
		{`sum(up)`, false},
	}
	for _, c := range checks {
		t.Run("checker/"+c.expr, func(t *testing.T) {
			problems := checkExpr(e, c.expr)
			if got := len(problems) == 0; got != c.ok {
				t.Errorf("accepted: got %v (%v), want %v", got, problems, c.ok)
			}
		})
	}
}

// TestDashboardCoversTheBrief: the panels show connections, messages/s,
// send latency, queue depths, rejections and failovers.
func TestDashboardCoversTheBrief(t *testing.T) {
	d := readDashboard(t)
	var all []string
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		for _, q := range p.Targets {
			all = append(all, q.Expr)
		}
	}
	text := strings.Join(all, "\n")
	for topic, metric := range map[string]string{
		"connections":  "zzim_connections",
		"messages/s":   `zzim_frames_in_total{op="SEND"}`,
		"send latency": "zzim_dependency_seconds_bucket",
		"queue depths": "zzim_mailbox_depth",
		"rejections":   "zzim_logic_rejected",
		"failovers":    "zzim_entry_failovers",
	} {
		if !strings.Contains(text, metric) {
			t.Errorf("%s: no query uses %s", topic, metric)
		}
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: want both set", d.UID, d.Title)
	}
}

// provisionedDatasourceUID reads the uid Grafana provisions Prometheus as.
func provisionedDatasourceUID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(datasourceFile)
	if err != nil {
		t.Fatalf("read datasource provisioning: %v", err)
	}
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("parse %s: %v", datasourceFile, err)
	}
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("datasources: got %+v, want one prometheus with a uid", ds.Datasources)
	}
	if want := "http://prometheus:9090"; ds.Datasources[0].URL != want {
		t.Errorf("datasource url: got %q, want %q (the compose service)", ds.Datasources[0].URL, want)
	}
	return ds.Datasources[0].UID
}

// TestDashboardProvisioning: Grafana loads dashboards from where compose
// mounts them.
func TestDashboardProvisioning(t *testing.T) {
	b, err := os.ReadFile(providerFile)
	if err != nil {
		t.Fatalf("read dashboard provisioning: %v", err)
	}
	var pv struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	if err := yaml.Unmarshal(b, &pv); err != nil {
		t.Fatalf("parse %s: %v", providerFile, err)
	}
	if len(pv.Providers) != 1 || pv.Providers[0].Type != "file" || pv.Providers[0].Options.Path != dashboardMount {
		t.Fatalf("providers: got %+v, want one file provider at %s", pv.Providers, dashboardMount)
	}
	spec := readCompose(t)
	g, ok := spec.Services["grafana"]
	if !ok {
		t.Fatalf("no grafana service")
	}
	var mounts []string
	for _, v := range g.Volumes {
		mounts = append(mounts, v)
	}
	sort.Strings(mounts)
	for _, want := range []string{"./grafana/dashboards:" + dashboardMount + ":ro", "./grafana/provisioning:/etc/grafana/provisioning:ro"} {
		found := false
		for _, m := range mounts {
			found = found || m == want
		}
		if !found {
			t.Errorf("grafana volumes: got %v, want %s", mounts, want)
		}
	}
}
