package sim

import (
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
