package mysqlstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/store"
)

// Benchmark shape.
const (
	// benchCallers is how many goroutines append at once, each to its own
	// conversation (so arm A is not serialised on one conversation lock).
	benchCallers = 64
	// benchBatchMax caps a group commit in arm B, as das caps its batches.
	benchBatchMax = 64
)

// BenchmarkGroupCommit compares, on one MariaDB with default durability
// (innodb_flush_log_at_trx_commit=1, datadir not on tmpfs) and the same
// pool of benchCallers connections: arm A, one transaction per append;
// arm B, a batcher that gathers the callers' concurrent appends into one
// Append of up to benchBatchMax (what das does), with 1 or 4 flushers.
// ZZIM_BENCH_PATH=proxy connects through the published port (docker-proxy);
// the default connects to the container's IP on a private network.
//
//	go test -run '^$' -bench GroupCommit -benchtime 20000x ./system/store/mysqlstore
func BenchmarkGroupCommit(b *testing.B) {
	ctx := context.Background()
	inst := testdeps.StartMariaDB(ctx, b, testdeps.MariaDBOptions{Direct: true})
	server, path := inst.DirectDSN, "direct to the container IP"
	if os.Getenv("ZZIM_BENCH_PATH") == "proxy" {
		server, path = inst.DSN, "published port through docker-proxy"
	}
	b.Logf("server %s, %s", inst.Version, path)
	container := inst.Container.GetContainerID()
	newStore := func(b *testing.B) *Store {
		s, err := Open(ctx, Config{DSNs: []string{newDatabase(b, server)}, MaxOpenConns: benchCallers})
		if err != nil {
			b.Fatalf("open: %v", err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("per-append", func(b *testing.B) {
		s := newStore(b)
		runCallers(b, container, func(ctx context.Context, r store.AppendReq) error {
			_, err := s.Append(ctx, []store.AppendReq{r})
			return err
		})
	})
	for _, flushers := range []int{1, 4} {
		b.Run(fmt.Sprintf("group/flushers=%d", flushers), func(b *testing.B) {
			bt := newBatcher(newStore(b), flushers)
			defer bt.close()
			runCallers(b, container, bt.append)
		})
	}
}

// runCallers spreads b.N appends over benchCallers goroutines and reports
// appends per second and the CPU an append costs this process (store,
// driver and callers) and the database container's processes.
func runCallers(b *testing.B, container string, appendOne func(context.Context, store.AppendReq) error) {
	ctx := context.Background()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start, clientStart, serverStart := time.Now(), processCPU(), containerCPU(container)
	for c := range benchCallers {
		wg.Go(func() {
			conv := fmt.Sprintf("p:u%d:v%d:l", c, c)
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				err := appendOne(ctx, store.AppendReq{
					ConvID: conv, SenderID: fmt.Sprintf("u%d", c), PeerID: fmt.Sprintf("v%d", c), ListingID: "l",
					ClientMsgID: fmt.Sprintf("m%d", n), CSeq: uint64(n), Body: "a message of a typical length, about sixty bytes",
					CreatedAtMs: n,
				})
				if err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	client, server := processCPU()-clientStart, containerCPU(container)-serverStart
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("append: %v", err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "appends/s")
	b.ReportMetric(float64(client.Microseconds())/float64(b.N), "client-µs/append")
	if server >= 0 {
		b.ReportMetric(float64(server.Microseconds())/float64(b.N), "server-µs/append")
	}
}

// processCPU is this process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// containerCPU sums the user and system CPU of the processes whose cgroup
// names the container (cgroup v1 or v2, any driver), -1 if none is found.
// Clock ticks are 10 ms: a run of seconds is needed for a figure.
func containerCPU(id string) time.Duration {
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	var ticks int64
	found := false
	for _, cg := range procs {
		b, err := os.ReadFile(cg)
		if err != nil || !strings.Contains(string(b), id) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join(filepath.Dir(cg), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis; utime and stime
		// are the 14th and 15th of the whole line.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
		found = true
	}
	if !found {
		return -1
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// batcher gathers concurrent appends into group commits: a flusher waits
// for one request, takes whatever else is queued up to benchBatchMax, and
// appends them in one call.
type batcher struct {
	s     *Store
	queue chan batchItem
	wg    sync.WaitGroup
}

type batchItem struct {
	req  store.AppendReq
	done chan error
}

func newBatcher(s *Store, flushers int) *batcher {
	bt := &batcher{s: s, queue: make(chan batchItem, benchCallers)}
	for range flushers {
		bt.wg.Go(bt.flush)
	}
	return bt
}

func (bt *batcher) append(ctx context.Context, r store.AppendReq) error {
	done := make(chan error, 1)
	bt.queue <- batchItem{req: r, done: done}
	return <-done
}

func (bt *batcher) flush() {
	for first := range bt.queue {
		items := []batchItem{first}
	gather:
		for len(items) < benchBatchMax {
			select {
			case it, ok := <-bt.queue:
				if !ok {
					break gather
				}
				items = append(items, it)
			default:
				break gather
			}
		}
		reqs := make([]store.AppendReq, len(items))
		for i, it := range items {
			reqs[i] = it.req
		}
		_, err := bt.s.Append(context.Background(), reqs)
		for _, it := range items {
			it.done <- err
		}
	}
}

func (bt *batcher) close() {
	close(bt.queue)
	bt.wg.Wait()
}
