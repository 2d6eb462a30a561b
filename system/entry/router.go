package entry

import (
	"slices"
	"time"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// AttemptsMaxDefault bounds how many times one request is sent to logic
// (first send plus resends after failovers). Past it the caller answers the
// client TIMEOUT: the outcome is unknown and the client resends (sends are
// idempotent), so a request never circles dead slots forever.
const AttemptsMaxDefault = 6

// businesses lists logic's businesses in the order groups are numbered.
var businesses = []logic.Business{logic.BusinessLogin, logic.BusinessMsg, logic.BusinessContact}

// BusinessOf names the logic business an app op belongs to, exactly as
// logic sorts the requests it serves (logic/client.go businessOf); ops
// logic does not take fall under login, so they reach a slot that answers
// them (BAD_REQUEST) instead of none. SessionClosed is login's too.
func BusinessOf(op wire.Op) logic.Business {
	switch op {
	case wire.OpSend, wire.OpSync:
		return logic.BusinessMsg
	case wire.OpConvList, wire.OpRead:
		return logic.BusinessContact
	}
	return logic.BusinessLogin
}

// Router forwards sessions' requests to logic slots and moves them when a
// slot fails (failover) or when a user's home slot comes back (fail-back).
// It is shared by entry (one Lane per TCP connection) and httpentry (one Lane
// per long-poll session). It owns no timers' meaning: each Pending carries
// the tag its caller wants on its attempt timer.
//
// With a business split (Businesses), each business is routed within its
// group: the logic slots serving it, in slot order. Home is
// route.Hash(user) % len(group) within the group and failover walks the
// group's members, (x+p) % len(group), skipping those believed dead.
// Businesses whose groups are the same slots share one group, so without a
// split there is one group of every slot and routing is by user alone.
type Router struct {
	Views          *node.Views
	AttemptTimeout time.Duration // per attempt: logicTimeout
	AttemptsMax    int
	// Businesses restricts logic slot i to some businesses, as logic's
	// Config.Businesses does there; nil, or a slot missing or empty, serves all.
	Businesses map[int][]logic.Business

	Failovers uint64 // a lane moved away from its target
	Failbacks uint64 // a lane moved back to its home slot
	Resends   uint64 // requests sent again to a new target

	// groupOf numbers each business's group (index into businesses);
	// computed on first use from Businesses, which is fixed.
	groupOf []int

	// memberBuf and aliveBuf back members' and aliveOf's results, reused
	// from call to call: both run on every forwarded request, and every
	// caller is done with one result before it asks for the next.
	memberBuf []int
	aliveBuf  []bool
}

// Lane is one session's route to logic: per business group, its current
// target and the requests sent there that are not answered yet, in send order.
type Lane struct {
	User   string
	groups []*groupLane // by group number; grown on first use
}

// groupLane is a lane's route within one business group.
type groupLane struct {
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
func NewLane(user string) *Lane { return &Lane{User: user} }

// Len is the number of pending requests.
func (l *Lane) Len() int {
	n := 0
	for _, g := range l.groups {
		n += len(g.pending)
	}
	return n
}

// Find returns the pending request with reqID, or nil.
func (l *Lane) Find(reqID uint32) *Pending {
	for _, g := range l.groups {
		for _, p := range g.pending {
			if p.Req.ReqId == reqID {
				return p
			}
		}
	}
	return nil
}

// Holds reports whether timer id is the attempt timer of one of the lane's requests.
func (l *Lane) Holds(id node.TimerID) bool { return l.holder(id) >= 0 }

// holder is the group whose request has attempt timer id, or -1.
func (l *Lane) holder(id node.TimerID) int {
	for k, g := range l.groups {
		for _, p := range g.pending {
			if p.timer == id {
				return k
			}
		}
	}
	return -1
}

// Uses reports whether requests of the lane are pending at slot.
func (l *Lane) Uses(slot int) bool {
	for _, g := range l.groups {
		if g.target == slot && len(g.pending) > 0 {
			return true
		}
	}
	return false
}

// group returns the lane's route in group k, creating it.
func (l *Lane) group(k int) *groupLane {
	for len(l.groups) <= k {
		l.groups = append(l.groups, &groupLane{target: -1})
	}
	return l.groups[k]
}

// SessionTarget is the logic slot that serves the lane's session (login
// group): where SessionClosed goes, if the lane ever had a target there.
func (r *Router) SessionTarget(l *Lane) (int, bool) {
	k := r.groupNumber(logic.BusinessLogin)
	if k >= len(l.groups) || l.groups[k].target < 0 {
		return 0, false
	}
	return l.groups[k].target, true
}

// Serves reports whether some logic slot serves op's business.
func (r *Router) Serves(op wire.Op) bool {
	k := r.groupNumber(BusinessOf(op))
	b := r.firstBusiness(k)
	n := r.Views.Slots(node.RoleLogic)
	for s := 0; s < n; s++ {
		if r.serves(s, b) {
			return true
		}
	}
	return false
}

// Forward sends p after everything already pending in its group, to the
// group's target. If the target is no longer the one the lane should use (a
// view or another lane's timeout changed what is believed alive), the group
// moves first, resending its pending requests in order. It returns requests
// that ran out of attempts on that move (removed; the caller answers them
// TIMEOUT).
func (r *Router) Forward(env node.Env, l *Lane, p *Pending) []*Pending {
	k := r.groupNumber(BusinessOf(wire.Op(p.Req.Op)))
	exhausted := r.settle(env, l, k)
	g := l.group(k)
	if g.target < 0 {
		return exhausted // no logic slot serves it; caller checked Serves first
	}
	g.pending = append(g.pending, p)
	r.send(env, g, p)
	return exhausted
}

// Answer removes the pending request reqID and cancels its timer. It
// returns nil if the request is not pending (a duplicate or late answer).
func (r *Router) Answer(env node.Env, l *Lane, reqID uint32) *Pending {
	for _, g := range l.groups {
		for i, p := range g.pending {
			if p.Req.ReqId == reqID {
				env.Cancel(p.timer)
				// slices.Delete clears the vacated slot: an idle session
				// must not keep its last answered request alive.
				g.pending = slices.Delete(g.pending, i, i+1)
				return p
			}
		}
	}
	return nil
}

// Timeout handles an attempt timer of the lane: the target is marked dead
// and the group moves to its next slot (route order from the user's home
// in the group; when nothing there is believed alive, to the group's
// following slot regardless, since local beliefs may be stale). All the
// group's pending requests are resent in order. It reports whether the
// timer was the lane's, and the exhausted requests.
func (r *Router) Timeout(env node.Env, l *Lane, id node.TimerID) (bool, []*Pending) {
	k := l.holder(id)
	if k < 0 {
		return false, nil
	}
	g := l.groups[k]
	r.Views.MarkDead(node.Addr{Role: node.RoleLogic, Slot: g.target})
	slots := r.members(k)
	if len(slots) == 0 {
		return true, nil
	}
	i, ok := route.Pick(l.User, r.aliveOf(slots))
	if !ok {
		// The group's next slot after the target; a target the group no
		// longer holds (scale in) counts by its number, as (target+1) % n.
		pos := slices.Index(slots, g.target)
		if pos < 0 {
			pos = g.target
		}
		i = (pos + 1) % len(slots)
	}
	return true, r.move(env, l, k, slots[i])
}

// Settle moves each of the lane's groups to the slot it should use now, if
// that differs from its target: after a view (fail-back to a home slot
// alive again, or away from a slot now dead) or after a target's link went
// down. A group with nothing pending just changes target.
func (r *Router) Settle(env node.Env, l *Lane) []*Pending {
	var exhausted []*Pending
	for k := range l.groups {
		exhausted = append(exhausted, r.settle(env, l, k)...)
	}
	return exhausted
}

func (r *Router) settle(env node.Env, l *Lane, k int) []*Pending {
	slots := r.members(k)
	if len(slots) == 0 {
		return nil
	}
	g := l.group(k)
	i, ok := route.Pick(l.User, r.aliveOf(slots))
	if !ok {
		if g.target >= 0 {
			return nil // nothing believed alive: stay; attempt timeouts rotate
		}
		i = route.Home(l.User, len(slots))
	}
	if slots[i] == g.target {
		return nil
	}
	return r.move(env, l, k, slots[i])
}

// Drop cancels every pending request's timer and forgets them (the session ended).
func (r *Router) Drop(env node.Env, l *Lane) []*Pending {
	var out []*Pending
	for _, g := range l.groups {
		for _, p := range g.pending {
			env.Cancel(p.timer)
		}
		out = append(out, g.pending...)
		g.pending = nil
	}
	return out
}

// move changes group k's target and resends its pending requests, in order.
// Changing target, on failover and fail-back alike, means resending all of
// the group's unanswered requests: the old target may have lost them.
func (r *Router) move(env node.Env, l *Lane, k int, to int) []*Pending {
	g := l.group(k)
	if g.target >= 0 && to != g.target {
		slots := r.members(k)
		if to == slots[route.Home(l.User, len(slots))] {
			r.Failbacks++
		} else {
			r.Failovers++
		}
	}
	g.target = to
	var exhausted []*Pending
	kept := g.pending[:0]
	for _, p := range g.pending {
		env.Cancel(p.timer)
		if p.attempts >= r.attemptsMax() {
			exhausted = append(exhausted, p)
			continue
		}
		kept = append(kept, p)
		r.Resends++
		r.send(env, g, p)
	}
	clear(g.pending[len(kept):]) // exhausted ones are not kept alive here
	g.pending = kept
	return exhausted
}

func (r *Router) send(env node.Env, g *groupLane, p *Pending) {
	p.attempts++
	env.Send(node.Addr{Role: node.RoleLogic, Slot: g.target}, p.Req)
	p.timer = env.After(r.AttemptTimeout, p.Tag)
}

func (r *Router) attemptsMax() int {
	if r.AttemptsMax > 0 {
		return r.AttemptsMax
	}
	return AttemptsMaxDefault
}

// members lists the logic slots of group k now, in slot order: those of
// the configured slots (a view may have grown or shrunk them) that serve
// the group's businesses. The result is valid until the next call.
func (r *Router) members(k int) []int {
	n := r.Views.Slots(node.RoleLogic)
	b := r.firstBusiness(k)
	out := r.memberBuf[:0]
	for s := 0; s < n; s++ {
		if r.serves(s, b) {
			out = append(out, s)
		}
	}
	r.memberBuf = out
	return out
}

// firstBusiness is the first business of group k: all of the group's
// businesses are served by the same slots.
func (r *Router) firstBusiness(k int) logic.Business {
	return businesses[slices.Index(r.groups(), k)]
}

// aliveOf reports, per member of a group, whether it is believed alive.
// The result is valid until the next call.
func (r *Router) aliveOf(slots []int) []bool {
	alive := r.Views.Alive(node.RoleLogic)
	out := r.aliveBuf[:0]
	for _, s := range slots {
		out = append(out, s < len(alive) && alive[s])
	}
	r.aliveBuf = out
	return out
}

// serves reports whether logic slot s serves business b (logic: an empty
// Businesses serves all).
func (r *Router) serves(s int, b logic.Business) bool {
	bs := r.Businesses[s]
	return len(bs) == 0 || slices.Contains(bs, b)
}

// groupNumber is the number of b's group.
func (r *Router) groupNumber(b logic.Business) int {
	return r.groups()[slices.Index(businesses, b)]
}

// groups numbers each business's group: businesses that every configured
// slot serves alike share a number (without a split, all share group 0).
func (r *Router) groups() []int {
	if r.groupOf != nil {
		return r.groupOf
	}
	slots := make([]int, 0, len(r.Businesses))
	for s := range r.Businesses {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	same := func(a, b logic.Business) bool {
		for _, s := range slots {
			if r.serves(s, a) != r.serves(s, b) {
				return false
			}
		}
		return true
	}
	r.groupOf = make([]int, len(businesses))
	next := 0
	for i, b := range businesses {
		r.groupOf[i] = -1
		for j := 0; j < i && r.groupOf[i] < 0; j++ {
			if same(businesses[j], b) {
				r.groupOf[i] = r.groupOf[j]
			}
		}
		if r.groupOf[i] < 0 {
			r.groupOf[i] = next
			next++
		}
	}
	return r.groupOf
}
