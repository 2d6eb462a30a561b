package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestQuick runs a shortened quick mode (both systems, both rows when
// MariaDB and Redis are installed) and fails on any error, loss,
// duplicate or misdelivery. It starts servers and takes about a minute,
// so it runs only under PEERS_BENCH=1:
//
//	cd bench/peers && PEERS_BENCH=1 go test -run TestQuick -v
//
// The load generator is this test process, not pinned to its core as
// the command pins itself; the servers are pinned as usual.
func TestQuick(t *testing.T) {
	if os.Getenv("PEERS_BENCH") == "" {
		t.Skip("set PEERS_BENCH=1 to run the side-by-side benchmark briefly")
	}
	cfg, err := parseFlags([]string{"-mode", "quick", "-users", "20", "-rates", "200,500", "-warm", "500ms", "-step", "1s", "-drain", "5s", "-timeout", "4m"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.workDir = t.TempDir()
	if haveDurableDeps() != nil {
		cfg.rows = []string{rowMemory}
		t.Log("MariaDB or Redis not installed: memory row only")
	}
	cfg.progress = newProgress()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	rs, err := runAll(ctx, cfg)
	cfg.progress.close()
	if err != nil {
		t.Fatal(err)
	}
	if want := len(cfg.rows) * len(cfg.users) * len(cfg.systems); len(rs) != want {
		t.Fatalf("%d runs, want %d", len(rs), want)
	}
	md := report(cfg, rs, loadAvg(), loadAvg(), time.Now(), 0)
	t.Log("\n" + md)
	for _, r := range rs {
		if r.err != nil {
			t.Errorf("%s %s: %v", r.system, r.row, r.err)
			continue
		}
		if len(r.steps) != len(cfg.rates) {
			t.Errorf("%s %s: %d steps, want %d", r.system, r.row, len(r.steps), len(cfg.rates))
		}
		offered, acked, failed, delivered, lost, dups, mis := r.totals()
		if offered == 0 || lost != 0 || r.unfinished() != 0 || dups != 0 || mis != 0 || failed != 0 || acked != offered || delivered != offered {
			t.Errorf("%s %s: offered %d acked %d refused %d delivered %d lost %d dups %d misdelivered %d",
				r.system, r.row, offered, acked, failed, delivered, lost, dups, mis)
		}
		for _, s := range r.steps {
			if s.windowDelivered == 0 || s.serverCPU() <= 0 {
				t.Errorf("%s %s %d msg/s: no CPU or deliveries measured in the window", r.system, r.row, s.rate)
			}
		}
	}
	if !strings.Contains(md, "| memory | 20 | zzim |") || !strings.Contains(md, "| memory | 20 | centrifugo |") {
		t.Errorf("table lacks a memory row:\n%s", md)
	}
}

func TestBody(t *testing.T) {
	step, id, to, ok := parseBody(string(body(3, 12345, 7)))
	if !ok || step != 3 || id != 12345 || to != 7 {
		t.Fatalf("parseBody(body(3, 12345, 7)) = %d %d %d %v", step, id, to, ok)
	}
	for _, b := range []string{"", "x", "1:2", "1::3:", "a:1:2:", "1:2:3"} {
		if _, _, _, ok := parseBody(b); ok {
			t.Errorf("parseBody(%q) accepted", b)
		}
	}
}

func TestLossIsMarked(t *testing.T) {
	// A step whose messages never arrived must fail, and say LOST, once final.
	st := newStepTrack(10, 0)
	st.offered.Store(10)
	for i := range 8 {
		st.ack(i, i != 7) // 7 failed at its client: not a loss; 8 and 9 unanswered
	}
	for i := range 7 {
		st.deliveries[i].Store(1)
	}
	st.delivered.Store(7)
	s := stepResult{n: 10, track: st}
	s.recount(false)
	if s.pass || s.lost != 0 || !strings.Contains(s.why, "unanswered") {
		t.Fatalf("before the final recount: pass=%v lost=%d why=%q", s.pass, s.lost, s.why)
	}
	s.recount(true)
	if s.pass || s.lost != 0 || s.unfinished != 2 || s.failedUndelivered != 1 || !strings.Contains(s.why, "2 unfinished") {
		t.Fatalf("final: pass=%v lost=%d unfinished=%d why=%q", s.pass, s.lost, s.unfinished, s.why)
	}
	st.ack(8, true) // acknowledged, never delivered: lost
	s.recount(true)
	if s.pass || s.lost != 1 || s.unfinished != 1 || !strings.Contains(s.why, "1 LOST") {
		t.Fatalf("final: pass=%v lost=%d why=%q", s.pass, s.lost, s.why)
	}
	r := runResult{steps: []stepResult{s}}
	if _, _, _, _, lost, _, _ := r.totals(); lost != 1 || r.unfinished() != 1 {
		t.Fatalf("totals lost %d unfinished %d, want 1 and 1", lost, r.unfinished())
	}
}

func TestAfterRunSync(t *testing.T) {
	// Messages 0-3 acknowledged; 0 delivered live, 1 and 2 missing when
	// the drain ends; then 1 arrives by sync, 3 (unanswered) by sync too,
	// 2 never: lost, but in the store.
	tr := newTracker()
	st := newStepTrack(4, 0)
	tr.steps[0].Store(st)
	for i := range 3 {
		st.ack(i, true)
	}
	tr.deliver(1, string(body(0, 0, 1)), false)
	s := stepResult{n: 4, track: st, awaitedAtDrain: st.missingAcked()}
	if len(s.awaitedAtDrain) != 2 {
		t.Fatalf("awaited at the drain's end: %v, want [1 2]", s.awaitedAtDrain)
	}
	tr.recovering.Store(true)
	tr.recoverDeliver(1, string(body(0, 0, 1))) // already delivered: ignored
	tr.recoverDeliver(0, string(body(0, 0, 1))) // the sender's own, in the channel's history: ignored
	tr.recoverDeliver(1, string(body(0, 1, 1)))
	tr.deliver(0, string(body(0, 3, 0)), true)
	s.classify()
	s.audit(map[msgKey][]string{{0, 2}: {"c"}, {0, 1}: {"c"}})
	s.recount(true)
	if s.bySync != 1 || s.latePush != 0 || s.recoveredUnacked != 1 || s.lost != 1 || s.lostInStore != 1 || s.dups != 0 || s.misdelivered != 0 {
		t.Fatalf("bySync %d latePush %d recoveredUnacked %d lost %d inStore %d dups %d mis %d",
			s.bySync, s.latePush, s.recoveredUnacked, s.lost, s.lostInStore, s.dups, s.misdelivered)
	}
	if s.pass || !strings.Contains(s.why, "1 LOST") || !strings.Contains(s.why, "1 of them in the store") {
		t.Fatalf("pass=%v why=%q", s.pass, s.why)
	}
	r := runResult{steps: []stepResult{s}, drainEnd: tr.now()}
	if got := awaitedTiming(&r); !strings.Contains(got, "the 2 awaited") || !strings.Contains(got, "1 of them came") {
		t.Errorf("awaitedTiming: %q", got)
	}
	if c, _ := st.latencies(); c.n != 1 {
		t.Fatalf("%d latencies recorded, want only the live delivery's", c.n)
	}
}
