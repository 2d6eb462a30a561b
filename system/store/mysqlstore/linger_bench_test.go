package mysqlstore

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// BenchmarkDasLinger drives the real das state machine over this store at
// fixed open-loop append rates, with das.Config.AppendLinger 0, 2ms and
// 5ms run alternately (rounds of every rate × linger, so a drift of the
// machine or of the database's size falls on all arms alike). It reports
// MariaDB's and this process's CPU per append, appends per transaction,
// and append latency (from the append's scheduled send time, so a
// stalled das is not hidden by a stalled sender) at p50 and p99.
//
// The driver below is a minimal stand-in for system/live's host: one
// goroutine owns das and handles its events one at a time; store ops run on
// goroutines of their own (das bounds them to AppendInflightMax per queue);
// timers are time.AfterFunc. Each arm gets a fresh das (its commit-cost
// estimate starts from nothing) and conversations of its own.
//
//	ZZIM_LINGER_ARM=4s go test -run '^$' -bench DasLinger -benchtime 1x ./system/store/mysqlstore
func BenchmarkDasLinger(b *testing.B) {
	ctx := context.Background()
	inst := testdeps.StartMariaDB(ctx, b, testdeps.MariaDBOptions{Direct: true})
	b.Logf("server %s", inst.Version)
	container := inst.Container.GetContainerID()
	s, err := Open(ctx, Config{DSNs: []string{newDatabase(b, inst.DirectDSN)}, MaxOpenConns: 8})
	if err != nil {
		b.Fatalf("open: %v", err)
	}
	b.Cleanup(func() { s.Close() })
	arm := 4 * time.Second
	if v := os.Getenv("ZZIM_LINGER_ARM"); v != "" {
		if arm, err = time.ParseDuration(v); err != nil {
			b.Fatalf("ZZIM_LINGER_ARM: %v", err)
		}
	}
	rounds := 2
	lingers := []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond}
	rates := []int{500, 1000}
	armN := 0
	for round := range rounds {
		for _, rate := range rates {
			for _, linger := range lingers {
				armN++
				name := fmt.Sprintf("rate=%d/linger=%s/round=%d", rate, linger, round+1)
				b.Run(name, func(b *testing.B) {
					for range b.N {
						r := runLingerArm(b, s, container, armN, rate, linger, arm)
						b.ReportMetric(r.serverPerAppend, "server-µs/append")
						b.ReportMetric(r.clientPerAppend, "client-µs/append")
						b.ReportMetric(r.perTxn, "appends/txn")
						b.ReportMetric(r.p50, "p50-ms")
						b.ReportMetric(r.p99, "p99-ms")
						b.ReportMetric(r.achieved, "appends/s")
					}
				})
			}
		}
	}
}

type lingerArmResult struct {
	serverPerAppend, clientPerAppend, perTxn, p50, p99, achieved float64
}

// lingerConvs is how many conversations an arm's appends go round: many,
// as in a chat service, so appends of one batch seldom share a lock.
const lingerConvs = 500

func runLingerArm(b *testing.B, s *Store, container string, armN, rate int, linger, dur time.Duration) lingerArmResult {
	d := das.New(das.Config{Topology: map[node.Role]int{node.RoleDas: 1, node.RoleLogic: 1}, AppendLinger: linger})
	h := newDasDriver(s, d)
	defer h.stop()
	total := int(dur.Seconds() * float64(rate))
	hist := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	done := make(chan struct{})
	var answered, failed int
	h.onReply = func(rep *wire.StoreReply, scheduled time.Time) {
		if rep.Outcome != wire.Outcome_OUTCOME_OK {
			failed++
		}
		_ = hist.RecordValue(max(time.Since(scheduled).Microseconds(), 1))
		if answered++; answered == total {
			close(done)
		}
	}
	caller := node.Addr{Role: node.RoleLogic, Slot: 0}
	var before das.Stats
	h.do(func() { before = d.Stats() })
	start, clientStart, serverStart := time.Now(), processCPU(), containerCPU(container)
	gap := time.Second / time.Duration(rate)
	for i := range total {
		at := start.Add(time.Duration(i) * gap)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		c := i % lingerConvs
		sender, peer := fmt.Sprintf("a%d-%d", armN, c), fmt.Sprintf("b%d-%d", armN, c)
		req := &wire.StoreRequest{
			ReqId: uint64(i + 1), ReplyTo: caller.String(), CallerIncarnation: 1,
			Business: wire.Business_BUSINESS_MESSAGE,
			Append: &wire.AppendItem{
				ConvId: wire.PairConvID(sender, peer, "l"), SenderId: sender, PeerId: peer, ListingId: "l",
				ClientMsgId: fmt.Sprintf("m%d", i), Cseq: uint64(i/lingerConvs + 1),
				Body: "a message of a typical length, about sixty bytes",
			},
		}
		h.request(req, at)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d appends answered", answered, total)
	}
	elapsed := time.Since(start)
	client, server := processCPU()-clientStart, containerCPU(container)-serverStart
	var after das.Stats
	h.do(func() { after = d.Stats() })
	if failed > 0 {
		b.Fatalf("%d of %d appends not OK", failed, total)
	}
	batches := after.Batches - before.Batches
	return lingerArmResult{
		serverPerAppend: float64(server.Microseconds()) / float64(total),
		clientPerAppend: float64(client.Microseconds()) / float64(total),
		perTxn:          float64(after.BatchedAppends-before.BatchedAppends) / float64(max(batches, 1)),
		p50:             float64(hist.ValueAtQuantile(50)) / 1000,
		p99:             float64(hist.ValueAtQuantile(99)) / 1000,
		achieved:        float64(total) / elapsed.Seconds(),
	}
}

// dasDriver hosts one das: a goroutine runs every event and every closure
// given to do, one at a time, as system/live's host does for a node.
type dasDriver struct {
	s      *Store
	d      *das.Das
	events chan func()
	quit   chan struct{}
	wg     sync.WaitGroup

	// Owned by the loop goroutine.
	nextID    uint64
	timers    map[node.TimerID]*time.Timer
	scheduled map[uint64]time.Time // request id → its scheduled send time
	onReply   func(rep *wire.StoreReply, scheduled time.Time)
	rnd       *rand.Rand
	log       *slog.Logger
}

func newDasDriver(s *Store, d *das.Das) *dasDriver {
	h := &dasDriver{
		s: s, d: d, events: make(chan func(), 4096), quit: make(chan struct{}),
		timers: map[node.TimerID]*time.Timer{}, scheduled: map[uint64]time.Time{},
		rnd: rand.New(rand.NewPCG(1, 2)), log: slog.New(slog.DiscardHandler),
	}
	h.wg.Go(func() {
		for {
			select {
			case f := <-h.events:
				f()
			case <-h.quit:
				return
			}
		}
	})
	h.do(func() { d.Start(h) })
	return h
}

// do runs f on the loop goroutine and waits for it.
func (h *dasDriver) do(f func()) {
	ran := make(chan struct{})
	h.events <- func() { f(); close(ran) }
	<-ran
}

func (h *dasDriver) request(req *wire.StoreRequest, scheduled time.Time) {
	h.events <- func() {
		h.scheduled[req.ReqId] = scheduled
		h.d.Handle(h, node.Recv{From: node.Addr{Role: node.RoleLogic, Slot: 0}, Msg: req})
	}
}

func (h *dasDriver) stop() {
	h.do(func() {
		for _, t := range h.timers {
			t.Stop()
		}
	})
	close(h.quit)
	h.wg.Wait()
}

func (h *dasDriver) id() uint64 { h.nextID++; return h.nextID }

func (h *dasDriver) Self() node.Addr                            { return node.Addr{Role: node.RoleDas, Slot: 0} }
func (h *dasDriver) Incarnation() node.Incarnation              { return 1 }
func (h *dasDriver) Now() time.Time                             { return time.Now() }
func (h *dasDriver) Rand() *rand.Rand                           { return h.rnd }
func (h *dasDriver) Log() *slog.Logger                          { return h.log }
func (h *dasDriver) ToClient(node.ConnID, wire.Frame)           {}
func (h *dasDriver) Close(node.ConnID)                          {}
func (h *dasDriver) HTTPReply(node.ConnID, int, string, []byte) {}
func (h *dasDriver) AckDelivery(node.DeliveryID)                {}
func (h *dasDriver) NakDelivery(node.DeliveryID, time.Duration) {}

func (h *dasDriver) Send(_ node.Addr, m node.Message) {
	rep, ok := m.(*wire.StoreReply)
	if !ok {
		return
	}
	at, ok := h.scheduled[rep.ReqId]
	if !ok {
		return
	}
	delete(h.scheduled, rep.ReqId)
	h.onReply(rep, at)
}

func (h *dasDriver) After(d time.Duration, tag any) node.TimerID {
	id := node.TimerID(h.id())
	h.timers[id] = time.AfterFunc(d, func() {
		h.events <- func() {
			if _, ok := h.timers[id]; !ok {
				return // cancelled after it fired
			}
			delete(h.timers, id)
			h.d.Handle(h, node.Timer{ID: id, Tag: tag})
		}
	})
	return id
}

func (h *dasDriver) Cancel(id node.TimerID) {
	if t, ok := h.timers[id]; ok {
		t.Stop()
		delete(h.timers, id)
	}
}

func (h *dasDriver) Store(op node.StoreOp) node.ReqID {
	id := node.ReqID(h.id())
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := h.s.Append(ctx, op.Append)
		cancel()
		c := node.Completion{Req: id, Outcome: node.OK, Store: &node.StoreResult{Append: res}}
		if err != nil {
			c = node.Completion{Req: id, Outcome: node.Failed, Err: err}
		}
		h.events <- func() { h.d.Handle(h, c) }
	}()
	return id
}

// Registry, Presence and Publish complete at once: das registers and
// heartbeats, and ignores the outcome.
func (h *dasDriver) Registry(node.RegistryOp) node.ReqID {
	id := node.ReqID(h.id())
	go func() { h.events <- func() { h.d.Handle(h, node.Completion{Req: id, Outcome: node.OK}) } }()
	return id
}

func (h *dasDriver) Presence(node.PresenceOp) node.ReqID { return node.ReqID(h.id()) }

func (h *dasDriver) Publish(string, []byte, string) node.ReqID { return node.ReqID(h.id()) }
