package sim

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// SweepResult is one seed's outcome in a sweep.
type SweepResult struct {
	Seed   uint64
	Result *Result
	Err    error
}

// Sweep runs cfgFor(seed) for every seed on jobs worker goroutines (each
// run is single-threaded; parallelism is across runs) and returns the
// results in seed order. progress, if set, is called after each run from
// the worker that finished it, one call at a time.
func Sweep(cfgFor func(seed uint64) Config, seeds []uint64, jobs int, progress func(SweepResult)) []SweepResult {
	if jobs <= 0 {
		jobs = 1
	}
	out := make([]SweepResult, len(seeds))
	next := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < min(jobs, len(seeds)); w++ {
		wg.Add(1)
		go func() { // determinism-ok: the sweep driver runs whole, independent runs in parallel; each run is one goroutine of its own
			defer wg.Done()
			for i := range next {
				cfg := cfgFor(seeds[i])
				cfg.Seed = seeds[i]
				res, err := Run(cfg)
				out[i] = SweepResult{Seed: seeds[i], Result: res, Err: err}
				if progress != nil {
					mu.Lock()
					progress(out[i])
					mu.Unlock()
				}
			}
		}()
	}
	for i := range seeds {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// Shard is one of Count slices of a sweep's seed range: the seed at index i
// of the range (i from 0) belongs to shard i mod Count. Interleaving, not
// cutting the range in blocks, keeps the shards' costs even when the cost
// of a seed drifts along the range, and lets every machine of a CI matrix
// or batch job compute its own slice from its index alone: no coordinator.
type Shard struct {
	Index, Count int
}

// shardCountMax bounds N in K/N: more shards than this is a typo, not a plan.
const shardCountMax = 100_000

// WholeRange is the shard of an unsplit sweep.
var WholeRange = Shard{Index: 0, Count: 1}

// ParseShard reads "K/N" with 0 <= K < N (0-based, so a Kubernetes
// JOB_COMPLETION_INDEX or a matrix index from 0 fits as is).
func ParseShard(s string) (Shard, error) {
	k, n, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Shard{}, fmt.Errorf("%q: want K/N, shard K of N counted from 0 (e.g. 0/4 .. 3/4)", s)
	}
	index, err1 := strconv.Atoi(strings.TrimSpace(k))
	count, err2 := strconv.Atoi(strings.TrimSpace(n))
	if err := errors.Join(err1, err2); err != nil {
		return Shard{}, fmt.Errorf("%q: want K/N with whole numbers (e.g. 0/4 .. 3/4)", s)
	}
	switch {
	case count < 1 || count > shardCountMax:
		return Shard{}, fmt.Errorf("%q: N must be from 1 to %d", s, shardCountMax)
	case index < 0 || index >= count:
		return Shard{}, fmt.Errorf("%q: K must be from 0 to N-1 = %d (shards are counted from 0)", s, count-1)
	}
	return Shard{Index: index, Count: count}, nil
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// Owns reports whether the seed at index i of the range is this shard's.
func (s Shard) Owns(i uint64) bool { return i%uint64(s.Count) == uint64(s.Index) }

// Of returns the shard's seeds of the range first..last, in order.
func (s Shard) Of(first, last uint64) []uint64 {
	if last < first {
		return nil
	}
	out := make([]uint64, 0, (last-first)/uint64(s.Count)+1)
	for seed := first + uint64(s.Index); seed <= last && seed >= first; seed += uint64(s.Count) {
		out = append(out, seed)
	}
	return out
}
