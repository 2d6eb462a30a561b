package loadgen

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSecondRunOnSameCluster: two generator runs with the same seed and
// user names against one cluster both pass verification. Logic keeps each
// (user, device) session's FIFO state, and cseq counts over a client's
// whole life: a second run that reused the first one's device started its
// cseqs at 1 on sessions that already had them done, so its sends were
// appended as resends of committed ones, out of order, and its message ids
// (<user>-<device>-<cseq>) collided with the first run's in the store's
// dedup. Each run must be a client life of its own.
func TestSecondRunOnSameCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for ~15 s")
	}
	tcp, _ := startCluster(t)
	for run := 1; run <= 2; run++ {
		p, err := LoadProfile("steady")
		if err != nil {
			t.Fatal(err)
		}
		p.SetRate(300)
		p.SetDuration(4 * time.Second)
		p.Workload.Users = 20 // few users, many sends each: pipelined cseqs
		p.Workload.Conversations = 20
		p.Workload.StartOver = Duration(200 * time.Millisecond)
		p.Drain = Duration(5 * time.Second)
		res, err := Run(context.Background(), Config{TCP: tcp, Secret: []byte(testSecret), Profile: p, Verify: true, Seed: 11})
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if res.Verdict == nil || !res.Verdict.Pass {
			var b strings.Builder
			if res.Verdict != nil {
				_ = res.Verdict.Report(&b)
			}
			report := b.String()
			if len(report) > 3000 {
				report = report[:3000]
			}
			t.Fatalf("run %d: verify got %s, want pass", run, report)
		}
		t.Logf("run %d: %s", run, res.Verdict.Line())
	}
}
