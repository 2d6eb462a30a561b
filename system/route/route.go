// Package route picks the instance that serves a key: home slot
// x = fnv1a64(key) % n, and when x is dead, (x+p) % n for p = 1..n-1,
// skipping slots believed dead. Membership marks slots alive or dead; it
// never renumbers them, so a death moves only the dead slot's keys, and a key
// whose home slot is alive is never moved.
package route

// FNV-1a 64-bit parameters. Never hash/maphash: it is seeded per process, so
// two processes would disagree on a user's home.
const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// Hash is FNV-1a 64 of key's bytes.
func Hash(key string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime64
	}
	return h
}

// Home is the key's home slot among n.
func Home(key string, n int) int {
	if n <= 0 {
		panic("route: no slots")
	}
	return int(Hash(key) % uint64(n))
}

// Pick returns the slot to try for key: its home if alive, else the first
// (x+p) % n for p = 1..n-1 that is alive. alive[i] reports slot i; len(alive)
// is n. ok is false when no slot is alive.
func Pick(key string, alive []bool) (slot int, ok bool) {
	return PickFrom(Home(key, len(alive)), alive, 0)
}

// PickFrom returns the first alive slot among (home+p) % n for p = from..n-1.
// A caller that timed out on attempt p retries with from = p+1.
func PickFrom(home int, alive []bool, from int) (slot int, ok bool) {
	n := len(alive)
	for p := from; p < n; p++ {
		s := (home + p) % n
		if alive[s] {
			return s, true
		}
	}
	return 0, false
}

// Next returns the next alive slot after current in the probe order of home,
// wrapping around; it returns current itself when no other slot is alive.
// Callers use it after a timeout on current: try the next one.
func Next(home, current int, alive []bool) (int, bool) {
	n := len(alive)
	p := ((current-home)%n + n) % n
	for i := 1; i <= n; i++ {
		s := (home + p + i) % n
		if alive[s] {
			return s, true
		}
	}
	return 0, false
}
