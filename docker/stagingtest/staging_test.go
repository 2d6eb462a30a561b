package stagingtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/system/client"
)

// Bounds of the end-to-end staging test: each step has its own, so a hung
// step fails with its name instead of the go test timeout.
const (
	buildTimeout      = 6 * time.Minute
	upTimeout         = 3 * time.Minute
	healthyTimeout    = 2 * time.Minute
	messageTimeout    = 45 * time.Second
	prometheusTimeout = 60 * time.Second
	downTimeout       = 2 * time.Minute
	// stagingSecret is compose.yaml's default ZZIM_SECRET.
	stagingSecret = "zzim-staging-secret"
)

// compose runs docker compose (v2 plugin) or docker-compose (v1) on the
// staging file under one project name.
type compose struct {
	argv    []string // the command and its global flags
	env     []string
	project string
}

// findCompose prefers the v2 plugin and falls back to v1: Debian's
// docker-compose package is v1 (1.29 here), newer machines have the plugin.
func findCompose(ctx context.Context) ([]string, error) {
	for _, argv := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		cmd := exec.CommandContext(ctx, argv[0], append(argv[1:], "version")...)
		if err := cmd.Run(); err == nil {
			return argv, nil
		}
	}
	return nil, fmt.Errorf("neither `docker compose` nor `docker-compose` works")
}

func (c *compose) run(ctx context.Context, args ...string) (string, error) {
	full := append(append(append([]string{}, c.argv[1:]...), "-f", composeFile, "-p", c.project), args...)
	cmd := exec.CommandContext(ctx, c.argv[0], full...)
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", c.argv[0], strings.Join(full, " "), err, out.String())
	}
	return out.String(), nil
}

// freePort asks the kernel for a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestStaging builds the images, brings docker/compose.yaml up under a
// project of its own on free loopback ports, exchanges messages through it
// (TCP entries and the long-poll httpentry), checks Prometheus sees every
// zzim service up and has scraped the traffic, and tears it all down.
func TestStaging(t *testing.T) {
	if os.Getenv("ZZIM_STAGING") == "" {
		t.Skip("set ZZIM_STAGING=1 (make staging-test): builds images and runs the whole deployment")
	}
	start := time.Now()
	step := func(name string, since time.Time) { t.Logf("%-32s %6.1fs", name, time.Since(since).Seconds()) }

	if os.Getenv("ZZIM_STAGING_SKIP_BUILD") == "" {
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		cmd := exec.CommandContext(ctx, "../build.sh")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("../build.sh: %v\n%s", err, out)
		}
		t.Logf("build.sh:\n%s", out)
		step("images built", start)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	argv, err := findCompose(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]int{
		"ZZIM_STAGING_ENTRY0_PORT": freePort(t), "ZZIM_STAGING_ENTRY1_PORT": freePort(t),
		"ZZIM_STAGING_HTTP_PORT": freePort(t), "ZZIM_STAGING_PROMETHEUS_PORT": freePort(t),
	}
	c := &compose{argv: argv, project: fmt.Sprintf("zzim-stagingtest-%d", os.Getpid())}
	c.env = append(os.Environ(), "ZZIM_STAGING_HOST=127.0.0.1", "ZZIM_SECRET="+stagingSecret, "ZZIM_STAGING_LOGIC_BUSINESSES=")
	for k, v := range ports {
		c.env = append(c.env, k+"="+strconv.Itoa(v))
	}
	t.Logf("compose: %s, project %s, ports %v", strings.Join(argv, " "), c.project, ports)

	// Teardown is registered before up, so a failure anywhere (or a
	// half-done up) still removes containers, network and volumes.
	t.Cleanup(func() {
		if t.Failed() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ps, _ := c.run(ctx, "ps")
			logs, _ := c.run(ctx, "logs", "--no-color", "--tail", "30")
			cancel()
			t.Logf("compose ps:\n%s\ncompose logs (last 30 lines each):\n%s", ps, logs)
		}
		downStart := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), downTimeout)
		defer cancel()
		if out, err := c.run(ctx, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
		step("down -v", downStart)
		step("total", start)
	})

	upStart := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), upTimeout)
	_, err = c.run(ctx, "up", "-d")
	cancel()
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	step("compose up -d returned", upStart)

	waitHealthy(t, c, defaultServices(readCompose(t)))
	step("every container healthy", upStart)

	entries := []string{
		fmt.Sprintf("127.0.0.1:%d", ports["ZZIM_STAGING_ENTRY0_PORT"]),
		fmt.Sprintf("127.0.0.1:%d", ports["ZZIM_STAGING_ENTRY1_PORT"]),
	}
	httpURL := fmt.Sprintf("http://127.0.0.1:%d", ports["ZZIM_STAGING_HTTP_PORT"])
	// TCP client ↔ long-poll client, then TCP ↔ TCP across both entries.
	pairs := []struct {
		name string
		a, b client.Config
	}{
		{"tcp<->long-poll", client.Config{Transport: client.TCP, Entries: entries[:1]}, client.Config{Transport: client.LongPoll, HTTP: httpURL, PollWait: 2 * time.Second}},
		{"entry-0<->entry-1", client.Config{Transport: client.TCP, Entries: entries[:1]}, client.Config{Transport: client.TCP, Entries: entries[1:]}},
	}
	for _, p := range pairs {
		msgStart := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), messageTimeout)
		err := exchange(ctx, stagingSecret, p.a, p.b)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		step("messages "+p.name, msgStart)
	}
	step("up to messages delivered", upStart)

	promStart := time.Now()
	promURL := fmt.Sprintf("http://127.0.0.1:%d", ports["ZZIM_STAGING_PROMETHEUS_PORT"])
	waitTargetsUp(t, promURL, readTargets(t))
	// The traffic above reached Prometheus: at least 4 SENDs went through
	// logic (two per pair), summed over the logic targets it scrapes.
	waitQuery(t, promURL, `sum(zzim_logic_sends{job="zzim"})`, 4)
	step("prometheus: targets up, sends", promStart)
}

// defaultServices counts the services up starts without a profile.
func defaultServices(spec composeSpec) int {
	n := 0
	for _, s := range spec.Services {
		if len(s.Profiles) == 0 {
			n++
		}
	}
	return n
}

// waitHealthy waits until the project's n containers all report healthy.
func waitHealthy(t *testing.T, c *compose, n int) {
	t.Helper()
	deadline := time.Now().Add(healthyTimeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		ids, err := c.run(ctx, "ps", "-q")
		if err == nil && strings.TrimSpace(ids) != "" {
			args := append([]string{"inspect", "--format", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}"}, strings.Fields(ids)...)
			var out []byte
			out, err = exec.CommandContext(ctx, "docker", args...).CombinedOutput()
			last = string(out)
		}
		cancel()
		if err == nil && last != "" && !strings.Contains(last, "starting") && !strings.Contains(last, "unhealthy") && !strings.Contains(last, "no-healthcheck") {
			if got := strings.Count(strings.TrimSpace(last), "\n") + 1; got == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every container healthy after %s (err %v):\n%s", healthyTimeout, err, last)
		}
		time.Sleep(time.Second)
	}
}

// waitTargetsUp waits until Prometheus's zzim job has exactly the wanted
// targets, every one up.
func waitTargetsUp(t *testing.T, promURL string, want []string) {
	t.Helper()
	deadline := time.Now().Add(prometheusTimeout)
	var state string
	for {
		got, err := zzimTargets(promURL)
		if err == nil {
			var up, all []string
			for inst, health := range got {
				all = append(all, inst)
				if health == "up" {
					up = append(up, inst)
				}
			}
			sort.Strings(up)
			sort.Strings(all)
			if strings.Join(up, " ") == strings.Join(want, " ") && len(all) == len(want) {
				return
			}
			state = fmt.Sprintf("got %v (up: %v), want all of %v up", got, up, want)
		} else {
			state = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus targets after %s: %s", prometheusTimeout, state)
		}
		time.Sleep(time.Second)
	}
}

// zzimTargets is instance → health of the zzim job's active targets.
func zzimTargets(promURL string) (map[string]string, error) {
	var body struct {
		Status string `json:"status"`
		Data   struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := getJSON(promURL+"/api/v1/targets?state=active", &body); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, tg := range body.Data.ActiveTargets {
		if tg.Labels["job"] == "zzim" {
			out[tg.Labels["instance"]] = tg.Health
		}
	}
	return out, nil
}

// waitQuery waits until the instant query's single value is at least min.
func waitQuery(t *testing.T, promURL, query string, min float64) {
	t.Helper()
	deadline := time.Now().Add(prometheusTimeout)
	var state string
	for {
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		err := getJSON(promURL+"/api/v1/query?query="+url.QueryEscape(query), &body)
		if err == nil && len(body.Data.Result) == 1 {
			s, _ := body.Data.Result[0].Value[1].(string)
			v, perr := strconv.ParseFloat(s, 64)
			if perr == nil && v >= min {
				return
			}
			state = fmt.Sprintf("got %s, want >= %g", s, min)
		} else {
			state = fmt.Sprintf("err %v, %d results", err, len(body.Data.Result))
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus %s after %s: %s", query, prometheusTimeout, state)
		}
		time.Sleep(time.Second)
	}
}

func getJSON(u string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", u, err)
	}
	return nil
}
