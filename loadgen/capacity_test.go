package loadgen

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// connTarget is the bound on an entry process's memory per idle,
// logged-in connection.
const connTarget = 5 * 1024

// generatorUsersMax bounds the users of one `zzim load` process: each
// holds one socket, and a process may open 20,000 files here.
const generatorUsersMax = 9000

// TestEntryCapacity (ZZIM_CAPACITY=1) runs one entry as its own process
// (`zzim serve entry`, the other roles in their own processes, NATS and
// Redis beside them), holds ZZIM_CAPACITY_CONNS (default 18,000: the open
// files cap is 20,000 per process) idle logged-in TCP connections on it
// from `zzim load` processes whose sources are spread over 127.0.0.0/8,
// and reports the entry process's RSS per connection. It fails above
// 5 KB.
func TestEntryCapacity(t *testing.T) {
	if os.Getenv("ZZIM_CAPACITY") != "1" {
		t.Skip("set ZZIM_CAPACITY=1 to measure connections per entry process")
	}
	conns := 18000
	if v := os.Getenv("ZZIM_CAPACITY_CONNS"); v != "" {
		var err error
		if conns, err = strconv.Atoi(v); err != nil || conns <= 0 {
			t.Fatalf("ZZIM_CAPACITY_CONNS=%q: want a positive count", v)
		}
	}
	measureCapacity(t, 1, conns)
}

// TestEntryCapacity100k (ZZIM_CAPACITY=100k) holds 100,000 idle logged-in
// connections over ZZIM_CAPACITY_ENTRIES (default 6) entry processes,
// each under the 20,000 open files cap, from load generator processes of
// at most 9,000 users each, and reports every entry process's RSS per
// connection and the total.
func TestEntryCapacity100k(t *testing.T) {
	if os.Getenv("ZZIM_CAPACITY") != "100k" {
		t.Skip("set ZZIM_CAPACITY=100k to hold 100,000 connections over several entry processes")
	}
	entries := 6
	if v := os.Getenv("ZZIM_CAPACITY_ENTRIES"); v != "" {
		var err error
		if entries, err = strconv.Atoi(v); err != nil || entries <= 0 {
			t.Fatalf("ZZIM_CAPACITY_ENTRIES=%q: want a positive count", v)
		}
	}
	per := (100000 + entries - 1) / entries
	if per > 19000 {
		t.Fatalf("%d connections per entry process: past the open files cap of 20,000 with its links", per)
	}
	measureCapacity(t, entries, per)
}

// generator is one `zzim load` process holding users idle on one entry.
type generator struct {
	p     *proc
	users int
	prom  string // its /metrics address
}

// online is the generator's last reported count of logged-in users (-1
// before it reports: it does once every user is online or its connect
// timeout passed).
func (g *generator) online() int {
	text, err := httpGet("http://" + g.prom + "/metrics")
	if err != nil {
		return -1
	}
	v, ok := promValue(text, `zzim_load_second{figure="connections"}`)
	if !ok {
		return -1
	}
	return int(v)
}

// measureCapacity holds perEntry connections on each of `entries` entry
// processes, in stages of one generator per entry, and reports RSS per
// connection from the entry's idle RSS and for the last stage's increment.
func measureCapacity(t *testing.T, entries, perEntry int) {
	deadline := time.Now().Add(15 * time.Minute)
	if d, ok := t.Deadline(); ok && d.Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	sc := startSplitCluster(t, entries)
	time.Sleep(3 * time.Second)
	rss0 := make([]int64, entries)
	for i, e := range sc.entries {
		rss0[i] = vmRSS(t, e.pid())
	}
	profDir := t.TempDir()
	bin, _ := zzimBinary()
	stages := (perEntry + generatorUsersMax - 1) / generatorUsersMax
	var gens []*generator
	held := make([]int, entries)
	rssPrev := append([]int64(nil), rss0...)
	heldPrev := make([]int, entries)
	for s := 0; s < stages; s++ {
		var stage []*generator
		for e := range entries {
			n := perEntry / stages
			if s < perEntry%stages {
				n++
			}
			k := len(gens)
			prom := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			// Logins spread at up to 400/s per generator and 1,200/s in
			// all (one logic process answers them); then 15 minutes of
			// nothing (the generator stops by itself if not killed).
			rate := min(400, 1200/entries)
			prof := filepath.Join(profDir, fmt.Sprintf("idle-%d.yaml", k))
			if err := os.WriteFile(prof, fmt.Appendf(nil, "name: idle\nduration: 15m\nworkload:\n  users: 1\n  rate: 0\n  start_over: %s\n",
				time.Duration(n)*time.Second/time.Duration(rate)), 0o644); err != nil {
				t.Fatal(err)
			}
			p := startProc(t, fmt.Sprintf("load-%d", k), 0, bin, "load", "--tcp", sc.apps[e], "--secret", testSecret,
				"--profile", prof, "--users", strconv.Itoa(n), "--user-prefix", fmt.Sprintf("c%d-", k),
				"--client-num-base", strconv.Itoa(k*generatorUsersMax), "--source-net", fmt.Sprintf("127.%d.0.0/24", 10+k),
				"--connect-timeout", "5m", "--prometheus", prom, "--quiet", "--seed", strconv.Itoa(k+1))
			g := &generator{p: p, users: n, prom: prom}
			gens, stage = append(gens, g), append(stage, g)
			held[e] += n
		}
		for {
			done := true
			for _, g := range stage {
				if g.p.cmd.ProcessState != nil {
					t.Fatalf("%s exited:\n%s", g.p.name, g.p.tail())
				}
				if g.online() != g.users {
					done = false
				}
			}
			for e := range entries {
				if c := entryConns(sc, e); c != held[e] {
					done = false
				}
			}
			if done {
				break
			}
			if time.Now().After(deadline) {
				for _, g := range stage {
					t.Logf("%s: %d of %d online\n%s", g.p.name, g.online(), g.users, g.p.tail())
				}
				for e := range entries {
					t.Logf("entry-%d holds %d of %d\n%s", e, entryConns(sc, e), held[e], sc.entries[e].tail())
				}
				t.Fatalf("stage %d: connections not all held in time", s+1)
			}
			time.Sleep(time.Second)
		}
		time.Sleep(10 * time.Second) // conversation lists and syncs settle; a GC cycle passes
		var total, totalRSS, totalRSS0 int64
		for e, p := range sc.entries {
			rss := vmRSS(t, p.pid())
			perConn := float64(rss-rss0[e]) * 1024 / float64(held[e])
			step := float64(rss-rssPrev[e]) * 1024 / float64(held[e]-heldPrev[e])
			t.Logf("stage %d: entry-%d holds %d connections: RSS %d → %d KiB, %.0f B/conn (last %d: %.0f B/conn)",
				s+1, e, held[e], rss0[e], rss, perConn, held[e]-heldPrev[e], step)
			rssPrev[e], heldPrev[e] = rss, held[e]
			total += int64(held[e])
			totalRSS += rss
			totalRSS0 += rss0[e]
		}
		if entries > 1 {
			t.Logf("stage %d: %d entry processes hold %d connections: RSS %d → %d KiB, %.0f B/conn",
				s+1, entries, total, totalRSS0, totalRSS, float64(totalRSS-totalRSS0)*1024/float64(total))
		}
	}
	// Held idle past entry's idle timeout (90 s: every idle timer fires
	// and is re-armed) and a few rounds of the clients' 30 s heartbeats,
	// RSS settles where the garbage those make lets it: sampled every 10 s.
	hold := 2 * time.Minute
	if v := os.Getenv("ZZIM_CAPACITY_HOLD"); v != "" {
		var err error
		if hold, err = time.ParseDuration(v); err != nil {
			t.Fatalf("ZZIM_CAPACITY_HOLD=%q: %v", v, err)
		}
	}
	rssMax := append([]int64(nil), rssPrev...)
	for end := time.Now().Add(hold); time.Now().Before(end); {
		time.Sleep(min(10*time.Second, time.Until(end)))
		for e, p := range sc.entries {
			rssMax[e] = max(rssMax[e], vmRSS(t, p.pid()))
		}
	}
	var total, totalRSS, totalRSS0, totalMax int64
	for e, p := range sc.entries {
		if c := entryConns(sc, e); c != held[e] {
			t.Errorf("entry-%d: holds %d connections after %s, want %d", e, c, hold, held[e])
		}
		rss := vmRSS(t, p.pid())
		t.Logf("held %s: entry-%d: %d connections, RSS %d KiB (%.0f B/conn), at most %d KiB (%.0f B/conn)", hold, e, held[e],
			rss, float64(rss-rss0[e])*1024/float64(held[e]), rssMax[e], float64(rssMax[e]-rss0[e])*1024/float64(held[e]))
		total += int64(held[e])
		totalRSS += rss
		totalRSS0 += rss0[e]
		totalMax += rssMax[e]
	}
	if entries > 1 {
		t.Logf("held %s: %d entry processes, %d connections: RSS %d → %d KiB (%.0f B/conn), sum of maxima %d KiB (%.0f B/conn)", hold, entries, total,
			totalRSS0, totalRSS, float64(totalRSS-totalRSS0)*1024/float64(total), totalMax, float64(totalMax-totalRSS0)*1024/float64(total))
	}
	// Where the memory is: entry-0's runtime figures and heap profile.
	if text, err := httpGet("http://" + sc.metrics[0] + "/debug/pprof/heap?debug=1"); err == nil {
		var figs []string
		// debug=1 prints MemStats: "# Stack = StackInuse / StackSys".
		for _, k := range []string{"HeapInuse", "HeapAlloc", "Stack", "MSpan", "GCSys", "OtherSys", "Sys"} {
			if m := regexp.MustCompile(`(?m)^# ` + k + ` = (\d+)`).FindStringSubmatch(text); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				figs = append(figs, fmt.Sprintf("%s %.0f B/conn", k, v/float64(held[0])))
			}
		}
		t.Logf("entry-0 runtime: %s", strings.Join(figs, ", "))
	}
	if text, err := httpGet("http://" + sc.metrics[0] + "/debug/pprof/goroutine?debug=1"); err == nil {
		t.Logf("entry-0 %s", strings.SplitN(text, "\n", 2)[0])
	}
	if out := os.Getenv("ZZIM_CAPACITY_OUT"); out != "" {
		if text, err := httpGet("http://" + sc.metrics[0] + "/debug/pprof/heap?gc=1"); err == nil {
			if err := os.WriteFile(filepath.Join(out, "entry-heap.pb.gz"), []byte(text), 0o644); err != nil {
				t.Error(err)
			}
		}
		if text, err := httpGet("http://" + sc.metrics[0] + "/debug/pprof/goroutine?debug=1"); err == nil {
			_ = os.WriteFile(filepath.Join(out, "entry-goroutines.txt"), []byte(text), 0o644)
		}
	}
	for _, p := range sc.others {
		t.Logf("%s: RSS %d KiB", p.name, vmRSS(t, p.pid()))
	}
	var genRSS int64
	var genUsers int
	for _, g := range gens {
		genRSS += vmRSS(t, g.p.pid())
		genUsers += g.users
	}
	t.Logf("%d load generator processes: RSS %d KiB for %d users (%.0f B/user)", len(gens), genRSS, genUsers, float64(genRSS)*1024/float64(genUsers))
	for e := range entries {
		if per := float64(rssMax[e]-rss0[e]) * 1024 / float64(held[e]); per > connTarget {
			t.Errorf("entry-%d: up to %.0f B of RSS per connection, want at most %d", e, per, connTarget)
		}
	}
}

// entryConns is entry e's open app connections (its zzim_connections).
func entryConns(sc *splitCluster, e int) int {
	text, err := httpGet("http://" + sc.metrics[e] + "/metrics")
	if err != nil {
		return -1
	}
	v, _ := promValue(text, "zzim_connections")
	return int(v)
}
