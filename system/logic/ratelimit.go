package logic

import (
	"container/list"
	"time"
)

// Per-user send rate. The bucket lives in logic, not entry: a user's
// requests from every entry, httpentry and device hash to one logic slot
// (route.Pick by user), so one bucket there sees all of the user's sends.
// After a failover the user's sends reach another slot with a fresh (full)
// bucket: the limit is per slot, so a failover can grant one extra burst.
//
// A rate-limited SEND is a definite rejection: nothing was appended, the
// answer is ERROR RATE_LIMITED, and the session's later cseqs are rejected
// OUT_OF_ORDER until the client resends from the rejected one (go-back-N,
// promise 4), exactly like an OVERLOADED append. The reference client
// resends after a backoff, so nothing is lost.
const (
	// SendRatePerSecondDefault is the steady per-user send rate.
	SendRatePerSecondDefault = 20
	// SendBurstDefault is how many sends a user may make at once after
	// being quiet for SendBurst/SendRatePerSecond seconds.
	SendBurstDefault = 40
	// RateBucketsMaxDefault bounds the users with a bucket. Past it the
	// least recently used bucket is forgotten: that user starts full again
	// (one extra burst), which bounds memory without refusing anyone.
	RateBucketsMaxDefault = 100000
)

// bucket is a token bucket kept as GCRA: tat is the theoretical arrival
// time of the next send at the steady rate. Integer time, no float drift.
type bucket struct {
	user string
	tat  time.Time
	elem *list.Element
}

// limiter holds the buckets of the users this instance has seen.
type limiter struct {
	interval time.Duration // 1s / rate; 0: no limit
	burst    int
	max      int
	buckets  map[string]*bucket
	lru      *list.List // of *bucket, most recent first
}

func newLimiter(ratePerSecond, burst, bucketsMax int) *limiter {
	l := &limiter{burst: burst, max: bucketsMax, buckets: map[string]*bucket{}, lru: list.New()}
	if ratePerSecond > 0 {
		l.interval = time.Second / time.Duration(ratePerSecond)
	}
	return l
}

// allow takes one token of user's bucket at now; false when it is empty.
func (l *limiter) allow(user string, now time.Time) bool {
	if l.interval == 0 {
		return true
	}
	b := l.buckets[user]
	if b == nil {
		if len(l.buckets) >= l.max {
			oldest := l.lru.Back().Value.(*bucket)
			l.lru.Remove(oldest.elem)
			delete(l.buckets, oldest.user)
		}
		b = &bucket{user: user, tat: now}
		b.elem = l.lru.PushFront(b)
		l.buckets[user] = b
	} else {
		l.lru.MoveToFront(b.elem)
	}
	tat := b.tat
	if tat.Before(now) {
		tat = now
	}
	if tat.Sub(now) > time.Duration(l.burst)*l.interval {
		// tat is never set further ahead than burst intervals: the clock
		// stepped back (NTP, a skewed node corrected). Judge from now
		// instead of refusing the user until the clock catches up.
		tat = now
	}
	next := tat.Add(l.interval)
	// Allowed while next is at most burst intervals ahead of now: a full
	// bucket (tat <= now) admits burst sends back to back.
	if next.Sub(now) > time.Duration(l.burst)*l.interval {
		return false
	}
	b.tat = next
	return true
}
