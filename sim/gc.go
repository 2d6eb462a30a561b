package sim

import (
	"os"
	"runtime/debug"
)

// BatchGCPercent is the garbage collector's target the simulator runs
// with. A run allocates small, short-lived values at a high rate (events,
// messages, history ops) and its live heap is modest, so at Go's default
// of 100 the collector takes about a quarter of the CPU. At 400 it takes a
// fraction of that: BenchmarkStandard measured 656k events/cpu-s at 100,
// 878k at 400 and 935k at 800 side by side in one run, for a heap a few
// times larger (hundreds of MB for bench-standard, on a 24 GiB machine).
const BatchGCPercent = 400

// TuneGC sets the collector for a batch of simulator runs unless the user
// chose a GOGC of their own, and returns the function that restores the
// previous setting. Commands and benchmarks call it; Run does not, because
// a library should not change a process-wide setting behind its caller.
func TuneGC() (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	prev := debug.SetGCPercent(BatchGCPercent)
	return func() { debug.SetGCPercent(prev) }
}
