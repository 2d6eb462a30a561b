package sim

import "strings"

// Transparent huge pages for the simulator's heap.
//
// A swarm seed touches about a gigabyte of fresh heap, and on the virtual
// machines zzim is measured on, every 4 KiB page costs a fault on first
// touch (about 8 µs each, 250k of them a seed) and the TLB misses of a
// gigabyte mapped in 4 KiB pages on every access after. Backed by 2 MiB
// pages, one run (`zzim sim run`, the benchmarks) took 0.7x to 0.85x the
// CPU; a long sweep gains far less (about 0.98x), because it reuses its
// heap from seed to seed and faults it in only once (docs/performance.md).
// Go's runtime asks for huge pages only for its own metadata, and most
// Linux distributions set transparent huge pages to "madvise", so the heap
// gets them only if the process asks: adviseHugePages does, for a batch
// simulator's heap, where a few MB of rounding per process do not matter.
// It changes nothing a run computes: only how the kernel backs its memory.

// hugePagePreGrow is how much heap adviseHugePages maps (and frees, never
// touching it) before the first run, so that the heap runs grow into is
// already advised when its pages are first touched: advice given after a
// page's first touch does not change that page (growth past this is
// advised after each garbage collection, too late for most of it). One
// swarm seed's heap peaks at about 1 GB, a sweep with two jobs at about
// 3.5 GB; the untouched pages cost no memory. A quarter of the machine's
// memory at most.
func hugePagePreGrow(machine int64) int64 {
	const most = 4 << 30
	if machine <= 0 {
		return 1 << 30
	}
	return min(most, machine/4)
}

// thpMode reads the kernel's policy from the contents of
// /sys/kernel/mm/transparent_hugepage/enabled ("always [madvise] never"):
// the bracketed word, or "" when there is none.
func thpMode(enabled string) string {
	open := strings.IndexByte(enabled, '[')
	end := strings.IndexByte(enabled, ']')
	if open < 0 || end < open {
		return ""
	}
	return enabled[open+1 : end]
}

// thpDisabledByGODEBUG reports whether GODEBUG asks for no huge pages on
// the heap (Go's own disablethp=1): the simulator then does not ask either.
func thpDisabledByGODEBUG(godebug string) bool {
	for _, kv := range strings.Split(godebug, ",") {
		if strings.TrimSpace(kv) == "disablethp=1" {
			return true
		}
	}
	return false
}
