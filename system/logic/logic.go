// Package logic is zzim's core service: login and presence, sending private
// messages, sync, conversation lists and read marks, and push routing. It is
// a sans-I/O state machine (system/node): entry forwards ClientRequests to
// it, it reaches the database only through das (StoreRequest/StoreReply
// over internal links), presence through Env.Presence and the queue through
// Env.Publish.
//
// How the promises of DESIGN.md ("What zzim promises") map to this code:
//
//  1. Total order per conversation: logic never invents a seq. The seq in a
//     SEND_ACK and in a push is the one das returned from the store's
//     transaction (onCommitted). bugs.LogicLocalSeq removes exactly this.
//  2. Durable before acknowledged: SEND_ACK is sent only from onCommitted,
//     which runs only on a StoreReply with OUTCOME_OK. An UNKNOWN outcome, a
//     das timeout or a link down never acknowledges (onAppendUnknown).
//  3. Idempotent sends: every attempt of a send carries the same (conv,
//     sender, client_msg_id); the store deduplicates, so a retry here, a
//     resend by the client, or a resend through another logic instance after
//     failover returns the original seq. A duplicate result is acknowledged
//     and delivered like a first commit (the first commit's delivery may
//     have been lost with a crashed instance).
//  4. Per-sender FIFO (session.go, docs/protocol.md "Per-sender FIFO"): per
//     (user, device) session, `done` is the highest cseq below which
//     everything is known committed, raised by this instance's own commits
//     and by the client's ack_floor. cseq done+1 is appended only when no
//     append of this session with cseq > done is in flight; later cseqs are
//     held (heldMax, holdTimeout) and released in cseq order; an unknown
//     outcome retries the same message (appendRetryMax, backoff from
//     env.Rand, another das slot after a timeout or link down) and never lets
//     the next one start; a definite rejection answers its code and rejects
//     the held and later pipelined sends OUT_OF_ORDER until the client
//     resends from the rejected one (go-back-N). So the first commit of any
//     cseq happens after the first commits of all smaller ones, wherever and
//     however late its append arrives. bugs.UnserialisedAppends removes the
//     hold and the one-in-flight rule.
//  5. No loss: after a commit (first or duplicate) the recipient is looked up
//     in presence and pushed to with reply_to = this instance; offline, a
//     failed lookup, or a PushFailed from entry publishes OfflineWork
//     (deliver.go). Clients also sync periodically; that part is theirs.
//  6. No duplicates reach the application: pushes are at-least-once; the
//     client deduplicates by seq. Queue publishes carry msgIDs
//     ("off:<conv>:<seq>:<user>", "sent:<conv>:<seq>") so retries dedup.
//  7. Linearizable sync: SYNC is one StoreRequest answered from the store by
//     das after the request arrives; logic caches nothing.
//     (bugs.StaleSync lives in das.)
//  8. Unread counts: READ is a mark_read StoreRequest; sending advances the
//     sender's read_seq in the store's append transaction; CONV_LIST reports
//     the store's last_seq, read_seq and unread.
//  9. Liveness: every wait is bounded (dasTimeout, holdTimeout,
//     appendRetryMax, pendingMax, heldMax, sessionsMax) and answers the
//     client when its bound is hit, so the client's resend logic can make
//     progress after faults heal.
package logic

import (
	"container/list"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Business names a group of ops a logic process may serve (the article's
// Login_Logic, Msg_Logic, Contact_Logic split).
type Business string

const (
	// BusinessLogin: LOGIN, LOGOUT, HEARTBEAT, SessionClosed (presence).
	BusinessLogin Business = "login"
	// BusinessMsg: SEND, SYNC, PushFailed.
	BusinessMsg Business = "msg"
	// BusinessContact: CONV_LIST, READ (conversation lists and unread counts).
	BusinessContact Business = "contact"
)

// Defaults and bounds.
const (
	DasTimeoutDefault = time.Second
	// HoldTimeoutDefault is well under entry's logicTimeout (2s): a send
	// held behind its session's earlier ones must be answered (OUT_OF_ORDER,
	// the client resends) before entry's attempt timer reads the wait as a
	// dead logic and fails the session over, which multiplies the load.
	HoldTimeoutDefault = time.Second
	// AnswerWithinDefault is how long logic may take to answer a client
	// request, from its arrival: well under entry's logicTimeout (2s), so a
	// slow das tier (a held send's wait, then its append; retries after
	// unknown outcomes) is answered TIMEOUT or OVERLOADED by logic before
	// entry's attempt timer reads the wait as a dead logic and fails the
	// session over (promise 9: overload is never read as death).
	AnswerWithinDefault = 1500 * time.Millisecond
	// attemptMin: a das attempt is not started with less of the request's
	// budget left than this; it could only end in an unknown outcome.
	attemptMin            = 150 * time.Millisecond
	AppendRetryMaxDefault = 8
	SessionsMaxDefault    = 100000
	HeldMaxDefault        = 64
	PendingMaxDefault     = 256
	PresenceTTLDefault    = 90 * time.Second

	// retryBackoffBase and retryBackoffMax bound the wait before retrying an
	// append whose outcome is unknown: base<<attempt, capped, jittered.
	retryBackoffBase = 20 * time.Millisecond
	retryBackoffMax  = 640 * time.Millisecond
	// readAttemptMax bounds the attempts of a read (sync, conv list, mark
	// read); reads are idempotent, so a timed-out one is simply retried.
	readAttemptMax = 3
	// depsMax bounds the presence and publish requests tracked at once.
	depsMax = 4096
	// publishAttemptMax bounds the attempts of one queue publish.
	publishAttemptMax = 3
	// evictScanMax bounds the search for an idle session to evict.
	evictScanMax = 64
	// localSeqMax bounds bugs.LogicLocalSeq's counters (cleared when full).
	localSeqMax = 1 << 16
)

// Config configures a Logic.
type Config struct {
	// Topology is the number of slots per role (views, das routing).
	Topology map[node.Role]int
	Bugs     bugs.Set
	// Businesses this process serves; empty means all.
	Businesses []Business

	DasTimeout  time.Duration // one das attempt; 0 means DasTimeoutDefault
	HoldTimeout time.Duration // a held send; 0 means HoldTimeoutDefault
	// AnswerWithin bounds a client request's time in logic (every das
	// attempt's timer is cut to what is left of it); 0 means
	// AnswerWithinDefault. Keep it under the callers' logicTimeout.
	AnswerWithin   time.Duration
	AppendRetryMax int           // attempts of one append; 0 means AppendRetryMaxDefault
	SessionsMax    int           // FIFO sessions kept; 0 means SessionsMaxDefault
	HeldMax        int           // held sends per session; 0 means HeldMaxDefault
	PendingMax     int           // das requests in flight; 0 means PendingMaxDefault
	PresenceTTL    time.Duration // 0 means PresenceTTLDefault

	// SendRatePerSecond and SendBurst are the per-user token bucket of
	// SENDs (ratelimit.go); 0 means the default, a negative rate no limit.
	SendRatePerSecond int
	SendBurst         int
	RateBucketsMax    int // users with a bucket; 0 means RateBucketsMaxDefault

	// ContactTouchInterval: MessageSent is published at most once per
	// conversation per interval (touch.go); 0 means the default, a
	// negative value every message.
	ContactTouchInterval time.Duration
	ContactTouchesMax    int // conversations remembered; 0 means ContactTouchesMaxDefault
}

// Stats are logic counters, exported for metrics and the simulator's
// exercised counters.
type Stats struct {
	Sends               uint64 // SEND requests accepted for processing
	Acks                uint64 // SEND_ACKs (one per commit, whatever the waiters)
	Retries             uint64 // append attempts after an unknown outcome
	Unknown             uint64 // unknown append outcomes (das UNKNOWN, timeout, link down)
	Duplicates          uint64 // appends the store answered as duplicates: an earlier attempt, whose outcome a caller never learnt, had committed
	Failovers           uint64 // retries sent to another das slot than the previous attempt
	Held                uint64 // sends that had to wait for an earlier cseq
	RejectedOutOfOrder  uint64 // OUT_OF_ORDER answers
	Rejected            uint64 // other SEND errors after validation (OVERLOADED, TIMEOUT, ...)
	RateLimited         uint64 // SENDs refused RATE_LIMITED (also counted in Rejected)
	SupersededRequests  uint64 // resent SENDs' earlier requests answered TIMEOUT (addWaiter)
	Pushes              uint64 // PushRequests sent
	OfflinePublishes    uint64 // OfflineWork publishes
	SentEvents          uint64 // MessageSent publishes
	SentEventsSkipped   uint64 // MessageSent not published: the conversation's was recent
	PushesLostWithEntry uint64 // pushes sent to an entry whose link then went down: offline path
	Kicks               uint64
	Sessions            int // FIFO sessions held now
	SessionsEvicted     uint64
}

// Logic is the logic state machine.
type Logic struct {
	cfg    Config
	member *node.Member
	serves map[Business]bool

	sessions map[sessionKey]*session
	lru      *list.List // of *session, most recent first

	calls    map[uint64]dasCall // das requests in flight, by req_id
	nextCall uint64
	self     node.AddrName // this instance in the reply_to of das requests and pushes
	reserved int           // call slots held by appends waiting to retry

	deps     map[node.ReqID]func(node.Env, node.Completion) // presence and publish requests
	limiter  *limiter
	touches  *touches
	recent   map[node.Addr]*recentPushes // pushes per entry, for LinkDown
	localSeq map[string]uint64           // bugs.LogicLocalSeq only
	stats    Stats
}

var _ node.Node = (*Logic)(nil)

// New returns a Logic with cfg's defaults filled in.
func New(cfg Config) *Logic {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.DasTimeout, DasTimeoutDefault)
	def(&cfg.HoldTimeout, HoldTimeoutDefault)
	def(&cfg.AnswerWithin, AnswerWithinDefault)
	def(&cfg.PresenceTTL, PresenceTTLDefault)
	defInt(&cfg.AppendRetryMax, AppendRetryMaxDefault)
	defInt(&cfg.SessionsMax, SessionsMaxDefault)
	defInt(&cfg.HeldMax, HeldMaxDefault)
	defInt(&cfg.PendingMax, PendingMaxDefault)
	if cfg.SendRatePerSecond == 0 {
		cfg.SendRatePerSecond = SendRatePerSecondDefault
	}
	defInt(&cfg.SendBurst, SendBurstDefault)
	defInt(&cfg.RateBucketsMax, RateBucketsMaxDefault)
	if cfg.ContactTouchInterval == 0 {
		cfg.ContactTouchInterval = ContactTouchIntervalDefault
	}
	defInt(&cfg.ContactTouchesMax, ContactTouchesMaxDefault)
	l := &Logic{
		cfg:      cfg,
		member:   node.NewMember(cfg.Topology),
		serves:   map[Business]bool{},
		sessions: map[sessionKey]*session{},
		lru:      list.New(),
		calls:    map[uint64]dasCall{},
		deps:     map[node.ReqID]func(node.Env, node.Completion){},
		localSeq: map[string]uint64{},
		limiter:  newLimiter(cfg.SendRatePerSecond, cfg.SendBurst, cfg.RateBucketsMax),
		touches:  newTouches(cfg.ContactTouchInterval, cfg.ContactTouchesMax),
		recent:   map[node.Addr]*recentPushes{},
	}
	if len(cfg.Businesses) == 0 {
		cfg.Businesses = []Business{BusinessLogin, BusinessMsg, BusinessContact}
	}
	for _, b := range cfg.Businesses {
		l.serves[b] = true
	}
	return l
}

// Stats returns a copy of the counters.
func (l *Logic) Stats() Stats {
	s := l.stats
	s.Sessions = len(l.sessions)
	return s
}

// Start implements node.Node.
func (l *Logic) Start(env node.Env) { l.member.Start(env) }

// Handle implements node.Node.
func (l *Logic) Handle(env node.Env, ev node.Event) {
	if l.member.Handle(env, ev) {
		return
	}
	switch ev := ev.(type) {
	case node.Recv:
		l.onRecv(env, ev)
	case node.Timer:
		l.onTimer(env, ev)
	case node.Completion:
		if then, ok := l.deps[ev.Req]; ok {
			delete(l.deps, ev.Req)
			then(env, ev)
		}
		// Other completions (registry, untracked) need nothing.
	case node.LinkDown:
		switch ev.Peer.Role {
		case node.RoleDas:
			l.onDasDown(env, ev.Peer)
		case node.RoleEntry, node.RoleHTTPEntry:
			l.onEntryDown(env, ev.Peer)
		}
	}
}

func (l *Logic) onRecv(env node.Env, ev node.Recv) {
	switch m := ev.Msg.(type) {
	case *wire.ClientRequest:
		l.onClientRequest(env, m)
	case *wire.StoreReply:
		l.onStoreReply(env, ev.From, m)
	case *wire.PushFailed:
		if l.serves[BusinessMsg] {
			l.onPushFailed(env, m)
		}
	case *wire.SessionClosed:
		if l.serves[BusinessLogin] {
			l.onSessionClosed(env, m)
		}
	}
}

// Timer tags.
type (
	dasTimeoutTag struct{ id uint64 }
	retryTag      struct{ op *sendOp }
	holdTag       struct{ op *sendOp }
)

func (l *Logic) onTimer(env node.Env, ev node.Timer) {
	switch t := ev.Tag.(type) {
	case dasTimeoutTag:
		l.onDasTimeout(env, t.id)
	case retryTag:
		l.onRetryTimer(env, t.op)
	case holdTag:
		l.onHoldTimer(env, t.op)
	}
}
