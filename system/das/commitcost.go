package das

import "time"

// commitCost learns what one more append adds to a group commit's time:
// the slope of commit time over batch size, by least squares over recent
// commits (exponentially weighted, weight 1/4, so a few transactions follow
// a change). The batch cap is BatchDurationMax over that slope.
//
// Why a slope and not time per append: a commit's time is a fixed part (a
// round trip, an fsync, a semi-synchronous replica's acknowledgement) plus
// a part per row. Dividing the whole time by the batch size charges the
// fixed part to the rows: with a 200ms semi-sync commit and batches of one,
// time per append is 200ms, the cap stays at one, and das commits 5
// appends a second per transaction slot however deep its queue. Bigger
// batches cost such a store nothing, so only the per-row part may shrink
// them.
//
// Integer arithmetic (sizes in thousandths of an append, times in
// nanoseconds) keeps the estimate the same on every platform, as the
// simulator's traces require.
type commitCost struct {
	seen bool
	n    int64 // mean batch size, milli-appends
	t    int64 // mean commit time, ns
	nn   int64 // mean of size², milli-appends²
	nt   int64 // mean of size × time, milli-appends × ns
}

const (
	// commitTimeMax clamps one observation so the products stay in int64.
	commitTimeMax = 10 * time.Second
	// batchSizeVarianceMin (in appends², as milli-appends²) is the spread of
	// recent batch sizes below which the slope is not estimated: batches all
	// of one size say nothing of what a row costs.
	batchSizeVarianceMin = 50_000
	milli                = 1000
)

// observe folds one committed batch of n appends that took d.
func (c *commitCost) observe(n int, d time.Duration) {
	d = min(max(d, 0), commitTimeMax)
	x, y := int64(n)*milli, int64(d)
	if !c.seen {
		*c = commitCost{seen: true, n: x, t: y, nn: x * x, nt: x * y}
		return
	}
	c.n = (3*c.n + x) / 4
	c.t = (3*c.t + y) / 4
	c.nn = (3*c.nn + x*x) / 4
	c.nt = (3*c.nt + x*y) / 4
}

// batchCap is the largest batch whose per-row part of the commit is
// expected to fit in budget, between 1 and limit.
//
// While recent batches were all of one size the slope is unknown: the cap
// is then what the time per append allows (an upper bound on the slope),
// but at least one more than the recent size, so a store whose cost is per
// transaction is shown a bigger batch, and the sizes spread enough to
// measure.
func (c *commitCost) batchCap(budget time.Duration, limit int) int {
	if !c.seen {
		return limit
	}
	clamp := func(v int64) int { return int(min(max(v, 1), int64(limit))) }
	variance := c.nn - c.n*c.n
	if variance < batchSizeVarianceMin {
		perAppend := c.t * milli / max(c.n, 1) // ns per append
		byTime := int64(limit)
		if perAppend > 0 {
			byTime = int64(budget) / perAppend
		}
		return clamp(max(byTime, (c.n+milli/2)/milli+1))
	}
	covariance := c.nt - c.n*c.t             // milli-appends × ns
	slope := covariance / (variance / milli) // ns per append
	if slope <= 0 {
		return limit // bigger batches were no slower
	}
	return clamp(int64(budget) / slope)
}
