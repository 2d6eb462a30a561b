package sim

import (
	"runtime"
	"testing"
	"time"
)

// faultyConfig is a small run with a fault of most kinds, so the trace
// hash covers crash, restart, partitions, store unknowns, queue faults and
// registry delays, not only the happy path.
func faultyConfig(seed uint64) Config {
	cfg := smallConfig(seed)
	cfg.Duration = 4 * time.Second
	cfg.Workload.ChurnRate = 0.05
	cfg.Workload.OfflineMean = 500 * time.Millisecond
	cfg.Workload.NoticeRate = 2
	cfg.Workload.BroadcastRate = 0.5
	cfg.Faults = []Fault{
		{At: 500 * time.Millisecond, For: 1500 * time.Millisecond, Kind: FaultCrash, Target: "logic-1"},
		{At: 1 * time.Second, For: 1 * time.Second, Kind: FaultPartition, Target: "entry-0|logic-0"},
		{At: 1 * time.Second, For: 2 * time.Second, Kind: FaultDBUnknown, Prob: 0.2},
		{At: 2 * time.Second, For: 1 * time.Second, Kind: FaultQueueDuplicate, Prob: 0.3},
		{At: 2 * time.Second, For: 1 * time.Second, Kind: FaultReorder, Target: "logic", Prob: 0.3},
		{At: 2500 * time.Millisecond, Kind: FaultPresenceStale, Prob: 0.5},
		{At: 3 * time.Second, For: 500 * time.Millisecond, Kind: FaultPause, Target: "das-0"},
		{At: 0, For: 3 * time.Second, Kind: FaultRegistryDelay, Delay: 300 * time.Millisecond},
	}
	return cfg
}

// TestDeterminism: 20 seeds, each run twice and once more under another
// GOMAXPROCS, give one trace hash per seed; different seeds differ.
func TestDeterminism(t *testing.T) {
	const seeds = 20
	hashes := map[uint64]uint64{}
	prev := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(prev)
	for seed := uint64(1); seed <= seeds; seed++ {
		var got [3]uint64
		var errs [3]string
		for i := range got {
			runtime.GOMAXPROCS([]int{prev, prev, 1}[i])
			res, err := Run(faultyConfig(seed))
			if err != nil {
				t.Fatalf("seed %d run %d: %v", seed, i, err)
			}
			got[i] = res.TraceHash
			if res.Err != nil {
				// A service bug stops the run; it must stop the same way each time.
				errs[i] = res.Err.Error()
			}
		}
		if got[0] != got[1] || got[0] != got[2] {
			t.Errorf("seed %d: trace hashes %016x %016x %016x, want all equal", seed, got[0], got[1], got[2])
		}
		if errs[0] != errs[1] || errs[0] != errs[2] {
			t.Errorf("seed %d: run errors %q, %q, %q, want all equal", seed, errs[0], errs[1], errs[2])
		}
		if errs[0] != "" {
			t.Logf("seed %d: the system failed (deterministically): %s", seed, errs[0])
		}
		if other, dup := hashes[got[0]]; dup {
			t.Errorf("seeds %d and %d: same trace hash %016x, want different", other, seed, got[0])
		}
		hashes[got[0]] = seed
	}
}

// TestStreamsIndependent: removing a fault leaves the workload's draws
// alone, so the same messages are sent (by count) with and without it.
func TestStreamsIndependent(t *testing.T) {
	with := faultyConfig(7)
	without := faultyConfig(7)
	without.Faults = nil
	a, err := Run(with)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(without)
	if err != nil {
		t.Fatal(err)
	}
	if a.Sim["sends"]+a.Sim["sends_refused"] != b.Sim["sends"]+b.Sim["sends_refused"] {
		t.Errorf("send attempts with faults %d, without %d, want equal",
			a.Sim["sends"]+a.Sim["sends_refused"], b.Sim["sends"]+b.Sim["sends_refused"])
	}
	if a.TraceHash == b.TraceHash {
		t.Errorf("trace hash %016x with and without faults, want different", a.TraceHash)
	}
}
