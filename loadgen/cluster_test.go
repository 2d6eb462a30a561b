package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zzim/zzim/system/cluster"
)

const testSecret = "loadgen-test-secret"

// startCluster runs zzim's default topology in this process on free
// loopback ports (embedded NATS, in-memory store and presence).
func startCluster(t *testing.T) (tcp []string, httpURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{NATSDir: t.TempDir(), NeedStore: true, Name: "loadgen-test"})
	if err != nil {
		t.Fatalf("deps: %v", err)
	}
	t.Cleanup(deps.Close)
	cfg := cluster.Config{Topology: cluster.DefaultTopology(), Secret: []byte(testSecret)}
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{Deps: deps.Deps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	deadline := time.Now().Add(10 * time.Second)
	for l.ReadyCheck()(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready after 10s: %v", l.ReadyCheck()(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l.Entries(), "http://" + l.HTTPEntries()[0]
}

// scaledFlashSale is flash-sale-spike scaled down: baseline 100/s, a 5×
// spike for 3 s, 10 s in all.
func scaledFlashSale(t *testing.T) *Profile {
	t.Helper()
	p, err := LoadProfile("flash-sale-spike")
	if err != nil {
		t.Fatal(err)
	}
	p.SetRate(100)
	p.SetDuration(10 * time.Second)
	p.Workload.Spikes = []Spike{{At: Duration(4 * time.Second), For: Duration(3 * time.Second), Multiplier: 5}}
	p.Workload.Users = 100
	p.Workload.Conversations = 200
	p.Workload.StartOver = Duration(500 * time.Millisecond)
	p.Drain = Duration(5 * time.Second)
	return p
}

// TestFlashSaleSpikeVerify: the spike runs to the end against a cluster,
// the checkers pass, and summary.json shows the spike window's achieved
// rate near 5× the baseline's.
func TestFlashSaleSpikeVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~15 s")
	}
	tcp, httpURL := startCluster(t)
	out := t.TempDir()
	res, err := Run(context.Background(), Config{
		TCP: tcp, HTTP: httpURL, Secret: []byte(testSecret), Profile: scaledFlashSale(t), Verify: true, Seed: 7,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := res.WriteOut(out); err != nil {
		t.Fatalf("WriteOut: %v", err)
	}
	if res.Verdict == nil || !res.Verdict.Pass {
		var b strings.Builder
		if res.Verdict != nil {
			_ = res.Verdict.Report(&b)
		}
		t.Fatalf("verify: got %s, want pass", b.String())
	}
	for _, f := range []string{"summary.json", "plot.png", "ack.hgrm", "deliver.hgrm", "lag.hgrm", "history.jsonl", "verdict.txt"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if len(s.Windows) != 2 || s.Windows[0].Name != "baseline" || s.Windows[0].Seconds == 0 || s.Windows[1].Seconds == 0 {
		t.Fatalf("windows: got %+v, want a baseline and one spike with seconds", s.Windows)
	}
	base, spike := s.Windows[0].AchievedRate, s.Windows[1].AchievedRate
	t.Logf("baseline %.1f/s, spike %.1f/s (ratio %.2f), ack p99 %.1fms, deliver p99 %.1fms; %s",
		base, spike, spike/base, s.Latency[SeriesAck].P99, s.Latency[SeriesDeliver].P99, res.Verdict.Line())
	if ratio := spike / base; math.Abs(ratio-5) > 0.75 {
		t.Errorf("spike/baseline achieved rate: got %.2f (%.1f/%.1f), want 5 ± 0.75", ratio, spike, base)
	}
	if len(s.Seconds) < 10 {
		t.Errorf("per-second rows: got %d, want at least 10", len(s.Seconds))
	}
	if s.Acked == 0 || s.Delivered == 0 {
		t.Errorf("acked %d, delivered %d: want both > 0", s.Acked, s.Delivered)
	}
	// Every ack and delivery is also measured from the send's last write
	// (the tracker kept each send's times until both arrived).
	if n := s.Latency[SeriesAckRaw].Count; n != s.Acked || s.Generator.Untracked != 0 {
		t.Errorf("ack_raw: got %d of %d acks (untracked %d), want all", n, s.Acked, s.Generator.Untracked)
	}
	if n := s.Latency[SeriesDeliverRaw].Count; n != s.Delivered {
		t.Errorf("deliver_raw: got %d of %d deliveries, want all", n, s.Delivered)
	}
	// An impossible threshold is broken.
	th, _ := ParseThreshold("p99_ack<1us")
	if JudgeAll([]Threshold{th}, res.Summary) {
		t.Errorf("threshold p99_ack<1us: got pass, want broken")
	}
}

// zzimBuilt is set once zzimBinary ran.
var zzimBuilt atomic.Bool

// zzimBinary builds cmd/zzim once per test binary.
var zzimBinary = sync.OnceValues(func() (string, error) {
	zzimBuilt.Store(true)
	dir, err := os.MkdirTemp("", "zzim-loadgen-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "zzim")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/zzim/zzim/cmd/zzim")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if !zzimBuilt.Load() {
		os.Exit(code)
	}
	if bin, err := zzimBinary(); err == nil && bin != "" {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// startUp runs `zzim up` as a child process on free ports and returns it
// with its entry addresses and httpentry URL.
func startUp(t *testing.T) (*exec.Cmd, []string, string) {
	t.Helper()
	bin, err := zzimBinary()
	if err != nil {
		t.Fatalf("go build cmd/zzim: %v", err)
	}
	cmd := exec.Command(bin, "up", "--app-port", "0", "--http-port", "0", "--metrics", "off",
		"--secret", testSecret, "--log-level", "error", "--drain", "0s", "--data-dir", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var tcp []string
	var httpURL string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	timeout := time.After(20 * time.Second)
	for tcp == nil || httpURL == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("zzim up exited before printing its addresses")
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "apps (TCP):"); ok {
				tcp = strings.Fields(v)
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "long-poll (HTTP):"); ok {
				httpURL = strings.Fields(v)[0]
			}
		case <-timeout:
			t.Fatalf("zzim up printed no addresses within 20s")
		}
	}
	go func() {
		for range lines {
		}
	}()
	return cmd, tcp, httpURL
}

// TestCoordinatedOmission: the server process is stopped (SIGSTOP) for 2 s
// mid-run. Each TCP client keeps one send in flight (inflight_max 1, like
// wrk's connections), so only one send per client was on the wire during
// the stall: raw latency (from the write) hides the stall, latency from
// the intended time does not.
func TestCoordinatedOmission(t *testing.T) {
	if testing.Short() {
		t.Skip("builds zzim and runs it for ~12 s")
	}
	up, tcp, _ := startUp(t)
	p := &Profile{Name: "pause", Duration: Duration(9 * time.Second), Drain: Duration(5 * time.Second), Workload: Workload{
		Users: 20, Conversations: 40, Rate: 500, InflightMax: 1, StartOver: Duration(200 * time.Millisecond),
	}}
	stall := make(chan error, 1)
	res, err := Run(context.Background(), Config{
		TCP: tcp, Secret: []byte(testSecret), Profile: p, Seed: 3,
		OnStart: func(time.Time) {
			go func() {
				time.Sleep(3 * time.Second)
				if err := up.Process.Signal(syscall.SIGSTOP); err != nil {
					stall <- err
					return
				}
				time.Sleep(2 * time.Second)
				stall <- up.Process.Signal(syscall.SIGCONT)
			}()
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := <-stall; err != nil {
		t.Fatalf("pause: %v", err)
	}
	s := res.Summary
	intended, raw := s.Latency[SeriesAck].P99, s.Latency[SeriesAckRaw].P99
	t.Logf("ack p99: from intended %.1fms, raw %.1fms; deliver p99: intended %.1fms, raw %.1fms; acked %d of %d offered",
		intended, raw, s.Latency[SeriesDeliver].P99, s.Latency[SeriesDeliverRaw].P99, s.Acked, s.Offered)
	if s.Acked < s.Offered*95/100 {
		t.Errorf("acked %d of %d offered: want at least 95%%", s.Acked, s.Offered)
	}
	if intended < 1000 {
		t.Errorf("ack p99 from the intended time: got %.1fms, want >= 1000ms (a 2 s stall)", intended)
	}
	if raw*5 > intended {
		t.Errorf("ack p99 raw %.1fms vs intended %.1fms: want raw at most a fifth", raw, intended)
	}
}

// TestLoadCommandExitCodes: `zzim load` exits 1 on an impossible
// threshold and 2 on a usage error.
func TestLoadCommandExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds zzim and runs it")
	}
	_, tcp, httpURL := startUp(t)
	bin, _ := zzimBinary()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"impossible threshold", []string{"--threshold", "p99_ack<1us"}, 1},
		{"bad threshold", []string{"--threshold", "p99_ack"}, 2},
		{"unknown profile", []string{"--profile", "no-such-profile"}, 2},
		{"thresholds hold", []string{"--threshold", "p99_ack<10s", "--threshold", "achieved_rate>10"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"load", "--tcp", strings.Join(tcp, ","), "--http", httpURL, "--secret", testSecret,
				"--profile", "steady", "--users", "20", "--rate", "50", "--duration", "2s", "--drain", "2s", "--quiet",
				"--out", t.TempDir()}, tt.args...)
			cmd := exec.Command(bin, args...)
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run: %v", err)
			}
			if code != tt.want {
				t.Errorf("exit code: got %d, want %d\n%s", code, tt.want, out)
			}
		})
	}
}
