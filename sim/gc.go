package sim

import (
	"bufio"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// BatchGCPercent is the garbage collector's target the simulator runs
// with. A run allocates small, short-lived values at a high rate (events,
// messages, history ops) and its live heap is modest, so at Go's default
// of 100 the collector takes about a quarter of the CPU. At 400 it takes a
// fraction of that: BenchmarkStandard measured 656k events/cpu-s at 100,
// 878k at 400 and 935k at 800 side by side in one run, for a heap a few
// times larger (hundreds of MB for bench-standard, on a 24 GiB machine).
const BatchGCPercent = 400

// MemoryLimitFraction is the share of the machine's memory (or of the
// cgroup's limit, when lower) TuneGC sets as the Go runtime's soft memory
// limit. GC target 400 lets the heap grow to five times what is live: for
// broadcast-100k, a live heap of a few GB per run, so `sim sweep --jobs 2`
// grew one process to 24 GB on a 24 GB machine and stalled it under memory
// pressure (2026-11-27). Under the limit the collector works harder only
// as the heap nears it, which costs nothing for the small scenarios.
const MemoryLimitFraction = 0.75

// TuneGC sets the collector for a batch of simulator runs unless the user
// chose a GOGC (or GOMEMLIMIT) of their own, and returns the function that
// restores the previous settings. Commands and benchmarks call it; Run does
// not, because a library should not change a process-wide setting behind
// its caller.
//
// It also asks for transparent huge pages on the heap (adviseHugePages)
// unless GODEBUG has disablethp=1.
func TuneGC() (restore func()) {
	restores := []func(){adviseHugePages(hugePagePreGrow(machineMemory()))}
	if _, set := os.LookupEnv("GOGC"); !set {
		prev := debug.SetGCPercent(BatchGCPercent)
		restores = append(restores, func() { debug.SetGCPercent(prev) })
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		if total := machineMemory(); total > 0 {
			prev := debug.SetMemoryLimit(int64(float64(total) * MemoryLimitFraction))
			restores = append(restores, func() { debug.SetMemoryLimit(prev) })
		}
	}
	return func() {
		for _, r := range restores {
			r()
		}
	}
}

// machineMemory is the memory this process may use, in bytes: the lower of
// /proc/meminfo's MemTotal and the cgroup v2 limit; 0 when neither is known
// (not Linux): the memory limit is then left as it is.
func machineMemory() int64 {
	var meminfo, cgroupMax string
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		meminfo = string(b)
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		cgroupMax = string(b)
	}
	return memoryOf(meminfo, cgroupMax)
}

// memoryOf parses /proc/meminfo's MemTotal and a cgroup v2 memory.max
// ("max" or a byte count) and returns the lower known one, or 0.
func memoryOf(meminfo, cgroupMax string) int64 {
	var total int64
	sc := bufio.NewScanner(strings.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil && kb > 0 && kb < math.MaxInt64/1024 {
				total = kb * 1024
			}
			break
		}
	}
	if v, err := strconv.ParseInt(strings.TrimSpace(cgroupMax), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
		total = v
	}
	return total
}
