package entry

import (
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// AttemptsMaxDefault bounds how many times one request is sent to logic
// (first send plus resends after failovers). Past it the caller answers the
// client TIMEOUT: the outcome is unknown and the client resends (sends are
// idempotent), so a request never circles dead slots forever.
const AttemptsMaxDefault = 6

// Router forwards sessions' requests to logic slots and moves them when a
// slot fails (failover) or when a user's home slot comes back (fail-back).
// It is shared by entry (one Lane per TCP connection) and httpentry (one Lane
// per long-poll session). It owns no timers' meaning: each Pending carries
// the tag its caller wants on its attempt timer.
type Router struct {
	Views          *node.Views
	AttemptTimeout time.Duration // per attempt: logicTimeout
	AttemptsMax    int

	Failovers uint64 // a lane moved away from its target
	Failbacks uint64 // a lane moved back to its home slot
	Resends   uint64 // requests sent again to a new target
}

// Lane is one session's route to logic: its current target and the
// requests sent there that are not answered yet, in send order.
type Lane struct {
	User    string
	target  int // logic slot; -1 until the first request
	pending []*Pending
}

// Pending is one forwarded request awaiting its answer.
type Pending struct {
	Req      *wire.ClientRequest
	Tag      any // tag of its attempt timer
	timer    node.TimerID
	attempts int
	// admitted: counted by entry's admission control (admit.go) since sentAt.
	admitted bool
	sentAt   time.Time
}

// NewLane returns an empty lane for user.
func NewLane(user string) *Lane { return &Lane{User: user, target: -1} }

// Target is the lane's current logic slot, if it has one.
func (l *Lane) Target() (int, bool) { return l.target, l.target >= 0 }

// Len is the number of pending requests.
func (l *Lane) Len() int { return len(l.pending) }

// Find returns the pending request with reqID, or nil.
func (l *Lane) Find(reqID uint32) *Pending {
	for _, p := range l.pending {
		if p.Req.ReqId == reqID {
			return p
		}
	}
	return nil
}

// Holds reports whether timer id is the attempt timer of one of the lane's requests.
func (l *Lane) Holds(id node.TimerID) bool {
	for _, p := range l.pending {
		if p.timer == id {
			return true
		}
	}
	return false
}

// Forward sends p after everything already pending, to the lane's target.
// If the target is no longer the one the lane should use (a view or another
// lane's timeout changed what is believed alive), the lane moves first,
// resending its pending requests in order. It returns requests that ran out
// of attempts on that move (removed; the caller answers them TIMEOUT).
func (r *Router) Forward(env node.Env, l *Lane, p *Pending) []*Pending {
	exhausted := r.Settle(env, l)
	if l.target < 0 {
		return exhausted // no logic slots at all; caller checked Slots first
	}
	l.pending = append(l.pending, p)
	r.send(env, l, p)
	return exhausted
}

// Answer removes the pending request reqID and cancels its timer. It
// returns nil if the request is not pending (a duplicate or late answer).
func (r *Router) Answer(env node.Env, l *Lane, reqID uint32) *Pending {
	for i, p := range l.pending {
		if p.Req.ReqId == reqID {
			env.Cancel(p.timer)
			l.pending = append(l.pending[:i], l.pending[i+1:]...)
			return p
		}
	}
	return nil
}

// Timeout handles an attempt timer of the lane: the target is marked dead
// and the lane moves to the next slot (route order from the user's home;
// when nothing is believed alive, to the following slot regardless, since
// local beliefs may be stale). All pending requests are resent in order.
// It reports whether the timer was the lane's, and the exhausted requests.
func (r *Router) Timeout(env node.Env, l *Lane, id node.TimerID) (bool, []*Pending) {
	if !l.Holds(id) {
		return false, nil
	}
	dead := node.Addr{Role: node.RoleLogic, Slot: l.target}
	r.Views.MarkDead(dead)
	alive := r.Views.Alive(node.RoleLogic)
	if len(alive) == 0 {
		return true, nil
	}
	next, ok := route.Pick(l.User, alive)
	if !ok {
		next = (l.target + 1) % len(alive)
	}
	return true, r.move(env, l, next)
}

// Settle moves the lane to the slot it should use now, if that differs from
// its target: after a view (fail-back to a home slot alive again, or away
// from a slot now dead) or after the target's link went down. A lane with
// nothing pending just changes target.
func (r *Router) Settle(env node.Env, l *Lane) []*Pending {
	alive := r.Views.Alive(node.RoleLogic)
	if len(alive) == 0 {
		return nil
	}
	want, ok := route.Pick(l.User, alive)
	if !ok {
		if l.target >= 0 {
			return nil // nothing believed alive: stay; attempt timeouts rotate
		}
		want = route.Home(l.User, len(alive))
	}
	if want == l.target {
		return nil
	}
	return r.move(env, l, want)
}

// Drop cancels every pending request's timer and forgets them (the session ended).
func (r *Router) Drop(env node.Env, l *Lane) []*Pending {
	out := l.pending
	for _, p := range out {
		env.Cancel(p.timer)
	}
	l.pending = nil
	return out
}

// move changes the lane's target and resends everything pending, in order.
// Changing target, on failover and fail-back alike, means resending all of
// the session's unanswered requests: the old target may have lost them.
func (r *Router) move(env node.Env, l *Lane, to int) []*Pending {
	if l.target >= 0 && to != l.target {
		if to == route.Home(l.User, len(r.Views.Alive(node.RoleLogic))) {
			r.Failbacks++
		} else {
			r.Failovers++
		}
	}
	l.target = to
	var exhausted []*Pending
	kept := l.pending[:0]
	for _, p := range l.pending {
		env.Cancel(p.timer)
		if p.attempts >= r.attemptsMax() {
			exhausted = append(exhausted, p)
			continue
		}
		kept = append(kept, p)
		r.Resends++
		r.send(env, l, p)
	}
	l.pending = kept
	return exhausted
}

func (r *Router) send(env node.Env, l *Lane, p *Pending) {
	p.attempts++
	env.Send(node.Addr{Role: node.RoleLogic, Slot: l.target}, p.Req)
	p.timer = env.After(r.AttemptTimeout, p.Tag)
}

func (r *Router) attemptsMax() int {
	if r.AttemptsMax > 0 {
		return r.AttemptsMax
	}
	return AttemptsMaxDefault
}
