//go:build linux

package sim

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
)

// adviseHugePages asks for transparent huge pages on the heap's anonymous
// mappings when the kernel's policy is "madvise" (under "always" they are
// already used; under "never" they cannot be), and keeps asking after each
// garbage collection for mappings the heap has grown into since. stop ends
// the asking.
func adviseHugePages(preGrow int64) (stop func()) {
	enabled, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || thpMode(string(enabled)) != "madvise" || thpDisabledByGODEBUG(os.Getenv("GODEBUG")) {
		return func() {}
	}
	// Map the heap without touching it (fresh memory needs no zeroing) and
	// free it: the pages stay mapped for later allocations.
	pre := make([]byte, preGrow)
	runtime.KeepAlive(pre)
	pre = nil
	runtime.GC()
	adviseAnonMappings()
	var stopped atomic.Bool
	armGCHook(&stopped)
	return func() { stopped.Store(true) }
}

// gcSentinel is garbage as soon as it is made; its finalizer runs once per
// collection that finds it and re-arms the hook with a fresh one.
type gcSentinel struct{ _ [16]byte } // larger than the tiny allocator's 16 B blocks, so it is freed on its own

func armGCHook(stopped *atomic.Bool) {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) { // determinism-ok: a finalizer only advises the kernel on memory; nothing a run computes reads it
		if stopped.Load() {
			return
		}
		adviseAnonMappings()
		armGCHook(stopped)
	})
}

// adviseAnonMappings applies MADV_HUGEPAGE to every private, writable,
// anonymous mapping of at least 4 MiB in /proc/self/maps (the Go heap's
// arenas among them); applying it again to an advised one is harmless.
func adviseAnonMappings() {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lo, hi, ok := anonRWMapping(sc.Bytes())
		if !ok || hi-lo < 4<<20 {
			continue
		}
		syscall.Syscall(syscall.SYS_MADVISE, lo, hi-lo, 14 /* MADV_HUGEPAGE */)
	}
}

// anonRWMapping parses a /proc/self/maps line and returns its address
// range when it is a private read-write mapping of no file.
func anonRWMapping(line []byte) (lo, hi uintptr, ok bool) {
	f := bytes.Fields(line)
	if len(f) < 5 || !bytes.HasPrefix(f[1], []byte("rw-p")) || len(f) > 5 && !bytes.HasPrefix(f[5], []byte("[anon")) {
		return 0, 0, false
	}
	dash := bytes.IndexByte(f[0], '-')
	if dash < 0 {
		return 0, 0, false
	}
	l, err1 := strconv.ParseUint(string(f[0][:dash]), 16, 64)
	h, err2 := strconv.ParseUint(string(f[0][dash+1:]), 16, 64)
	if err1 != nil || err2 != nil || h <= l {
		return 0, 0, false
	}
	return uintptr(l), uintptr(h), true
}
