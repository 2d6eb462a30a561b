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

func TestScale(t *testing.T) {
	start := time.Now()
	h, dump := Generate(GenConfig{Seed: 1, Conversations: 1000, Ops: 100000, UnknownRate: 0.02, ErrorRate: 0.02, PushLossRate: 0.05})
	t.Log("gen", time.Since(start), len(h.Ops))
	start = time.Now()
	v, err := Check(h, Options{Dump: dump, LivenessBound: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("check", time.Since(start), v.Line())
}
