// Command peers runs one chat workload against zzim and Centrifugo on
// this machine, in one run, and prints (and writes as Markdown) the table
// side by side: server CPU per delivered message, the highest total send
// rate whose p99 send-to-deliver stays under 50 ms, p50/p99 at 1,000 and
// 5,000 msg/s, for each user count and each row (in memory; durable).
//
// The workload: U users in U/2 one-to-one conversations, every user
// connected, sends open-loop at a fixed total rate (each message due at a
// scheduled instant; latency measured from it, so a stalled server cannot
// hide its queue), the recipient measuring send-to-deliver on the same
// clock. The server and its dependencies run on core 0, this generator on
// core 1. See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pinnedEnv marks the process re-executed under taskset.
const pinnedEnv = "PEERS_PINNED"

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	if os.Getenv(pinnedEnv) == "" {
		// Re-run this binary on the load generator's core: taskset before
		// the Go runtime starts, so every thread (and GOMAXPROCS) follows.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		taskset, err := lookTaskset()
		if err != nil {
			return err
		}
		return syscall.Exec(taskset, append([]string{"taskset", "-c", loadCore, self}, os.Args[1:]...), append(os.Environ(), pinnedEnv+"=1"))
	}
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg.progress = newProgress()
	load0 := loadAvg()
	began := time.Now()
	results, err := runAll(ctx, cfg)
	cfg.progress.close()
	if err != nil {
		return err
	}
	md := report(cfg, results, load0, loadAvg(), began, time.Since(began))
	fmt.Print(md)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "wrote", cfg.out)
	}
	for _, r := range results {
		if r.err != nil {
			return fmt.Errorf("%s %s U=%d: %w", r.system, r.row, r.users, r.err)
		}
	}
	return nil
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	mode := fs.String("mode", "quick", "quick (small U, few short steps: a couple of minutes) or full")
	systems := fs.String("systems", sysZzim+","+sysCentrifugo, "systems to run")
	rows := fs.String("rows", rowMemory+","+rowDurable, "rows: memory (zzim in-memory store and queue, Centrifugo memory engine), durable (zzim on MariaDB + JetStream, Centrifugo on Redis)")
	usersFlag := fs.String("users", "", "user counts, comma-separated (default: quick 200, full 1000,10000)")
	ratesFlag := fs.String("rates", "", "total send rates (msg/s) stepped through, comma-separated (default by mode)")
	warm := fs.Duration("warm", 0, "warm-up of each step, not measured (default: quick 1s, full 3s)")
	measure := fs.Duration("step", 0, "measured part of each step (default: quick 3s, full 10s)")
	drain := fs.Duration("drain", 0, "longest wait for a step's last deliveries (default: quick 5s, full 10s)")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default: quick 6m, full 90m)")
	repo := fs.String("repo", "../..", "the zzim repository (zzim is built from it)")
	bin := fs.String("bin", "bin", "where the zzim and Centrifugo binaries are built")
	work := fs.String("work", "", "parent of the servers' temporary directories (default: the system's; must be on disk, not tmpfs, for the durable row)")
	out := fs.String("out", "", "also write the Markdown table to this file (default: results-MODE.md)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator (this process) to this file")
	syncWait := fs.Duration("sync-wait", time.Minute, "after the last drain, the longest wait for the recipients' sync (zzim) or history read (Centrifugo) of what they missed; 0: no sync, an undelivered acknowledged message is lost at once")
	dasLinger := fs.Duration("das-linger", 0, "zzim: pass --das-linger to zzim up (0: not passed; das starts batches at once)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	c := &config{mode: *mode, repo: absDir(*repo), binDir: absDir(*bin), out: *out, cpuProfile: *cpuProfile, syncWait: *syncWait, dasLinger: *dasLinger}
	switch *mode {
	case "quick":
		c.users, c.rates = []int{200}, []int{1000, 2000, 5000}
		c.warm, c.measure, c.drainMax, c.timeout = time.Second, 3*time.Second, 5*time.Second, 6*time.Minute
	case "full":
		c.users = []int{1000, 10000}
		c.rates = []int{500, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 12000, 14000, 16000, 18000, 20000, 25000, 30000, 40000, 50000}
		c.warm, c.measure, c.drainMax, c.timeout = 3*time.Second, 10*time.Second, 10*time.Second, 90*time.Minute
	default:
		return nil, fmt.Errorf("-mode %q: quick or full", *mode)
	}
	var err error
	if *usersFlag != "" {
		if c.users, err = ints(*usersFlag, 2, 20000); err != nil {
			return nil, fmt.Errorf("-users: %w", err)
		}
		for _, u := range c.users {
			if u%2 != 0 {
				return nil, fmt.Errorf("-users: %d is odd (users come in pairs)", u)
			}
		}
	}
	if *ratesFlag != "" {
		if c.rates, err = ints(*ratesFlag, 1, 500000); err != nil {
			return nil, fmt.Errorf("-rates: %w", err)
		}
	}
	if 2*len(c.rates) > stepsMax { // every step may run twice
		return nil, fmt.Errorf("-rates: at most %d steps", stepsMax/2)
	}
	for _, d := range []struct {
		v   time.Duration
		dst *time.Duration
	}{{*warm, &c.warm}, {*measure, &c.measure}, {*drain, &c.drainMax}, {*timeout, &c.timeout}} {
		if d.v > 0 {
			*d.dst = d.v
		}
	}
	if c.measure > 2*time.Minute {
		return nil, fmt.Errorf("-step %s: at most 2m", c.measure)
	}
	c.systems = strings.Split(*systems, ",")
	for _, s := range c.systems {
		if s != sysZzim && s != sysCentrifugo {
			return nil, fmt.Errorf("-systems: unknown %q", s)
		}
	}
	c.rows = strings.Split(*rows, ",")
	for _, r := range c.rows {
		if r != rowMemory && r != rowDurable {
			return nil, fmt.Errorf("-rows: unknown %q", r)
		}
	}
	c.workDir = *work
	if c.workDir == "" {
		c.workDir = os.TempDir()
	}
	if c.out == "" {
		c.out = "results-" + c.mode + ".md"
	}
	return c, nil
}

func ints(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(f, "_", "")))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q: want an integer in [%d, %d]", f, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

func lookTaskset() (string, error) {
	for _, p := range []string{"/usr/bin/taskset", "/bin/taskset"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("taskset not found (util-linux)")
}

// raiseFileLimit lifts the open-files soft limit to the hard one: 10,000
// users are 10,000 sockets here (and as many in the server, which
// inherits the limit).
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
