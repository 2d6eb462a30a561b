// Package entry is the TCP app gateway: it holds app connections, checks the
// login token, and forwards every request to logic without business
// processing (it never decodes a SEND body). It writes logic's answers and
// pushes back to the connections. When a logic slot times out or its link
// goes down, entry moves the session to the next slot and resends every
// unanswered request of the session, in order; restarting logic never drops
// an app's connection.
//
// Entry is a sans-I/O state machine (node.Node): the driver decodes frames
// and delivers them as node.ClientFrame events.
package entry

import (
	"time"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Defaults for Config fields left zero.
const (
	// LoginDeadlineDefault: a connection without a valid LOGIN by then is closed.
	LoginDeadlineDefault = 10 * time.Second
	// IdleTimeoutDefault: a connection that sends no frame for this long is closed.
	IdleTimeoutDefault = 90 * time.Second
	// LogicTimeoutDefault: how long one attempt at logic may take before failing over.
	LogicTimeoutDefault = 2 * time.Second
	// PushAckTimeoutDefault: a PUSH not acknowledged by then goes to PushFailed.
	PushAckTimeoutDefault = 5 * time.Second
	// ConnsMaxDefault bounds open connections; past it new ones are closed at once.
	ConnsMaxDefault = 20000
	// PendingMaxDefault bounds unanswered requests per session; past it the
	// new request is answered ERROR OVERLOADED and not forwarded.
	PendingMaxDefault = 128
	// ConnsPerUserMaxDefault bounds one user's logged-in connections on
	// one entry; a LOGIN past it is answered ERROR RATE_LIMITED and only
	// that connection closes. A connection storm for one user (a leaked
	// token, a reconnect loop) then costs entry a token check per attempt
	// and costs logic and presence nothing. (Across devices the newest
	// login still kicks the older session through logic.)
	ConnsPerUserMaxDefault = 5
	// PushesPendingMaxDefault bounds unacknowledged pushes per connection;
	// past it the connection is a slow consumer and is closed.
	PushesPendingMaxDefault = 256
)

// Config configures an Entry. Zero durations and bounds take the defaults.
type Config struct {
	Topology map[node.Role]int
	Secret   []byte // HMAC key of login tokens

	LoginDeadline  time.Duration
	IdleTimeout    time.Duration
	LogicTimeout   time.Duration
	PushAckTimeout time.Duration

	ConnsMax         int
	ConnsPerUserMax  int
	PendingMax       int
	PushesPendingMax int
	AttemptsMax      int // per request; AttemptsMaxDefault
	// LogicBusinesses restricts logic slot i to some businesses (the same
	// map logic's slots are configured with); requests are routed within
	// the group of slots serving their business. Nil: every slot serves all.
	LogicBusinesses map[int][]logic.Business

	// Admission control (admit.go): zero values take the Admit*Default.
	AdmitRTTTarget time.Duration
	AdmitLimitInit int
	AdmitLimitMin  int
	AdmitLimitMax  int
}

func (c *Config) fill() {
	dur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	num := func(n *int, def int) {
		if *n <= 0 {
			*n = def
		}
	}
	dur(&c.LoginDeadline, LoginDeadlineDefault)
	dur(&c.IdleTimeout, IdleTimeoutDefault)
	dur(&c.LogicTimeout, LogicTimeoutDefault)
	dur(&c.PushAckTimeout, PushAckTimeoutDefault)
	num(&c.ConnsMax, ConnsMaxDefault)
	num(&c.ConnsPerUserMax, ConnsPerUserMaxDefault)
	num(&c.PendingMax, PendingMaxDefault)
	num(&c.PushesPendingMax, PushesPendingMaxDefault)
	num(&c.AttemptsMax, AttemptsMaxDefault)
	dur(&c.AdmitRTTTarget, AdmitRTTTargetDefault)
	num(&c.AdmitLimitMin, AdmitLimitMinDefault)
	num(&c.AdmitLimitInit, AdmitLimitInitDefault)
	num(&c.AdmitLimitMax, AdmitLimitMaxDefault)
	c.AdmitLimitInit = min(max(c.AdmitLimitInit, c.AdmitLimitMin), c.AdmitLimitMax)
}

// Stats are entry's counters.
type Stats struct {
	Connections         uint64 // accepted
	ConnectionsOpen     int
	ConnectionsRejected uint64             // refused past ConnsMax
	UserConnsRejected   uint64             // logins refused past ConnsPerUserMax
	FramesIn            map[wire.Op]uint64 // by op
	FramesOut           map[wire.Op]uint64 // by op
	FramesInTotal       uint64
	FramesOutTotal      uint64
	Forwarded           uint64 // requests sent to logic the first time
	Unauthenticated     uint64 // connections closed for a missing, forged or expired token or no login
	BadFrames           uint64 // connections closed for a frame they must not send
	Overloaded          uint64 // requests refused past PendingMax
	Failovers           uint64
	Failbacks           uint64
	Resends             uint64
	TimedOut            uint64 // requests answered TIMEOUT after AttemptsMax
	DuplicatesDropped   uint64 // answers for requests no longer pending
	StaleDropped        uint64 // answers or kicks for another incarnation or a gone connection
	Pushes              uint64 // PUSH frames written
	PushAcks            uint64
	PushTimeouts        uint64
	PushesFailed        uint64 // PushFailed messages sent
	SlowConsumerCloses  uint64
	Kicks               uint64 // connections closed with a KICK frame (a newer login of the user)
	Replaced            uint64 // connections closed without one (the kicking login was an older attempt of the same process)
	IdleCloses          uint64
	LoginDeadlineCloses uint64
	AdmitRefused        uint64 // requests answered OVERLOADED by admission control
	AdmitCuts           uint64 // cuts of the admission bound after slow answers
	AdmitLimit          int    // the admission bound now
	AdmitInflight       int    // admitted requests in flight now
}

// Entry is the TCP gateway state machine.
type Entry struct {
	*node.Member
	cfg    Config
	router *Router
	admit  *admission
	conns  map[node.ConnID]*conn
	// userConns counts logged-in connections per user (ConnsPerUserMax);
	// bounded by ConnsMax, as every key has a connection.
	userConns map[string]int
	stats     Stats
	// sessionNext numbers sessions; unique per incarnation (a fresh Entry per incarnation).
	sessionNext uint64
	// self names this instance in every forwarded request's origin.
	self node.AddrName
}

var _ node.Node = (*Entry)(nil)

// New returns an Entry; the driver calls Start before any event.
func New(cfg Config) *Entry {
	cfg.fill()
	m := node.NewMember(cfg.Topology)
	return &Entry{
		Member:    m,
		cfg:       cfg,
		router:    &Router{Views: m.Views, AttemptTimeout: cfg.LogicTimeout, AttemptsMax: cfg.AttemptsMax, Businesses: cfg.LogicBusinesses},
		admit:     newAdmission(&cfg),
		conns:     map[node.ConnID]*conn{},
		userConns: map[string]int{},
		stats:     Stats{FramesIn: map[wire.Op]uint64{}, FramesOut: map[wire.Op]uint64{}},
	}
}

// Start registers the instance.
func (e *Entry) Start(env node.Env) { e.Member.Start(env) }

// Handle reacts to one event.
func (e *Entry) Handle(env node.Env, ev node.Event) {
	switch ev := ev.(type) {
	case node.View:
		e.Member.Handle(env, ev)
		if ev.Role == node.RoleLogic {
			e.settleAll(env)
		}
	case node.Timer:
		if !e.Member.Handle(env, ev) {
			e.onTimer(env, ev)
		}
	case node.ClientConnect:
		e.onConnect(env, ev)
	case node.ClientFrame:
		e.onFrame(env, ev)
	case node.ClientDisconnect:
		if c := e.conns[ev.Conn]; c != nil {
			e.drop(env, c, "disconnected: "+ev.Reason)
		}
	case node.Recv:
		e.onRecv(env, ev)
	case node.LinkDown:
		if ev.Peer.Role == node.RoleLogic {
			e.onLogicDown(env, ev.Peer)
		}
	}
	// LinkUp and registry Completions need nothing: views decide liveness,
	// and a failed registry heartbeat is retried by the next one.
}

// Stats returns a copy of the counters.
func (e *Entry) Stats() Stats {
	s := e.stats
	s.ConnectionsOpen = len(e.conns)
	s.Failovers, s.Failbacks, s.Resends = e.router.Failovers, e.router.Failbacks, e.router.Resends
	s.AdmitRefused, s.AdmitCuts = e.admit.refused, e.admit.cuts
	s.AdmitLimit, s.AdmitInflight = int(e.admit.limit), e.admit.inflight
	s.FramesIn = copyCounts(e.stats.FramesIn)
	s.FramesOut = copyCounts(e.stats.FramesOut)
	return s
}

func copyCounts(m map[wire.Op]uint64) map[wire.Op]uint64 {
	out := make(map[wire.Op]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (e *Entry) onRecv(env node.Env, ev node.Recv) {
	switch m := ev.Msg.(type) {
	case *wire.ClientResponse:
		e.onResponse(env, m)
	case *wire.PushRequest:
		e.onPush(env, m)
	case *wire.KickRequest:
		e.onKick(env, m)
	default:
		env.Log().Warn("entry: unexpected message", "from", ev.From.String(), "type", typeName(m))
	}
}

func (e *Entry) onTimer(env node.Env, ev node.Timer) {
	switch tag := ev.Tag.(type) {
	case loginTag:
		if c := e.conns[tag.conn]; c != nil && c.loginTimer == ev.ID && !c.authed {
			e.stats.LoginDeadlineCloses++
			e.stats.Unauthenticated++
			e.fail(env, c, 0, wire.OpLogin, wire.ErrorCode_UNAUTHENTICATED, "no login within the deadline")
		}
	case idleTag:
		if c := e.conns[tag.conn]; c != nil && c.idleTimer == ev.ID {
			e.onIdle(env, c)
		}
	case requestTag:
		if c := e.conns[tag.conn]; c != nil {
			if ok, exhausted := e.router.Timeout(env, c.lane, ev.ID); ok {
				e.timedOut(env, c, exhausted)
			}
		}
	case pushTag:
		if c := e.conns[tag.conn]; c != nil {
			e.onPushTimeout(env, c, tag.push, ev.ID)
		}
	}
}

// onLogicDown: the link to a logic slot is down. Every session targeting it
// moves now rather than waiting for its attempt timers.
func (e *Entry) onLogicDown(env node.Env, peer node.Addr) {
	e.router.Views.MarkDead(peer)
	for _, c := range e.sortedConns() {
		if c.lane == nil {
			continue // not logged in yet: nothing routed to logic
		}
		if c.lane.Uses(peer.Slot) {
			e.timedOut(env, c, e.router.Settle(env, c.lane))
		}
	}
}

// settleAll runs after a logic view: sessions move to the slot the view
// implies (fail-back to a home alive again, or away from a dead target).
func (e *Entry) settleAll(env node.Env) {
	for _, c := range e.sortedConns() {
		if c.authed && c.lane != nil && c.lane.Len() > 0 {
			e.timedOut(env, c, e.router.Settle(env, c.lane))
		}
	}
}

// sortedConns lists connections by id: events they cause leave in a
// deterministic order.
func (e *Entry) sortedConns() []*conn {
	ids := make([]node.ConnID, 0, len(e.conns))
	for id := range e.conns {
		ids = append(ids, id)
	}
	sortConnIDs(ids)
	out := make([]*conn, len(ids))
	for i, id := range ids {
		out[i] = e.conns[id]
	}
	return out
}
