package entry

import (
	"time"

	"github.com/zzim/zzim/system/wire"
)

// Admission control: entry is the front door, so it is where overload must
// be refused, cheaply and early. Without it every request a client sends is
// forwarded, queues grow in logic's and das's mailboxes until answers take
// longer than logicTimeout and dasTimeout, and those timeouts then fail
// sessions over and resend their requests: each unit of overload turns into
// more work (a collapse measured under saturation). So entry bounds the requests
// it has forwarded and not yet seen answered, and adapts that bound to the
// answers' round-trip time (AIMD, as TCP does with a window): an answer slower
// than AdmitRTTTarget cuts the bound, fast answers grow it back. A request
// past the bound is answered OVERLOADED at once; the reference client backs
// off and resends, so the system keeps delivering near what it can with a
// bounded latency for what it accepts.
const (
	// AdmitRTTTargetDefault: answers slower than this mean queues are
	// building behind entry. Well under logicTimeout, so admission cuts load
	// long before a timeout would fail a session over.
	AdmitRTTTargetDefault = 100 * time.Millisecond
	// AdmitLimitInitDefault is the starting bound on admitted requests in flight.
	AdmitLimitInitDefault = 512
	// AdmitLimitMinDefault: the bound never falls below this, so a small
	// deployment (and the simulator's few clients) is never throttled.
	AdmitLimitMinDefault = 64
	// AdmitLimitMaxDefault caps how far fast answers grow the bound.
	AdmitLimitMaxDefault = 8192
	// admitCutFactor is the multiplicative decrease on a slow answer.
	admitCutFactor = 0.8
)

// admitted lists the ops admission control counts and may refuse. LOGIN,
// LOGOUT and HEARTBEAT pass: refusing them would turn overload into
// reconnects and expired presence, which cost more than they save.
var admitted = map[wire.Op]bool{
	wire.OpSend: true, wire.OpSync: true, wire.OpConvList: true, wire.OpRead: true,
}

// admission is the AIMD bound on admitted requests in flight of one entry.
type admission struct {
	limit    float64
	min, max float64
	target   time.Duration
	inflight int
	// lastCut: at most one cut per target interval, so a burst of slow
	// answers from one congested moment cuts once, not once per answer.
	lastCut time.Time
	// Counters (Stats).
	refused uint64
	cuts    uint64
}

func newAdmission(c *Config) *admission {
	return &admission{
		limit: float64(c.AdmitLimitInit), min: float64(c.AdmitLimitMin), max: float64(c.AdmitLimitMax),
		target: c.AdmitRTTTarget,
	}
}

// admit reports whether one more request may be forwarded, and counts it.
func (a *admission) admit() bool {
	if float64(a.inflight) >= a.limit {
		a.refused++
		return false
	}
	a.inflight++
	return true
}

// done ends an admitted request. answered says whether its answer came (an
// rtt to learn from) rather than the session dropping it.
func (a *admission) done(now time.Time, rtt time.Duration, answered bool) {
	a.inflight--
	if !answered {
		return
	}
	if rtt > a.target {
		if now.Sub(a.lastCut) >= a.target {
			a.lastCut = now
			a.cuts++
			a.limit = max(a.min, a.limit*admitCutFactor)
		}
		return
	}
	a.limit = min(a.max, a.limit+1/a.limit)
}
