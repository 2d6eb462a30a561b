// Package leaky is a lint fixture: every marked line is a determinism leak.
package leaky

import (
	crand "crypto/rand"
	"math/rand"
	"time"
)

func Leaks(ch chan int) {
	_ = time.Now()   // wall clock
	_ = rand.Intn(3) // global randomness
	go func() {}()   // goroutine
	select {         // select
	case <-ch:
	case <-time.After(time.Second): // wall-clock timer
	}
	var b [4]byte
	_, _ = crand.Read(b[:]) // OS randomness
	r := rand.New(rand.NewSource(1))
	_ = r.Intn(3)
	_ = time.Now() // determinism-ok: allowed by the opt-out comment
	_ = time.Duration(3)
}
