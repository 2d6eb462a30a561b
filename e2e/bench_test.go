package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/wire"
)

// Benchmark shape: benchPairs conversations, both sides sending benchRate
// messages per second each (paced, under logic's per-user limit of 20/s),
// so the offered load is 2*pairs*rate msg/s.
//
//	ZZIM_BENCH_RATE   per-client rate (1..19)
//	ZZIM_BENCH_PAIRS  conversations (two clients each)
//	ZZIM_BENCH_STEP   seconds per step of BenchmarkUpSaturation
//	ZZIM_BENCH_TRACE  print mailbox depths every 500ms
//	ZZIM_E2E_STATS    print the counters that say something waited or failed
//
// Every figure comes with CPU-µs per delivered message (getrusage of this
// process around the measured window, clients included: they run in this
// process too). On a machine shared with other work, wall-clock throughput
// says more about the neighbours than about zzim; CPU per message does not.
const (
	benchPairs = 1000
	benchRate  = 10
	// benchP99Target is issue 8's latency target for the saturation point.
	benchP99Target = 50 * time.Millisecond
	// benchDrainMax bounds the wait for the last deliveries of a run.
	benchDrainMax = 60 * time.Second
)

func envInt(name string, def, lo, hi int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n >= lo && n <= hi {
		return n
	}
	return def
}

// startUp starts a cluster the way `zzim up` does: every node in one
// process (direct internal links), embedded NATS, in-memory store and
// presence. memQueue replaces JetStream by live.MemQueue and MemRegistry,
// to measure the system without JetStream's fsync per publish.
func startUp(b *testing.B, memQueue bool) *cluster.Local {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{NATSDir: b.TempDir(), NeedStore: true, Name: "bench"})
	if err != nil {
		b.Fatalf("deps: %v", err)
	}
	b.Cleanup(deps.Close)
	if memQueue {
		deps.Queue, deps.Registry = live.NewMemQueue(), live.NewMemRegistry()
	}
	cfg := cluster.Config{Topology: cluster.DefaultTopology(), Secret: []byte(testSecret)}
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{Deps: deps.Deps, Logger: logger(b)})
	if err != nil {
		b.Fatalf("start: %v", err)
	}
	b.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	waitFor(b, 10*time.Second, "cluster ready", func() bool { return l.ReadyCheck()(ctx) == nil })
	return l
}

// cpuTime is this process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runQueueWait is the time this process's threads have spent runnable
// but waiting for a CPU (the sum of run_delay in /proc/self/task/*/schedstat;
// threads that exited are not counted). On a machine shared with other
// work it tells whether latency came from zzim or from waiting for a core.
func runQueueWait() time.Duration {
	tasks, _ := os.ReadDir("/proc/self/task")
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			sum += v
		}
	}
	return time.Duration(sum)
}

// probe measures deliveries: bodies are "<step>:<send ns>", and each step
// has its own histogram of send-to-deliver latency (µs).
type probe struct {
	clock     *clientrun.Clock
	mu        sync.Mutex
	hists     map[int]*hdrhistogram.Histogram
	seen      map[string]bool // client_msg_ids delivered
	dups      int             // deliveries of a message already delivered
	delivered atomic.Int64
}

func newProbe() *probe {
	return &probe{clock: clientrun.NewClock(), hists: map[int]*hdrhistogram.Histogram{}, seen: map[string]bool{}}
}

func (p *probe) body(step int) string {
	return strconv.Itoa(step) + ":" + strconv.FormatInt(p.clock.Now().UnixNano(), 10)
}

func (p *probe) onDeliver(_ client.Env, m *wire.ChatMessage, _ string) {
	stepText, sentText, ok := strings.Cut(m.Body, ":")
	if !ok {
		return
	}
	step, err1 := strconv.Atoi(stepText)
	sent, err2 := strconv.ParseInt(sentText, 10, 64)
	if err1 != nil || err2 != nil {
		return
	}
	us := (p.clock.Now().UnixNano() - sent) / 1000
	p.mu.Lock()
	if p.seen[m.ClientMsgId] {
		// The client forgets the oldest messages of a conversation past its
		// HeldMax, so a late duplicate push of one can reach OnDeliver again.
		p.dups++
		p.mu.Unlock()
		return
	}
	p.seen[m.ClientMsgId] = true
	h := p.hists[step]
	if h == nil {
		h = hdrhistogram.New(1, 120_000_000, 3) // µs, up to two minutes
		p.hists[step] = h
	}
	_ = h.RecordValue(max(us, 1))
	p.mu.Unlock()
	p.delivered.Add(1)
}

func (p *probe) quantiles(step int) (count int64, p50, p99 time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.hists[step]
	if h == nil {
		return 0, 0, 0
	}
	return h.TotalCount(), time.Duration(h.ValueAtQuantile(50)) * time.Microsecond,
		time.Duration(h.ValueAtQuantile(99)) * time.Microsecond
}

type benchSender struct {
	r    *clientrun.Runner
	conv string
}

// startPairs starts pairs conversations of two TCP clients each, spread
// over the entries, and waits until they are online.
func startPairs(b *testing.B, l *cluster.Local, pairs int, p *probe) []benchSender {
	entries := l.Entries()
	var senders []benchSender
	for i := 0; i < pairs; i++ {
		a, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		conv := "p:" + a + ":" + c + ":bench"
		for j, u := range []string{a, c} {
			r := clientrun.Start(client.Config{
				User: u, Device: "bench", Token: wire.SignToken([]byte(testSecret), u, time.Now().Add(time.Hour)),
				Entries: []string{entries[(i+j)%len(entries)]}, OnDeliver: p.onDeliver,
				SyncIntervalMax: time.Minute,
			}, clientrun.Options{Clock: p.clock, MailboxMax: 256})
			b.Cleanup(r.Stop)
			senders = append(senders, benchSender{r: r, conv: conv})
		}
	}
	for _, s := range senders {
		waitFor(b, 30*time.Second, "clients online", func() bool { return online(s.r) })
	}
	return senders
}

// offer makes every sender send per messages at rate per second, phases
// spread over one period, and returns when the last one was offered.
func offer(senders []benchSender, p *probe, step, per, rate int) {
	every := time.Second / time.Duration(rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(every * time.Duration(i) / time.Duration(len(senders)))
			for k := 0; k < per; k++ {
				time.Sleep(time.Until(next))
				next = next.Add(every)
				s.r.Do(func(c *client.Client, env client.Env) { _, _ = c.Send(env, s.conv, p.body(step)) })
			}
		}()
	}
	wg.Wait()
}

// BenchmarkUpEndToEnd: messages per second from send to delivery at the
// other client, over loopback TCP against an up-style cluster, with the
// send-to-deliver latency's p50 and p99 and the CPU per message.
func BenchmarkUpEndToEnd(b *testing.B) {
	b.Run("queue=jetstream", func(b *testing.B) { benchUp(b, false) })
	b.Run("queue=memory", func(b *testing.B) { benchUp(b, true) })
}

func benchUp(b *testing.B, memQueue bool) {
	l := startUp(b, memQueue)
	p := newProbe()
	// The testing package's first run (b.N == 1) only sizes the next one:
	// keep it to one pair rather than starting thousands of clients.
	pairs := min(envInt("ZZIM_BENCH_PAIRS", benchPairs, 1, 5000), b.N)
	rate := envInt("ZZIM_BENCH_RATE", benchRate, 1, 19)
	senders := startPairs(b, l, pairs, p)
	per := (b.N + len(senders) - 1) / len(senders)
	total := int64(per * len(senders))
	stopTrace := traceQueues(l, &p.delivered)
	defer stopTrace()
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	offer(senders, p, 0, per, rate)
	deadline := time.Now().Add(benchDrainMax)
	for p.delivered.Load() < total && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if os.Getenv("ZZIM_E2E_STATS") != "" {
		dumpStats(l)
	}
	got := p.delivered.Load()
	if got < total {
		b.Logf("only %d of %d delivered within %s of the last send", got, total, benchDrainMax)
	}
	_, p50, p99 := p.quantiles(0)
	if p.dups > 0 {
		b.Logf("%d duplicate deliveries (client HeldMax forgetting) not counted", p.dups)
	}
	b.ReportMetric(float64(got)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(2*pairs*rate), "offered-msg/s")
	b.ReportMetric(float64(got)/float64(total), "delivered-frac")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(got, 1)), "cpu-us/msg")
	b.ReportMetric(0, "ns/op") // per-op time means nothing here: msg/s does
}

// BenchmarkUpSaturation finds the saturation point: one cluster, the same
// clients, offered load raised by satStep msg/s per step (senders at 5/s,
// at 10/s past what 5/s from every client gives, never over the per-user
// limit); the saturation point is the highest offered rate whose messages
// were all delivered with p99 send-to-deliver under 50 ms. It stops at the
// first step that misses (its backlog would spoil the next).
//
//	ZZIM_BENCH_MAX  highest offered rate tried (20000)
func BenchmarkUpSaturation(b *testing.B) {
	const satStep = 1000
	for _, q := range []struct {
		name string
		mem  bool
	}{{"queue=jetstream", false}, {"queue=memory", true}} {
		b.Run(q.name, func(b *testing.B) {
			l := startUp(b, q.mem)
			p := newProbe()
			pairs := envInt("ZZIM_BENCH_PAIRS", benchPairs, 1, 5000)
			maxOffered := envInt("ZZIM_BENCH_MAX", 20000, satStep, 200000)
			stepFor := envInt("ZZIM_BENCH_STEP", 5, 1, 120)
			senders := startPairs(b, l, pairs, p)
			b.ResetTimer()
			saturation, sent := 0, int64(0)
			for step, offered := 1, satStep; offered <= maxOffered; step, offered = step+1, offered+satStep {
				rate := 5
				if offered > 5*len(senders) {
					rate = 10
				}
				active := senders[:min(len(senders), offered/rate)]
				if len(active)*rate < offered {
					break // more than the clients may send
				}
				per := stepFor * rate
				want := int64(per * len(active))
				sent += want
				cpu0, wait0, start := cpuTime(), runQueueWait(), time.Now()
				d0 := p.delivered.Load()
				offer(active, p, step, per, rate)
				deadline := time.Now().Add(10 * time.Second)
				for p.delivered.Load() < sent && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				elapsed, cpu, wait := time.Since(start), cpuTime()-cpu0, runQueueWait()-wait0
				n, p50, p99 := p.quantiles(step)
				dn := p.delivered.Load() - d0
				ok := n == want && p99 < benchP99Target
				fmt.Fprintf(os.Stderr, "%s offered=%d/s delivered=%d/%d in %.1fs (%.0f/s) p50=%s p99=%s cpu=%.0fus/msg cpu-util=%.2f cores runq-wait=%.2f cores ok=%v\n",
					q.name, offered, n, want, elapsed.Seconds(), float64(dn)/elapsed.Seconds(),
					p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond),
					float64(cpu.Microseconds())/float64(max(dn, 1)), cpu.Seconds()/elapsed.Seconds(), wait.Seconds()/elapsed.Seconds(), ok)
				if !ok {
					break
				}
				saturation = offered
			}
			b.StopTimer()
			if os.Getenv("ZZIM_E2E_STATS") != "" {
				dumpStats(l)
			}
			b.ReportMetric(float64(saturation), "saturation-msg/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// dumpStats logs the non-zero counters that say something went wrong or
// waited (ZZIM_E2E_STATS=1).
func dumpStats(l *cluster.Local) {
	mfs, err := l.Registry().Gather()
	if err != nil {
		fmt.Fprintf(os.Stderr, "gather: %v\n", err)
		return
	}
	interesting := regexp.MustCompile(`reject|unknown|timed|retr|overload|error|failover|failed|held|batch|slow|resend|duplicate|dependency_seconds_(sum|count)|mailbox|admit|rate_limited|sent_events|offline_publishes`)
	for _, mf := range mfs {
		if !interesting.MatchString(mf.GetName()) {
			continue
		}
		for _, m := range mf.GetMetric() {
			v := m.GetUntyped().GetValue() + m.GetCounter().GetValue() + m.GetGauge().GetValue()
			if m.GetHistogram() != nil {
				v = m.GetHistogram().GetSampleSum()
				fmt.Fprintf(os.Stderr, "%s %v count=%d sum=%.3fs\n", mf.GetName(), m.GetLabel(), m.GetHistogram().GetSampleCount(), v)
				continue
			}
			if v != 0 {
				fmt.Fprintf(os.Stderr, "%s %v %g\n", mf.GetName(), m.GetLabel(), v)
			}
		}
	}
}

// traceQueues prints, every 500ms, the mailbox depths and the deliveries
// so far (ZZIM_BENCH_TRACE=1): where a queue builds up is where overload starts.
func traceQueues(l *cluster.Local, delivered *atomic.Int64) func() {
	if os.Getenv("ZZIM_BENCH_TRACE") == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var sb strings.Builder
			fmt.Fprintf(&sb, "delivered=%d", delivered.Load())
			mfs, _ := l.Registry().Gather()
			for _, mf := range mfs {
				if mf.GetName() != "zzim_mailbox_depth" {
					continue
				}
				for _, m := range mf.GetMetric() {
					if v := m.GetGauge().GetValue(); v > 0 {
						fmt.Fprintf(&sb, " %s=%g", m.GetLabel()[0].GetValue(), v)
					}
				}
			}
			fmt.Fprintln(os.Stderr, sb.String())
		}
	}()
	return func() { close(done) }
}
