package client

import (
	"errors"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/wire"
)

// Transport picks how the client reaches the system.
type Transport int

const (
	// TCP: one framed connection to an entry (Config.Entries), pipelined sends.
	TCP Transport = iota
	// LongPoll: HTTP to httpentry, one send at a time, a parked GET /v1/poll.
	LongPoll
)

func (t Transport) String() string {
	if t == LongPoll {
		return "longpoll"
	}
	return "tcp"
}

// Defaults of the named bounds; a zero field in Config takes its default.
const (
	BackoffMinDefault        = 100 * time.Millisecond
	BackoffMaxDefault        = 5 * time.Second
	RequestTimeoutDefault    = 5 * time.Second
	SyncIntervalMaxDefault   = 10 * time.Second
	HeartbeatIntervalDefault = 30 * time.Second
	PendingSendsMaxDefault   = 1024
	InflightMaxDefault       = 32
	SyncLimitDefault         = 50
	ReorderBufferMaxDefault  = 1024
	SyncInflightMaxDefault   = 8
	ConvsMaxDefault          = 10000
	ConvListLimitDefault     = 100
	HeldMaxDefault           = 1 << 20
	// PushAckDelayDefault: how long a PUSH may wait for its PUSH_ACK to
	// ride on the client's next write. Far below entry's pushAckTimeout
	// (5 s), so an unhurried ack never sends a push to the offline path.
	PushAckDelayDefault = 250 * time.Millisecond
	// PollWaitDefault is how long httpentry may park one poll.
	PollWaitDefault = 25 * time.Second
)

// ackedRememberMax bounds the memory of acknowledged cseqs kept to check
// duplicate answers; older ones are forgotten (their duplicates are ignored
// unchecked).
const ackedRememberMax = 4096

// Errors Send returns. Both are defined behaviour, not failures of the system.
var (
	// ErrPendingFull: PendingSendsMax sends are unacknowledged; try later.
	ErrPendingFull = errors.New("client: pending sends full")
	// ErrStopped: the client was stopped, logged out, kicked or finished.
	ErrStopped = errors.New("client: stopped")
	// ErrTooLarge: the body cannot fit in one frame.
	ErrTooLarge = errors.New("client: body too large for a frame")
)

// Config describes one client. Zero bounds take their defaults.
type Config struct {
	User   string
	Device string
	Token  string

	Transport Transport
	// Entries are entry TCP addresses, tried in turn from a random start.
	Entries []string
	// HTTP is httpentry's address for the long-poll transport; the driver
	// resolves the paths Env.HTTP is given against it.
	HTTP string

	// ClientNum is the history's "client" field: unique within a history.
	ClientNum int
	Bugs      bugs.Set

	BackoffMin        time.Duration // reconnect and resend backoff, doubled per attempt
	BackoffMax        time.Duration
	RequestTimeout    time.Duration // an unanswered request is retried after this
	SyncIntervalMax   time.Duration // the conversation list is fetched at least this often; what it shows behind is synced
	HeartbeatInterval time.Duration // TCP: a HEARTBEAT this often, busy or idle (it refreshes presence)
	PollWait          time.Duration // long-poll: timeout_ms of a poll
	PendingSendsMax   int           // unacknowledged sends; Send fails with ErrPendingFull beyond
	InflightMax       int           // TCP: sends pipelined on the connection
	SyncLimit         int           // page size of a sync
	ReorderBufferMax  int           // out-of-order messages buffered per conversation
	SyncInflightMax   int           // syncs outstanding at once; more wait in a queue
	ConvsMax          int           // conversations tracked; messages of more are dropped
	ConvListLimit     int           // rows asked for by CONV_LIST
	HeldMax           int           // messages held per conversation; the oldest are forgotten beyond
	// PushAckDelay (TCP): a PUSH is acknowledged with the next frame the
	// client writes, or after PushAckDelay at the latest, the acks of
	// every push received meanwhile in one PUSH_ACK: on a loopback or LAN
	// connection a write costs more than everything else a message does,
	// and a PUSH_ACK of its own was one of four per message. Negative:
	// each PUSH is acknowledged at once, in a PUSH_ACK of its own.
	PushAckDelay time.Duration

	// OnDeliver, if set, sees every message handed to the application
	// (after dedup and reordering), with via "push" or "sync". Load
	// generators measure send-to-deliver latency here.
	OnDeliver func(env Env, m *wire.ChatMessage, via string)
	// OnSendDone, if set, sees every send's definite outcome: seq on
	// success, errCode (e.g. "BAD_REQUEST") on definite failure.
	OnSendDone func(env Env, clientMsgID string, seq uint64, errCode string)
}

func (cfg *Config) fillDefaults() {
	setDur := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	setInt := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	setDur(&cfg.BackoffMin, BackoffMinDefault)
	setDur(&cfg.BackoffMax, BackoffMaxDefault)
	setDur(&cfg.RequestTimeout, RequestTimeoutDefault)
	setDur(&cfg.SyncIntervalMax, SyncIntervalMaxDefault)
	setDur(&cfg.HeartbeatInterval, HeartbeatIntervalDefault)
	setDur(&cfg.PollWait, PollWaitDefault)
	setInt(&cfg.PendingSendsMax, PendingSendsMaxDefault)
	setInt(&cfg.InflightMax, InflightMaxDefault)
	setInt(&cfg.SyncLimit, SyncLimitDefault)
	setInt(&cfg.ReorderBufferMax, ReorderBufferMaxDefault)
	setInt(&cfg.SyncInflightMax, SyncInflightMaxDefault)
	setInt(&cfg.ConvsMax, ConvsMaxDefault)
	setInt(&cfg.ConvListLimit, ConvListLimitDefault)
	setInt(&cfg.HeldMax, HeldMaxDefault)
	if cfg.PushAckDelay == 0 {
		cfg.PushAckDelay = PushAckDelayDefault
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = cfg.BackoffMin
	}
}
