package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// A message's body names its step, its id within the step and its
// recipient, then pads to a chat message's size:
//
//	<step>:<id>:<to>:<text>
//
// The recipient measures latency from the same process's clock, so the
// body needs no timestamp: the tracker holds each message's intended and
// actual send times.
const bodyText = "hi, is the bike still for sale? I can pick it up tomorrow"

func body(step, id, to int) []byte {
	b := make([]byte, 0, 24+len(bodyText))
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(id), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(to), 10)
	b = append(b, ':')
	return append(b, bodyText...)
}

// parseBody returns step, id and recipient, ok false for a body not ours.
func parseBody(b string) (step, id, to int, ok bool) {
	var f [3]int
	n, v, digits := 0, 0, 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == ':' {
			if digits == 0 {
				return 0, 0, 0, false
			}
			f[n], v, digits = v, 0, 0
			if n++; n == 3 {
				return f[0], f[1], f[2], true
			}
			continue
		}
		if c < '0' || c > '9' {
			return 0, 0, 0, false
		}
		v, digits = v*10+int(c-'0'), digits+1
	}
	return 0, 0, 0, false
}

// histMax bounds recorded latencies (µs): two minutes.
const histMax = 120_000_000

// stepTrack counts one step's messages and their latencies. Ids are
// 0..n-1 in schedule order; intended[i] is when message i was due
// (nanoseconds from the run's epoch), sent[i] when its client took it.
type stepTrack struct {
	stepNo     int // its number in the tracker, as in the bodies
	n          int
	intended   []int64
	sent       []atomic.Int64
	deliveries []atomic.Int32
	acks       []atomic.Int32 // ackNone, ackOK or ackFailed
	// late marks messages first delivered by the recipients' sync after
	// the run (tracker.recovering): not live, but reachable in the store.
	late      []atomic.Uint32 // lateNone, lateLive or lateSync
	recovered atomic.Int64    // distinct messages first delivered after the drain
	// frozen (the tracker's) stops the counts before the store is read,
	// so that every send counted acknowledged was committed before that
	// read; answers after it are counted apart and the send stays unanswered.
	frozen             *atomic.Bool
	answersAfterFreeze atomic.Int64
	// When each message was acknowledged and first delivered (the
	// tracker's clock): for the ones still awaited when the drain ended,
	// how close to that instant they were acknowledged and how long after
	// it they came says whether they were in flight or lost.
	epoch        time.Time
	ackedAt      []atomic.Int64
	deliveredAt  []atomic.Int64
	warmEnd      int64 // messages intended before this are warm-up
	offered      atomic.Int64
	acked        atomic.Int64
	ackFailed    atomic.Int64 // refused, or no answer within the client's timeout
	delivered    atomic.Int64 // distinct messages delivered
	dups         atomic.Int64 // deliveries of a message already delivered
	misdelivered atomic.Int64 // deliveries to a user who is not the recipient

	mu        sync.Mutex
	corrected *hdrhistogram.Histogram // from the intended time (coordinated omission corrected)
	raw       *hdrhistogram.Histogram // from when the client took the send
}

func newStepTrack(n int, warmEnd int64) *stepTrack {
	return &stepTrack{
		n: n, intended: make([]int64, n), sent: make([]atomic.Int64, n), deliveries: make([]atomic.Int32, n), acks: make([]atomic.Int32, n),
		late:    make([]atomic.Uint32, n),
		ackedAt: make([]atomic.Int64, n), deliveredAt: make([]atomic.Int64, n),
		warmEnd:   warmEnd,
		corrected: hdrhistogram.New(1, histMax, 3), raw: hdrhistogram.New(1, histMax, 3),
	}
}

// A send's outcome as its client reported it.
const (
	ackNone   = 0
	ackOK     = 1
	ackFailed = 2
)

func (s *stepTrack) ack(id int, ok bool) {
	if s.frozen != nil && s.frozen.Load() {
		s.answersAfterFreeze.Add(1)
		return
	}
	if ok {
		s.ackedAt[id].Store(int64(time.Since(s.epoch)))
		s.acks[id].Store(ackOK)
		s.acked.Add(1)
		return
	}
	s.acks[id].Store(ackFailed)
	s.ackFailed.Add(1)
}

// undelivered counts the messages not delivered (yet), by what their
// sender was told: acknowledged (once every step has drained, a loss),
// nothing yet (the client still holds the send: unfinished), or failure
// (refused or timed out at the client: the application's to retry).
type undelivered struct{ acked, unanswered, failed int64 }

func (u undelivered) awaited() int64 { return u.acked + u.unanswered }

// missingAcked lists the acknowledged messages not delivered (yet).
func (s *stepTrack) missingAcked() []int {
	var ids []int
	for i := range s.n {
		if s.deliveries[i].Load() == 0 && s.acks[i].Load() == ackOK {
			ids = append(ids, i)
		}
	}
	return ids
}

// How a message first delivered after the drain (tracker.recovering) came.
const (
	lateNone = 0
	lateLive = 1 // a push (zzim) or publication (Centrifugo), late
	lateSync = 2 // the recipient's sync (zzim) or history read (Centrifugo)
)

// recoveredBy counts the messages the after-run sync delivered first, by
// what their sender was told: acknowledged, or not (never answered, or
// failed at the client, yet in the store).
func (s *stepTrack) recoveredBy() (acked, unacked int64) {
	for i := range s.n {
		if s.late[i].Load() == lateNone {
			continue
		}
		if s.acks[i].Load() == ackOK {
			acked++
		} else {
			unacked++
		}
	}
	return
}

func (s *stepTrack) undelivered() undelivered {
	var u undelivered
	for i := range s.n {
		if s.deliveries[i].Load() != 0 {
			continue
		}
		switch s.acks[i].Load() {
		case ackOK:
			u.acked++
		case ackFailed:
			u.failed++
		default:
			u.unanswered++
		}
	}
	return u
}

// tracker holds every step of one run (one system, row and U).
type tracker struct {
	epoch time.Time
	steps []atomic.Pointer[stepTrack] // by step number
	// windowDeliveries counts deliveries (of any step) while counting is on:
	// the CPU per message divides the server's CPU in the measured window
	// by what was delivered in it.
	counting         atomic.Bool
	windowDeliveries atomic.Int64
	echoes           atomic.Int64 // a sender seeing its own message (Centrifugo's channel echo)
	foreign          atomic.Int64 // bodies that are not ours
	// recovering is set once every step has drained, while the recipients
	// sync (zzim) or read the channel's history (Centrifugo): what arrives
	// then is marked late and kept out of the latency histograms.
	recovering atomic.Bool
	// frozen ends the counting (see stepTrack.frozen); what is delivered
	// after it only counts in deliveriesAfterFreeze.
	frozen                atomic.Bool
	deliveriesAfterFreeze atomic.Int64
}

// stepsMax bounds the steps of one run.
const stepsMax = 64

func newTracker() *tracker {
	return &tracker{epoch: time.Now(), steps: make([]atomic.Pointer[stepTrack], stepsMax)}
}

func (t *tracker) now() int64 { return int64(time.Since(t.epoch)) }

// deliver is called by user `me` for every message handed to it; viaSync
// says it came by a sync or history read rather than live.
func (t *tracker) deliver(me int, b string, viaSync bool) {
	if t.frozen.Load() {
		t.deliveriesAfterFreeze.Add(1)
		return
	}
	at := t.now()
	s, id, to, ok := t.lookup(b)
	if !ok {
		return
	}
	if to != me {
		if me == sender(to) {
			t.echoes.Add(1)
		} else {
			s.misdelivered.Add(1)
		}
		return
	}
	t.accept(s, id, at, viaSync)
}

// lookup finds the step and message a body names; a body of no step of
// this run is counted foreign.
func (t *tracker) lookup(b string) (s *stepTrack, id, to int, ok bool) {
	step, id, to, ok := parseBody(b)
	if !ok || step < 0 || step >= stepsMax {
		t.foreign.Add(1)
		return nil, 0, 0, false
	}
	s = t.steps[step].Load()
	if s == nil || id < 0 || id >= s.n {
		t.foreign.Add(1)
		return nil, 0, 0, false
	}
	return s, id, to, true
}

// accept records message id of step s delivered to its recipient at at.
func (t *tracker) accept(s *stepTrack, id int, at int64, viaSync bool) {
	if s.deliveries[id].Add(1) > 1 {
		s.dups.Add(1)
		return
	}
	s.delivered.Add(1)
	s.deliveredAt[id].Store(at)
	if t.recovering.Load() {
		how := uint32(lateLive)
		if viaSync {
			how = lateSync
		}
		s.late[id].Store(how)
		s.recovered.Add(1)
		return
	}
	if t.counting.Load() {
		t.windowDeliveries.Add(1)
	}
	intended := s.intended[id]
	if intended < s.warmEnd {
		return
	}
	corrected := max((at-intended)/1000, 1)
	raw := corrected
	if sent := s.sent[id].Load(); sent > 0 {
		raw = max((at-sent)/1000, 1)
	}
	s.mu.Lock()
	_ = s.corrected.RecordValue(min(corrected, histMax))
	_ = s.raw.RecordValue(min(raw, histMax))
	s.mu.Unlock()
}

// recoverDeliver takes one message of a channel's history, read by user
// me after the run: the history holds both sides' messages and the ones
// already delivered, so only a first delivery to its recipient counts.
func (t *tracker) recoverDeliver(me int, b string) {
	s, id, to, ok := t.lookup(b)
	if !ok {
		return
	}
	if to != me {
		if me != sender(to) {
			s.misdelivered.Add(1)
		}
		return
	}
	if s.deliveries[id].Load() != 0 {
		return
	}
	if t.frozen.Load() {
		t.deliveriesAfterFreeze.Add(1)
		return
	}
	t.accept(s, id, t.now(), true)
}

// sender is the partner of user u: users 2k and 2k+1 form pair k.
func sender(to int) int { return to ^ 1 }

type quantiles struct {
	p50, p99, max time.Duration
	n             int64
}

func q(h *hdrhistogram.Histogram) quantiles {
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return quantiles{p50: us(h.ValueAtQuantile(50)), p99: us(h.ValueAtQuantile(99)), max: us(h.Max()), n: h.TotalCount()}
}

func (s *stepTrack) latencies() (corrected, raw quantiles) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return q(s.corrected), q(s.raw)
}
