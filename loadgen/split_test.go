package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a child process a test started: its log goes to a file, and the
// test's cleanup stops it (SIGTERM, then SIGKILL after grace).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// tail is the end of the process's log.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	return string(b[max(0, len(b)-2000):])
}

// startProc starts bin with args. The child dies with the test process
// (Pdeathsig), and the test's cleanup stops it: SIGTERM, SIGKILL after
// grace (0: SIGKILL at once).
func startProc(t *testing.T, name string, grace time.Duration, bin string, args ...string) *proc {
	t.Helper()
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	logf.Close()
	p := &proc{name: name, cmd: cmd, log: logf.Name()}
	t.Cleanup(func() {
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		if grace > 0 {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
				return
			case <-time.After(grace):
			}
		}
		_ = cmd.Process.Kill()
		<-done
	})
	return p
}

// freePort is a loopback port nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsBinary builds nats-server (the module zzim's go.mod requires) once.
var natsBinary = sync.OnceValues(func() (string, error) {
	zzim, err := zzimBinary() // its temporary directory is removed by TestMain
	if err != nil {
		return "", err
	}
	bin := filepath.Join(filepath.Dir(zzim), "nats-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build nats-server: %s", out)
	}
	return bin, nil
})

// httpGet returns the body of a 200 answer from url.
func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// waitReady polls url until it answers 200.
func waitReady(t *testing.T, p *proc, url string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := httpGet(url)
		if err == nil {
			return
		}
		if p.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v\n%s", p.name, within, err, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// promValue reads one sample (name with its labels, as printed) from
// Prometheus text; ok is false if it is absent.
func promValue(text, sample string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// splitCluster is zzim as separate processes on loopback: nats-server
// (JetStream, fsync always), redis-server, and one `zzim serve` per
// instance of entry=N,httpentry=0,logic=1,extlogic=1,das=1 (das with the
// in-memory store, so exactly one).
type splitCluster struct {
	entries []*proc
	apps    []string // entry i's app address
	metrics []string // entry i's metrics address (with /debug/pprof/)
	others  []*proc  // nats, redis, logic, extlogic, das
}

func startSplitCluster(t *testing.T, entries int) *splitCluster {
	t.Helper()
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("needs redis-server on PATH (apt-get install redis-server): logic and extlogic share presence")
	}
	zzim, err := zzimBinary()
	if err != nil {
		t.Fatalf("go build cmd/zzim: %v", err)
	}
	natsBin, err := natsBinary()
	if err != nil {
		t.Fatal(err)
	}
	sc := &splitCluster{}
	dir := t.TempDir()

	natsPort, natsHTTP := freePort(t), freePort(t)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "listen: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\n",
		natsPort, natsHTTP, filepath.Join(dir, "jetstream")), 0o644); err != nil {
		t.Fatal(err)
	}
	nats := startProc(t, "nats-server", 5*time.Second, natsBin, "--config", conf)
	sc.others = append(sc.others, nats)
	redisPort := freePort(t)
	redis := startProc(t, "redis-server", 5*time.Second, redisBin, "--bind", "127.0.0.1", "--port", strconv.Itoa(redisPort),
		"--save", "", "--appendonly", "no", "--dir", dir)
	sc.others = append(sc.others, redis)
	waitReady(t, nats, fmt.Sprintf("http://127.0.0.1:%d/healthz", natsHTTP), 20*time.Second)

	type inst struct {
		role     string
		slot     int
		internal string
	}
	var insts []inst
	for i := 0; i < entries; i++ {
		insts = append(insts, inst{role: "entry", slot: i})
	}
	insts = append(insts, inst{role: "logic"}, inst{role: "extlogic"}, inst{role: "das"})
	common := []string{"--topology", fmt.Sprintf("entry=%d,httpentry=0,logic=1,extlogic=1,das=1", entries),
		"--secret", testSecret, "--nats", fmt.Sprintf("nats://127.0.0.1:%d", natsPort), "--redis", fmt.Sprintf("127.0.0.1:%d", redisPort),
		"--log-level", "warn", "--log-format", "text", "--drain", "0s"}
	for i := range insts {
		insts[i].internal = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		common = append(common, "--peer", fmt.Sprintf("%s-%d=%s", insts[i].role, insts[i].slot, insts[i].internal))
	}
	type started struct {
		p       *proc
		metrics string
	}
	var all []started
	// Dependencies of entry first, so its logins find logic at once.
	for _, in := range append(insts[entries:], insts[:entries]...) {
		metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		args := append([]string{"serve", in.role, "--slot", strconv.Itoa(in.slot), "--metrics", metrics}, common...)
		if in.role == "entry" {
			app := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			args = append(args, "--listen", app, "--pprof")
			sc.apps = append(sc.apps, app)
			sc.metrics = append(sc.metrics, metrics)
		}
		p := startProc(t, fmt.Sprintf("%s-%d", in.role, in.slot), 10*time.Second, zzim, args...)
		if in.role == "entry" {
			sc.entries = append(sc.entries, p)
		} else {
			sc.others = append(sc.others, p)
		}
		all = append(all, started{p, metrics})
	}
	for _, s := range all {
		waitReady(t, s.p, "http://"+s.metrics+"/readyz", 60*time.Second)
	}
	return sc
}
