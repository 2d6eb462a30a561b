package sim

import "testing"

// TestSweep: parallel runs give the same results as sequential ones, in
// seed order, and progress hears about every seed once.
func TestSweep(t *testing.T) {
	seeds := []uint64{3, 1, 4, 15, 9, 2}
	heard := map[uint64]int{}
	out := Sweep(smallConfig, seeds, 3, func(r SweepResult) { heard[r.Seed]++ })
	if len(out) != len(seeds) {
		t.Fatalf("got %d results, want %d", len(out), len(seeds))
	}
	for i, r := range out {
		if r.Seed != seeds[i] {
			t.Errorf("result %d is seed %d, want %d", i, r.Seed, seeds[i])
		}
		if r.Err != nil {
			t.Fatalf("seed %d: %v", r.Seed, r.Err)
		}
		if heard[r.Seed] != 1 {
			t.Errorf("progress heard seed %d %d times, want 1", r.Seed, heard[r.Seed])
		}
		alone, err := Run(smallConfig(r.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if alone.TraceHash != r.Result.TraceHash {
			t.Errorf("seed %d: sweep hash %016x, alone %016x, want equal", r.Seed, r.Result.TraceHash, alone.TraceHash)
		}
	}
}
