// Package httpentry is the HTTP gateway for mini-programs and mobile web:
// login, send, sync, conversation list and read marks are forwarded to logic
// as ClientRequests (same routing and failover as entry), pushes wait in a
// bounded per-session buffer for the user's long-poll, and the platform API
// only publishes notices and broadcasts onto the queue.
//
// HTTPEntry is a sans-I/O state machine (node.Node): the driver turns HTTP
// requests into node.HTTPRequest events and sends what Env.HTTPReply gives.
package httpentry

import (
	"time"

	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Defaults for Config fields left zero.
const (
	// RequestTimeoutDefault: an HTTP request waits this long for logic, then 504 TIMEOUT.
	RequestTimeoutDefault = 5 * time.Second
	// LogicTimeoutDefault: one attempt at a logic slot before failing over.
	LogicTimeoutDefault = 2 * time.Second
	// PushAckTimeoutDefault: a poll answer not acknowledged by then goes to PushFailed.
	PushAckTimeoutDefault = 5 * time.Second
	// PollTimeoutDefault: a poll without timeout_ms waits this long for data.
	PollTimeoutDefault = 25 * time.Second
	// PollTimeoutMax caps timeout_ms (the live driver's request deadline is above it).
	PollTimeoutMax = 30 * time.Second
	// SessionIdleMaxDefault: a session without a poll for this long expires.
	SessionIdleMaxDefault = 120 * time.Second
	// HeartbeatEveryDefault: polls refresh the session's presence at logic
	// at most this often (a long-poll client sends no HEARTBEAT itself).
	HeartbeatEveryDefault = 30 * time.Second

	// PushBufferMaxDefault bounds the messages buffered per session; on
	// overflow the oldest are dropped to PushFailed (logic's offline path).
	PushBufferMaxDefault = 256
	// PushBatchMax bounds the messages in one poll answer; the rest wait for the next poll.
	PushBatchMax = 256
	// DeliveriesMax bounds how often one message is re-sent in poll answers
	// without an ack; then it goes to PushFailed.
	DeliveriesMax = 3
	// ParkedPollsMaxDefault bounds parked polls in total; past it 503 OVERLOADED.
	ParkedPollsMaxDefault = 10000
	// SessionsMaxDefault bounds long-poll sessions (keyed by user); past it login answers 503.
	SessionsMaxDefault = 100000
	// RequestsMaxDefault bounds HTTP requests waiting for logic; past it 503.
	RequestsMaxDefault = 20000
	// PendingMaxDefault bounds a session's requests waiting for logic; past it 503.
	PendingMaxDefault = 128
	// PublishesMaxDefault bounds platform publishes in flight; past it 503.
	PublishesMaxDefault = 1024
	// KindSizeMax bounds a platform notice's kind.
	KindSizeMax = 64
)

// Config configures an HTTPEntry. Zero durations and bounds take the defaults.
type Config struct {
	Topology    map[node.Role]int
	Secret      []byte // HMAC key of login tokens
	PlatformKey string // X-Platform-Key of the platform API; empty disables it

	RequestTimeout time.Duration
	LogicTimeout   time.Duration
	PushAckTimeout time.Duration
	SessionIdleMax time.Duration
	HeartbeatEvery time.Duration

	PushBufferMax  int
	ParkedPollsMax int
	SessionsMax    int
	RequestsMax    int
	PendingMax     int
	PublishesMax   int

	// LogicBusinesses restricts logic slot i to some businesses (the same
	// map logic's slots are configured with); requests are routed within
	// the group of slots serving their business. Nil: every slot serves all.
	LogicBusinesses map[int][]logic.Business
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
	dur(&c.RequestTimeout, RequestTimeoutDefault)
	dur(&c.LogicTimeout, LogicTimeoutDefault)
	dur(&c.PushAckTimeout, PushAckTimeoutDefault)
	dur(&c.SessionIdleMax, SessionIdleMaxDefault)
	dur(&c.HeartbeatEvery, HeartbeatEveryDefault)
	num(&c.PushBufferMax, PushBufferMaxDefault)
	num(&c.ParkedPollsMax, ParkedPollsMaxDefault)
	num(&c.SessionsMax, SessionsMaxDefault)
	num(&c.RequestsMax, RequestsMaxDefault)
	num(&c.PendingMax, PendingMaxDefault)
	num(&c.PublishesMax, PublishesMaxDefault)
}

// Stats are httpentry's counters.
type Stats struct {
	Requests          uint64 // HTTP requests received
	NotFound          uint64
	BadRequests       uint64 // 400 before forwarding
	Unauthenticated   uint64
	Overloaded        uint64 // 503 OVERLOADED answered by httpentry itself
	Forwarded         uint64 // requests sent to logic the first time
	Answered          uint64 // answers from logic written to an HTTP request
	RequestTimeouts   uint64 // 504
	DuplicatesDropped uint64 // answers for requests no longer pending
	StaleDropped      uint64 // answers for another incarnation or session
	Failovers         uint64
	Failbacks         uint64
	Resends           uint64
	SessionsOpen      int
	SessionsCreated   uint64
	SessionsExpired   uint64
	Logins            uint64
	Polls             uint64
	PollsParked       int
	PollsReplaced     uint64 // answered empty because a newer poll came
	PollTimeouts      uint64
	PollsCanceled     uint64
	PushesBuffered    uint64 // messages
	PushesDelivered   uint64 // poll answers carrying messages
	Redeliveries      uint64 // messages re-sent because their poll answer was not acknowledged
	PushAcks          uint64
	PushTimeouts      uint64
	PushesFailed      uint64 // PushFailed messages sent
	BufferOverflows   uint64 // messages dropped from a full buffer (to PushFailed)
	Kicks             uint64 // sessions ended KICKED (another device logged in)
	Replaced          uint64 // sessions ended UNAUTHENTICATED (the kicking login was an older attempt of the same process): the client logs in again
	PlatformAccepted  uint64 // 202
	PlatformRejected  uint64 // 400 / 401
	PlatformFailed    uint64 // 503
}

// HTTPEntry is the HTTP gateway state machine.
type HTTPEntry struct {
	*node.Member
	cfg    Config
	router *entry.Router

	sessions  map[string]*session      // by user
	calls     map[uint32]*call         // by req_id
	callConns map[node.ConnID]uint32   // HTTP conn → req_id, for cancellation
	polls     map[node.ConnID]*session // parked polls
	publishes map[node.ReqID]node.ConnID

	reqNext     uint32
	vconnNext   uint64
	sessionNext uint64
	stats       Stats

	// self names this instance in every forwarded request's origin.
	self node.AddrName
}

var _ node.Node = (*HTTPEntry)(nil)

// New returns an HTTPEntry; the driver calls Start before any event.
func New(cfg Config) *HTTPEntry {
	cfg.fill()
	m := node.NewMember(cfg.Topology)
	return &HTTPEntry{
		Member:    m,
		cfg:       cfg,
		router:    &entry.Router{Views: m.Views, AttemptTimeout: cfg.LogicTimeout, Businesses: cfg.LogicBusinesses},
		sessions:  map[string]*session{},
		calls:     map[uint32]*call{},
		callConns: map[node.ConnID]uint32{},
		polls:     map[node.ConnID]*session{},
		publishes: map[node.ReqID]node.ConnID{},
	}
}

// Start registers the instance.
func (h *HTTPEntry) Start(env node.Env) { h.Member.Start(env) }

// Handle reacts to one event.
func (h *HTTPEntry) Handle(env node.Env, ev node.Event) {
	switch ev := ev.(type) {
	case node.View:
		h.Member.Handle(env, ev)
		if ev.Role == node.RoleLogic {
			h.settleAll(env, -1)
		}
	case node.Timer:
		if !h.Member.Handle(env, ev) {
			h.onTimer(env, ev)
		}
	case node.HTTPRequest:
		h.onRequest(env, ev)
	case node.HTTPCanceled:
		h.onCanceled(env, ev.Conn)
	case node.Recv:
		h.onRecv(env, ev)
	case node.LinkDown:
		if ev.Peer.Role == node.RoleLogic {
			h.router.Views.MarkDead(ev.Peer)
			h.settleAll(env, ev.Peer.Slot)
		}
	case node.Completion:
		h.onCompletion(env, ev)
	}
}

// Stats returns a copy of the counters.
func (h *HTTPEntry) Stats() Stats {
	s := h.stats
	s.SessionsOpen = len(h.sessions)
	s.PollsParked = len(h.polls)
	s.Failovers, s.Failbacks, s.Resends = h.router.Failovers, h.router.Failbacks, h.router.Resends
	return s
}

func (h *HTTPEntry) onRecv(env node.Env, ev node.Recv) {
	switch m := ev.Msg.(type) {
	case *wire.ClientResponse:
		h.onResponse(env, m)
	case *wire.PushRequest:
		h.onPush(env, m)
	case *wire.KickRequest:
		h.onKick(env, m)
	default:
		env.Log().Warn("httpentry: unexpected message", "from", ev.From.String())
	}
}

// Timer tags.
type (
	attemptTag  struct{ user string } // the lane finds its request by timer id
	deadlineTag struct{ req uint32 }
	pollTag     struct{ user string }
	deliveryTag struct{ user string }
	idleTag     struct{ user string }
)

func (h *HTTPEntry) onTimer(env node.Env, ev node.Timer) {
	switch tag := ev.Tag.(type) {
	case attemptTag:
		if s := h.sessions[tag.user]; s != nil {
			if ok, exhausted := h.router.Timeout(env, s.lane, ev.ID); ok {
				h.exhausted(env, exhausted)
			}
		}
	case deadlineTag:
		if c := h.calls[tag.req]; c != nil && c.deadline == ev.ID {
			h.stats.RequestTimeouts++
			h.finish(env, c)
			h.replyError(env, c.conn, wire.ErrorCode_TIMEOUT, "logic did not answer in time")
		}
	case pollTag:
		if s := h.sessions[tag.user]; s != nil && s.pollTimer == ev.ID && s.poll != 0 {
			h.stats.PollTimeouts++
			h.answerPoll(env, s, s.unpark(env, h), false)
		}
	case deliveryTag:
		if s := h.sessions[tag.user]; s != nil && s.inflight != nil && s.inflight.timer == ev.ID {
			h.stats.PushTimeouts++
			h.failItems(env, s.user, s.inflight.items, "poll answer not acknowledged in time")
			s.inflight = nil
		}
	case idleTag:
		if s := h.sessions[tag.user]; s != nil && s.idleTimer == ev.ID {
			h.onIdle(env, s)
		}
	}
}
