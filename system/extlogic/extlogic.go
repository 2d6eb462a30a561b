// Package extlogic is zzim's heavy, non-core service: it consumes the durable
// queues (system/mq) and does the work that must not slow down Logic:
//
//   - zzim.offline.<user> (wire.OfflineWork): an offline push notification
//     through a Notifier (best effort, deduplicated per (user, conv, seq));
//   - zzim.platform.notice (wire.PlatformNotice): append to the user's system
//     conversation through das, then push it if the user is online;
//   - zzim.platform.broadcast (wire.PlatformBroadcast): one append to the
//     broadcast conversation, then pushes to every online user in batches of
//     at most fanoutBatchMax;
//   - zzim.events.sent (wire.MessageSent): contact upkeep (last_active) for
//     both participants.
//
// Every delivery is acknowledged only after its work is done and nakked
// (with backoff) on a failure that may succeed later. The queue deduplicates
// publishes only within mq.DedupWindow, so the work itself is idempotent:
// appends carry the notice or broadcast id as client_msg_id (the store
// returns Duplicate on a repeat), contact touches are last-writer-wins, and a
// repeated push is deduplicated by the client by seq.
//
// ExtLogic is a sans-I/O state machine (node.Node): no clock, goroutines or
// blocking calls; everything goes through node.Env.
package extlogic

import (
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Defaults for Config fields left zero.
const (
	// InflightMaxDefault bounds deliveries in progress; beyond it a delivery
	// is nakked with OverloadNakDelayDefault.
	InflightMaxDefault = 256
	// FanoutBatchMaxDefault bounds the targets of one broadcast PushRequest
	// and the presence page size.
	FanoutBatchMaxDefault = 500
	// FanoutInflightMaxDefault bounds the presence pages in flight across all
	// broadcast fan-outs (each fan-out pages sequentially: a scan cursor is
	// only known once the previous page has answered).
	FanoutInflightMaxDefault = 4
	// RetryMaxDefault bounds attempts of one das or presence request.
	RetryMaxDefault = 3
	// NotifiedMaxDefault bounds the (user, conv, seq) notification dedup LRU.
	NotifiedMaxDefault = 65536
	// StoreTimeoutDefault: a das request unanswered this long is retried on
	// the next das slot (its outcome is unknown; appends are idempotent).
	StoreTimeoutDefault = 2 * time.Second
	// NakDelayBaseDefault and NakDelayMaxDefault shape the redelivery backoff:
	// base * 2^(deliveries-1), capped. The cap is also how long after a
	// dependency heals a notice waiting on it can still wait: at 30 s a
	// notice refused through a long database outage was stored 29 s after
	// the outage ended (bench-standard --swarm seed 395), past the 20 s in
	// which the scenarios require convergence after healing. 10 s matches
	// the queue's AckWait; a retry every 10 s per waiting job is no load.
	NakDelayBaseDefault = 500 * time.Millisecond
	NakDelayMaxDefault  = 10 * time.Second
	// OverloadNakDelayDefault: how long a delivery refused for inflightMax waits.
	OverloadNakDelayDefault = time.Second
	// NotificationMessagesMax bounds the messages one Notification carries;
	// the rest are counted in Notification.Omitted.
	NotificationMessagesMax = 50
)

// Notification is one offline push notification: messages a user did not
// receive by push.
type Notification struct {
	User     string
	Messages []*wire.ChatMessage
	// Omitted counts messages left out to respect NotificationMessagesMax.
	Omitted int
}

// Notifier sends offline push notifications. Notify is called from Handle,
// so it must not block: the live implementations (system/notify) queue to a
// bounded worker pool and drop when full. Notifications are best effort.
type Notifier interface {
	Notify(n Notification)
}

// NotifierFunc adapts a function to Notifier.
type NotifierFunc func(Notification)

// Notify calls f(n).
func (f NotifierFunc) Notify(n Notification) { f(n) }

// Config of one extlogic instance. Zero fields take the defaults above.
type Config struct {
	// Topology: configured slots per role (das is the one extlogic routes to).
	Topology map[node.Role]int
	// Notifier receives offline notifications; nil drops them (counted).
	Notifier Notifier

	InflightMax       int
	FanoutBatchMax    int
	FanoutInflightMax int
	RetryMax          int
	NotifiedMax       int
	StoreTimeout      time.Duration
	NakDelayBase      time.Duration
	NakDelayMax       time.Duration
	OverloadNakDelay  time.Duration
}

func (c Config) withDefaults() Config {
	setInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	setInt(&c.InflightMax, InflightMaxDefault)
	setInt(&c.FanoutBatchMax, FanoutBatchMaxDefault)
	setInt(&c.FanoutInflightMax, FanoutInflightMaxDefault)
	setInt(&c.RetryMax, RetryMaxDefault)
	setInt(&c.NotifiedMax, NotifiedMaxDefault)
	setDur(&c.StoreTimeout, StoreTimeoutDefault)
	setDur(&c.NakDelayBase, NakDelayBaseDefault)
	setDur(&c.NakDelayMax, NakDelayMaxDefault)
	setDur(&c.OverloadNakDelay, OverloadNakDelayDefault)
	return c
}

// Stats are the instance's counters since it started.
type Stats struct {
	Deliveries     uint64 // deliveries received
	Acks           uint64
	Naks           uint64
	Redeliveries   uint64 // deliveries with NumDelivered > 1
	Joined         uint64 // deliveries of a message already in progress here, answered with it
	Overloaded     uint64 // deliveries nakked because inflightMax was reached
	Poison         uint64 // undecodable or invalid payloads, acked and logged (a redelivery cannot fix them)
	NoticesStored  uint64 // notices appended (not duplicates)
	Broadcasts     uint64 // broadcasts appended (not duplicates)
	FanoutsDone    uint64 // broadcast fan-outs that paged through all of presence
	Pushes         uint64 // push targets sent (one per user per push)
	PushRequests   uint64 // PushRequest messages sent
	PushFailures   uint64 // PushFailed received (nothing more to do: the user syncs)
	Notifications  uint64 // notifications handed to the Notifier
	Duplicates     uint64 // appends the store reported as duplicates, notifications suppressed by the LRU
	ContactTouches uint64
	StoreRetries   uint64 // das requests retried (unknown outcome, timeout, link down)
	StoreFailures  uint64 // das requests that failed definitely or ran out of retries
}

// ExtLogic is one extlogic instance.
type ExtLogic struct {
	*node.Member
	cfg   Config
	stats Stats

	// jobs in progress, by queue msgID (deliveries without one get a private job).
	jobs     map[string]*job
	inflight int // deliveries in progress, bounded by cfg.InflightMax

	nextReq  uint64
	calls    map[uint64]*storeCall    // das requests in flight, by StoreRequest.req_id
	presence map[node.ReqID]*presCall // presence requests in flight

	fanoutActive  int    // presence pages in flight, bounded by cfg.FanoutInflightMax
	fanoutWaiting []*job // broadcasts waiting for a page slot (bounded by inflightMax: each is a job)

	notified *lru

	// self names this instance in every das request's reply_to.
	self node.AddrName
}

// New returns an extlogic instance. It is constructed afresh per incarnation.
func New(cfg Config) *ExtLogic {
	cfg = cfg.withDefaults()
	return &ExtLogic{
		Member:   node.NewMember(cfg.Topology),
		cfg:      cfg,
		jobs:     map[string]*job{},
		calls:    map[uint64]*storeCall{},
		presence: map[node.ReqID]*presCall{},
		notified: newLRU(cfg.NotifiedMax),
	}
}

// Stats returns a copy of the counters.
func (x *ExtLogic) Stats() Stats { return x.stats }

// Start registers the instance.
func (x *ExtLogic) Start(env node.Env) { x.Member.Start(env) }

// Handle reacts to one event.
func (x *ExtLogic) Handle(env node.Env, ev node.Event) {
	if x.Member.Handle(env, ev) {
		return
	}
	switch ev := ev.(type) {
	case node.Delivery:
		x.onDelivery(env, ev)
	case node.Recv:
		x.onRecv(env, ev)
	case node.Timer:
		if t, ok := ev.Tag.(storeTimeoutTag); ok {
			x.onStoreTimeout(env, t.req)
		}
	case node.Completion:
		x.onPresence(env, ev)
	case node.LinkDown:
		if ev.Peer.Role == node.RoleDas {
			x.onDasDown(env, ev.Peer)
		}
	}
}

func (x *ExtLogic) onRecv(env node.Env, ev node.Recv) {
	switch m := ev.Msg.(type) {
	case *wire.StoreReply:
		x.onStoreReply(env, ev.From, m)
	case *wire.PushFailed:
		// The message is stored; the user gets it by sync (or the next push).
		x.stats.PushFailures++
	}
}

var _ node.Node = (*ExtLogic)(nil)
