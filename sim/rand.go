package sim

import (
	"math/rand/v2"
	"time"
)

// Stream names. Each stream is seeded from (seed, name) alone, so what one
// part of the simulation draws never shifts another's draws.
const (
	streamWorkload = "workload"
	streamFaults   = "faults"
	streamNetwork  = "network"
	streamDeps     = "deps"
)

// streamSeed mixes the seed and a name into two PCG words (FNV-1a, then a
// splitmix finaliser so nearby seeds give unrelated streams).
func streamSeed(seed uint64, name string) (uint64, uint64) {
	h := uint64(14695981039346656037)
	for i := 0; i < 8; i++ {
		h ^= (seed >> (8 * i)) & 0xff
		h *= 1099511628211
	}
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return mix64(h), mix64(h ^ 0x9e3779b97f4a7c15)
}

func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newStream returns the PRNG stream name of seed.
func newStream(seed uint64, name string) *rand.Rand {
	a, b := streamSeed(seed, name)
	return rand.New(rand.NewPCG(a, b))
}

// expDuration draws an exponential duration of the given mean (0 → 0).
func expDuration(r *rand.Rand, mean time.Duration) int64 {
	if mean <= 0 {
		return 0
	}
	return int64(r.ExpFloat64() * float64(mean))
}

// latency draws min + Exp(mean).
func latency(r *rand.Rand, min, mean time.Duration) int64 {
	return int64(min) + expDuration(r, mean)
}

// coin reports true with probability p, drawing only when 0 < p < 1 so that
// a zero probability consumes nothing from the stream.
func coin(r *rand.Rand, p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	return r.Float64() < p
}
