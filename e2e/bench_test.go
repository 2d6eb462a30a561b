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
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/wire"
)

// Benchmark shape: benchPairs conversations, both sides sending
// benchRate messages per second each (paced, under logic's default per-user
// limit of 20/s), so the offered load is 2*benchPairs*benchRate msg/s.
// ZZIM_BENCH_RATE overrides benchRate (to find the rate the cluster sustains).
const (
	benchPairs = 1000
	benchRate  = 10
)

func benchRatePer() int {
	if n, err := strconv.Atoi(os.Getenv("ZZIM_BENCH_RATE")); err == nil && n > 0 && n <= 20 {
		return n
	}
	return benchRate
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

// BenchmarkUpEndToEnd: messages per second from send to delivery at the
// other client, over loopback TCP against an up-style cluster, with the
// send-to-deliver latency's p50 and p99.
func BenchmarkUpEndToEnd(b *testing.B) {
	b.Run("queue=jetstream", func(b *testing.B) { benchUp(b, false) })
	b.Run("queue=memory", func(b *testing.B) { benchUp(b, true) })
}

func benchUp(b *testing.B, memQueue bool) {
	l := startUp(b, memQueue)
	entries := l.Entries()
	clock := clientrun.NewClock()
	hist := hdrhistogram.New(1, 60_000_000, 3) // µs, up to a minute
	var histMu sync.Mutex
	var delivered atomic.Int64
	onDeliver := func(_ client.Env, m *wire.ChatMessage, _ string) {
		sent, err := strconv.ParseInt(strings.TrimPrefix(m.Body, "t="), 10, 64)
		if err != nil {
			return
		}
		us := (clock.Now().UnixNano() - sent) / 1000
		histMu.Lock()
		_ = hist.RecordValue(max(us, 1))
		histMu.Unlock()
		delivered.Add(1)
	}
	type sender struct {
		r    *clientrun.Runner
		conv string
	}
	var senders []sender
	for i := 0; i < benchPairs; i++ {
		a, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		conv := "p:" + a + ":" + c + ":bench"
		for j, u := range []string{a, c} {
			r := clientrun.Start(client.Config{
				User: u, Device: "bench", Token: wire.SignToken([]byte(testSecret), u, time.Now().Add(time.Hour)),
				Entries: []string{entries[(i+j)%len(entries)]}, OnDeliver: onDeliver,
				SyncIntervalMax: time.Minute,
			}, clientrun.Options{Clock: clock})
			b.Cleanup(r.Stop)
			senders = append(senders, sender{r: r, conv: conv})
		}
	}
	for _, s := range senders {
		waitFor(b, 10*time.Second, "clients online", func() bool { return online(s.r) })
	}
	per := (b.N + len(senders) - 1) / len(senders)
	total := int64(per * len(senders))
	rate := benchRatePer()
	every := time.Second / time.Duration(rate)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the senders' phases over one period.
			next := start.Add(every * time.Duration(i) / time.Duration(len(senders)))
			for k := 0; k < per; k++ {
				time.Sleep(time.Until(next))
				next = next.Add(every)
				s.r.Do(func(c *client.Client, env client.Env) {
					_, _ = c.Send(env, s.conv, "t="+strconv.FormatInt(clock.Now().UnixNano(), 10))
				})
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for delivered.Load() < total && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if os.Getenv("ZZIM_E2E_STATS") != "" {
		dumpStats(b, l)
	}
	if got := delivered.Load(); got < total {
		b.Fatalf("got %d deliveries in %s, want %d", got, elapsed, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(2*benchPairs*rate), "offered-msg/s")
	b.ReportMetric(float64(hist.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(hist.ValueAtQuantile(99))/1000, "p99-ms")
	b.ReportMetric(0, "ns/op") // per-op time means nothing here: msg/s does
}

// dumpStats logs the non-zero counters that say something went wrong or
// waited (ZZIM_E2E_STATS=1).
func dumpStats(b *testing.B, l *cluster.Local) {
	mfs, err := l.Registry().Gather()
	if err != nil {
		b.Logf("gather: %v", err)
		return
	}
	interesting := regexp.MustCompile(`reject|unknown|timed|retr|overload|error|failover|failed|held|batch|slow|resend|duplicate|dependency_seconds_(sum|count)|mailbox`)
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
