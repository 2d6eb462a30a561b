package loadgen

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// vmRSS reads a process's resident set size in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func openFDs(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents)
}

// TestConnectionCapacity (ZZIM_CAPACITY=1) holds idle logged-in TCP
// connections on one `zzim up` process (its two entries) from `zzim load`
// child processes whose sources are spread over 127.0.0.0/8, and reports
// the server's RSS per connection. ZZIM_CAPACITY_CONNS sets how many
// (default 18000: the open files cap is 20,000 per process).
func TestConnectionCapacity(t *testing.T) {
	if os.Getenv("ZZIM_CAPACITY") == "" {
		t.Skip("set ZZIM_CAPACITY=1 to measure connections per entry process")
	}
	conns := 18000
	if v := os.Getenv("ZZIM_CAPACITY_CONNS"); v != "" {
		conns, _ = strconv.Atoi(v)
	}
	const perGenerator = 9000
	up, tcp, _ := startUp(t)
	pid := up.Process.Pid
	time.Sleep(2 * time.Second)
	rss0, fd0 := vmRSS(t, pid), openFDs(pid)
	prof := filepath.Join(t.TempDir(), "idle.yaml")
	if err := os.WriteFile(prof, []byte("name: idle\nduration: 10m\nworkload:\n  users: 1\n  rate: 0\n  start_over: 20s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := zzimBinary()
	var gens []*exec.Cmd
	var logs []string
	for i, left := 0, conns; left > 0; i++ {
		n := min(left, perGenerator)
		left -= n
		cmd := exec.Command(bin, "load", "--tcp", strings.Join(tcp, ","), "--secret", testSecret, "--profile", prof,
			"--users", strconv.Itoa(n), "--user-prefix", fmt.Sprintf("g%d", i), "--client-num-base", strconv.Itoa(i*perGenerator),
			"--source-net", fmt.Sprintf("127.%d.0.0/24", 10+i), "--connect-timeout", "120s", "--quiet")
		logf, err := os.Create(filepath.Join(t.TempDir(), "load.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		gens = append(gens, cmd)
		logs = append(logs, logf.Name())
	}
	t.Cleanup(func() {
		for _, g := range gens {
			_ = g.Process.Signal(syscall.SIGKILL)
			_ = g.Wait()
		}
	})
	deadline := time.Now().Add(3 * time.Minute)
	for openFDs(pid)-fd0 < conns {
		if time.Now().After(deadline) {
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b[max(0, len(b)-2000):])
			}
			t.Fatalf("server holds %d new fds after 3 min, want %d", openFDs(pid)-fd0, conns)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(5 * time.Second) // logins, conversation lists and syncs settle
	rss1, fd1 := vmRSS(t, pid), openFDs(pid)
	per := float64(rss1-rss0) * 1024 / float64(fd1-fd0)
	t.Logf("zzim up (2 entries): %d connections, RSS %d → %d KiB, %.0f bytes per connection", fd1-fd0, rss0, rss1, per)
	if per > 5*1024 {
		t.Logf("above the 5 KB target")
	}
}
