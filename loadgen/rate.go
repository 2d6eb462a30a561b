package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// idleStep is how far the arrival process looks ahead when the rate is 0.
const idleStep = 10 * time.Millisecond

// RateAt is the profile's offered send rate (per second) at t into the run.
func (w *Workload) RateAt(t time.Duration) float64 {
	r := w.baseAt(t)
	if w.Sine != nil {
		r *= 1 + w.Sine.Amplitude*math.Sin(2*math.Pi*float64(t)/float64(w.Sine.Period))
	}
	return r * w.SpikeFactor(t)
}

// baseAt: Rate, then the last step begun, then a ramp from there.
func (w *Workload) baseAt(t time.Duration) float64 {
	r := w.Rate
	for _, s := range w.Steps {
		if t >= s.At.D() {
			r = s.Rate
		}
	}
	if rp := w.Ramp; rp != nil && t >= rp.At.D() {
		from := w.Rate
		for _, s := range w.Steps {
			if rp.At >= s.At {
				from = s.Rate
			}
		}
		frac := min(1, float64(t-rp.At.D())/float64(rp.For))
		r = from + (rp.To-from)*frac
	}
	return r
}

// SpikeFactor is the product of the multipliers of the spikes active at t.
func (w *Workload) SpikeFactor(t time.Duration) float64 {
	f := 1.0
	for _, s := range w.Spikes {
		if t >= s.At.D() && t < s.At.D()+s.For.D() {
			f *= s.Multiplier
		}
	}
	return f
}

// arrivals yields the intended times of sends: evenly spaced at the current
// rate, or a Poisson process whose rate follows the profile.
type arrivals struct {
	w       *Workload
	poisson bool
	rnd     *rand.Rand
	next    time.Duration
	end     time.Duration
}

func newArrivals(w *Workload, end time.Duration, rnd *rand.Rand) *arrivals {
	a := &arrivals{w: w, poisson: w.Arrivals == ArrivalsPoisson, rnd: rnd, end: end}
	a.next = a.gapFrom(0)
	return a
}

// pop returns the next intended time; false once past the end.
func (a *arrivals) pop() (time.Duration, bool) {
	t := a.next
	if t >= a.end {
		return 0, false
	}
	a.next = t + a.gapFrom(t)
	return t, true
}

// gapFrom is the gap after t at the rate there (skipping idle stretches
// in idleStep increments, so a zero rate does not stop the process).
func (a *arrivals) gapFrom(t time.Duration) time.Duration {
	var gap time.Duration
	for t+gap < a.end {
		r := a.w.RateAt(t + gap)
		if r > 0 {
			u := 1.0
			if a.poisson {
				u = a.rnd.ExpFloat64()
			}
			return gap + max(time.Duration(u/r*float64(time.Second)), 1)
		}
		gap += idleStep
	}
	return gap + 1
}
