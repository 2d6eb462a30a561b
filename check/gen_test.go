package check

import (
	"testing"
	"time"
)

func genDefault(seed uint64) GenConfig {
	return GenConfig{Seed: seed, Conversations: 12, Users: 10, Ops: 2000, UnknownRate: 0.05, ErrorRate: 0.05, PushLossRate: 0.1, SyncLimit: 5}
}

func TestGeneratedHistoryPasses(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		h, dump := Generate(genDefault(seed))
		v, err := Check(h, Options{Dump: dump, LivenessBound: 10 * time.Second, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !v.Pass {
			for _, vi := range v.Violations[:min(5, len(v.Violations))] {
				t.Log(vi)
			}
			t.Fatalf("seed %d: got %s, want pass", seed, v.Line())
		}
		t.Log(v.Line())
	}
}

func TestGeneratedHistoryPassesWithoutDump(t *testing.T) {
	h, _ := Generate(genDefault(7))
	v, err := Check(h, Options{LivenessBound: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !v.Pass {
		t.Fatalf("got %s, want pass; first: %v", v.Line(), v.Violations[0])
	}
}

// BenchmarkCheck100k: a generated 100,000-operation history over 1,000
// conversations, checked in full (structural + linearizability). Target:
// under 10 s per check on a 2-core machine. Run with -benchtime 1x.
func BenchmarkCheck100k(b *testing.B) {
	h, dump := Generate(GenConfig{Seed: 1, Conversations: 1000, Ops: 100000, UnknownRate: 0.02, ErrorRate: 0.02, PushLossRate: 0.05})
	opts := Options{Dump: dump, LivenessBound: 10 * time.Second, Timeout: time.Minute}
	b.ResetTimer()
	var v *Verdict
	for i := 0; i < b.N; i++ {
		var err error
		if v, err = Check(h, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if !v.Pass {
		b.Fatalf("got %s, want pass", v.Line())
	}
	perCheck := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(perCheck.Nanoseconds())/float64(len(h.Ops)), "ns/history-op")
	b.ReportMetric(perCheck.Seconds(), "s/check")
	b.Log(v.Line())
}
