package client

import (
	"errors"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// ErrOffline: the request needs a live session and there is none now.
var ErrOffline = errors.New("client: offline")

// ErrBusy: too many requests are outstanding on the connection.
var ErrBusy = errors.New("client: too many outstanding requests")

// Stats counts what the client did; the simulator reports them as exercised
// counters, so a fault that fired but never mattered is visible.
type Stats struct {
	Sends            int // Send calls accepted
	Acks             int // sends acknowledged
	SendErrors       int // sends failed definitively
	Resends          int // sends written again (reconnect, go-back-N, timeout)
	GoBackN          int // go-back-N restarts
	WindowCuts       int // send window cut to one after RATE_LIMITED or OVERLOADED
	Timeouts         int // requests unanswered within RequestTimeout
	Pushes           int // PUSH frames / non-empty polls received
	Syncs            int // syncs issued
	GapFills         int // messages the client lacked and got by sync
	DupPushesDropped int // pushed messages already held or buffered
	DupsDropped      int // messages already held or buffered, any path
	Reconnects       int // dials after the first (TCP) or logins after the first (long-poll)
	Logins           int // sessions established
	ReorderDropped   int // out-of-order messages dropped: reorder buffer full
	ConvsDropped     int // messages dropped: ConvsMax conversations known
	HeldForgotten    int // held messages forgotten: HeldMax reached
	Refused          int // SYNCs and CONV_LISTs refused OVERLOADED or RATE_LIMITED
	Kicked           bool
	LoginRejected    bool
}

// transport is what differs between TCP and long-poll: how requests travel
// and how a session is established. The shared core (sends, conversations,
// history) lives in Client.
type transport interface {
	start(env Env)
	handle(env Env, ev Event)
	timer(env Env, k timerKind)
	// window is how many sends may be in flight at once.
	window() int
	writeSend(env Env, s *pendingSend, floor uint64)
	sync(env Env, conv string, after uint64, limit int, gen uint64) error
	convList(env Env) error
	read(env Env, conv string, seq uint64) error
	logout(env Env)
	stop(env Env)
}

type timerKind int

const (
	timerReconnect timerKind = iota // TCP: dial the next entry; long-poll: log in again
	timerResend                     // go-back-N backoff is over
	timerRequest                    // TCP: the earliest request deadline
	timerHeartbeat                  // TCP: idle check
	timerPeriodic                   // fetch the conversation list, sync what is behind
	timerSyncRetry                  // retry syncs that failed
	timerPoll                       // long-poll: poll again after a failed poll
	timerLogout                     // TCP: hang up if the server did not close after LOGOUT
	timerPushAck                    // TCP: write the PUSH_ACK of the pushes received since the last write
	timerKindCount
)

// timerTag is the tag of every timer the client sets.
type timerTag struct{ kind timerKind }

type timerSlot struct {
	id    TimerID
	armed bool
}

// Client is one app instance. It is not safe for concurrent use: the driver
// calls it from one goroutine (or the simulator's loop).
//
// Driving it: New, then Start(env); feed every driver event to Handle
// (Connected, Disconnected, FrameIn, HTTPResponse, and every Timer whose tag
// the client set); call Send, Sync, ConvList, Read whenever the workload
// wants; Stop or Logout, then Finish once to record what is left. Every
// effect goes through env; nothing blocks.
type Client struct {
	cfg Config
	tr  transport

	started, stopped, finished bool
	online                     bool
	session                    int

	// Sends: the unacknowledged ones in cseq order.
	nextCSeq      uint64
	sends         []*pendingSend
	round         uint64 // bumped on go-back-N and on each session: older rounds' errors are stale
	paused        bool   // a go-back-N backoff is running
	resendAttempt int    // consecutive go-back-N rounds without an ack: the backoff's exponent
	// sendWindow is how many sends may be in flight now (at most the
	// transport's window): cut to sendWindowRejected when the server
	// refuses a send for load, grown by one per ack (slow start), so a
	// refused burst is resent a little at a time rather than a whole
	// window per round.
	sendWindow int
	acked      ackMemory

	convs     map[string]*conv
	syncQueue []string // conversations waiting for a sync slot; each at most once
	syncRetry []string // conversations whose sync failed; each at most once
	// syncFailures counts sync failures since the last answered sync: the
	// retry backs off exponentially with it, so an overloaded server is
	// not answered by every client retrying every BackoffMin.
	syncFailures int

	instance      string // this process's id in LOGIN (drawn at the first)
	loginAttempts uint64 // LOGINs sent
	syncInflight  int
	syncGen       uint64 // bumped when a session ends: answers to older syncs keep no bookkeeping

	timers [timerKindCount]timerSlot
	stats  Stats

	returns []int64 // the rest of the block return times are taken from (history.go)
}

// New returns a client; Start it to connect.
func New(cfg Config) *Client {
	cfg.fillDefaults()
	c := &Client{cfg: cfg, convs: map[string]*conv{}}
	if cfg.Transport == LongPoll {
		c.tr = newPoll(c)
	} else {
		c.tr = newTCP(c)
	}
	c.sendWindow = c.tr.window()
	return c
}

// Config returns the configuration with defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// Start connects (TCP) or logs in (long-poll) and starts the periodic sync.
func (c *Client) Start(env Env) {
	if c.started || c.stopped {
		return
	}
	c.started = true
	c.armPeriodic(env)
	c.tr.start(env)
}

// Handle reacts to one event. It never blocks.
func (c *Client) Handle(env Env, ev Event) {
	if c.finished {
		return
	}
	if t, ok := ev.(Timer); ok {
		c.onTimer(env, t)
		return
	}
	c.tr.handle(env, ev)
}

// Logout ends the session politely (TCP: LOGOUT) and stops reconnecting.
func (c *Client) Logout(env Env) {
	if c.stopped {
		return
	}
	c.halt(env)
	c.tr.logout(env)
}

// Stop drops the connection and stops reconnecting. Answers already on
// their way are still taken (their outcomes are real) until Finish.
func (c *Client) Stop(env Env) {
	if c.stopped {
		return
	}
	c.halt(env)
	c.tr.stop(env)
}

func (c *Client) halt(env Env) {
	c.stopped = true
	c.online = false
	for k := timerKind(0); k < timerKindCount; k++ {
		c.disarm(env, k)
	}
}

// Finish stops the client and records what is left: every unacknowledged
// send (unknown outcome if it was ever written, NOT_SENT otherwise) and one
// "final" op per conversation. Call it once, at the end of a run.
func (c *Client) Finish(env Env) {
	if c.finished {
		return
	}
	c.Stop(env)
	c.finished = true
	for _, s := range c.sends {
		c.recordSendUnfinished(env, s)
	}
	c.sends = nil
	for _, id := range c.convIDs() {
		c.recordFinal(env, c.convs[id])
	}
}

// Sync asks for a sync of conv from what the client holds. Without a
// session it waits in the queue for the next login.
func (c *Client) Sync(env Env, convID string) error {
	if c.stopped {
		return ErrStopped
	}
	cv := c.conv(convID)
	if cv == nil {
		return ErrConvsFull
	}
	c.requestSync(env, cv)
	return nil
}

// ConvList asks for the conversation list.
func (c *Client) ConvList(env Env) error {
	if c.stopped {
		return ErrStopped
	}
	if !c.online {
		return ErrOffline
	}
	return c.tr.convList(env)
}

// Read marks conv read up to seq.
func (c *Client) Read(env Env, convID string, seq uint64) error {
	if c.stopped {
		return ErrStopped
	}
	if !c.online {
		return ErrOffline
	}
	return c.tr.read(env, convID, seq)
}

// Held is the application's view of conv: the messages it holds, in seq
// order. They are copies (pointers, because protobuf messages must not be
// copied by value: go vet's copylocks).
func (c *Client) Held(convID string) []*wire.ChatMessage {
	cv := c.convs[convID]
	if cv == nil {
		return nil
	}
	out := make([]*wire.ChatMessage, len(cv.held))
	for i, m := range cv.held {
		out[i] = proto.CloneOf(m)
	}
	return out
}

// Convs lists the conversations the client knows, sorted.
func (c *Client) Convs() []string { return c.convIDs() }

// Acked is the number of sends acknowledged so far.
func (c *Client) Acked() int { return c.stats.Acks }

// Unacked is the number of sends not yet acknowledged nor failed.
func (c *Client) Unacked() int { return len(c.sends) }

// Online reports whether a session is up.
func (c *Client) Online() bool { return c.online }

// Session is the current (or last) session number; 0 before the first login.
func (c *Client) Session() int { return c.session }

// Stopped reports whether the client stopped (Stop, Logout, KICK, rejected login).
func (c *Client) Stopped() bool { return c.stopped }

// Stats returns the counters.
func (c *Client) Stats() Stats { return c.stats }

func (c *Client) convIDs() []string {
	ids := make([]string, 0, len(c.convs))
	for id := range c.convs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// onLogin: a session is up. Everything unacknowledged is resent in cseq
// order, every known conversation is synced (pushes sent while offline went
// to the offline path), and the conversation list is fetched (it names
// conversations this client has not seen yet).
func (c *Client) onLogin(env Env, call int64) {
	c.session++
	c.online = true
	c.stats.Logins++
	if c.stats.Logins > 1 && c.cfg.Transport == LongPoll {
		c.stats.Reconnects++
	}
	c.recordLogin(env, call, "")
	c.restartSends(env)
	_ = c.tr.convList(env)
	c.syncAll(env)
}

// sessionLost: the connection (or the HTTP session) is gone. Sends will be
// resent and syncs reissued on the next login.
func (c *Client) sessionLost() {
	c.online = false
	c.round++
	for _, s := range c.sends {
		s.written = false
	}
	c.syncGen++
	c.syncInflight = 0
	for _, id := range c.convIDs() {
		cv := c.convs[id]
		cv.syncing, cv.syncAgain = false, false
	}
}

// onLoginRejected: the token was refused (or the session kicked). Retrying
// cannot help: the client stops.
func (c *Client) onLoginRejected(env Env, call int64, code string) {
	c.stats.LoginRejected = true
	c.recordLogin(env, call, code)
	c.halt(env)
	c.tr.stop(env)
}

// onKick: a newer login of the same user replaced this session. Recorded
// as a login op with error KICKED (the session ended), then stop.
func (c *Client) onKick(env Env) {
	c.stats.Kicked = true
	c.recordLogin(env, env.Now().UnixNano(), wire.ErrorCode_KICKED.String())
	c.halt(env)
	c.tr.stop(env)
}

func (c *Client) onTimer(env Env, t Timer) {
	tag, ok := t.Tag.(timerTag)
	if !ok || tag.kind < 0 || tag.kind >= timerKindCount {
		return
	}
	slot := &c.timers[tag.kind]
	if !slot.armed || slot.id != t.ID {
		return // canceled or replaced
	}
	slot.armed = false
	switch tag.kind {
	case timerResend:
		c.paused = false
		c.pump(env)
	case timerPeriodic:
		c.onPeriodic(env)
	case timerSyncRetry:
		c.onSyncRetry(env)
	default:
		c.tr.timer(env, tag.kind)
	}
}

func (c *Client) arm(env Env, k timerKind, d time.Duration) {
	c.disarm(env, k)
	c.timers[k] = timerSlot{id: env.After(d, timerTag{kind: k}), armed: true}
}

func (c *Client) disarm(env Env, k timerKind) {
	if c.timers[k].armed {
		env.Cancel(c.timers[k].id)
		c.timers[k].armed = false
	}
}

func (c *Client) armed(k timerKind) bool { return c.timers[k].armed }

// backoff is exponential from BackoffMin to BackoffMax with jitter over the
// upper half, so clients that lost the same server do not return in step.
// loginMessage is the next LOGIN: it names this client's process (an id
// drawn once) and counts its attempts, so that a login of this process
// that a paused logic handles late cannot stop its newer session (logic's
// kick carries both; entry compares them with the session's own).
func (c *Client) loginMessage(env Env) *wire.Login {
	if c.instance == "" {
		c.instance = strconv.FormatUint(env.Rand().Uint64(), 36)
	}
	c.loginAttempts++
	return &wire.Login{Token: c.cfg.Token, DeviceId: c.cfg.Device, Instance: c.instance, Attempt: c.loginAttempts}
}

func (c *Client) backoff(env Env, attempt int) time.Duration {
	d := c.cfg.BackoffMin
	for i := 0; i < attempt && d < c.cfg.BackoffMax; i++ {
		d *= 2
	}
	if d > c.cfg.BackoffMax {
		d = c.cfg.BackoffMax
	}
	half := d / 2
	return half + time.Duration(env.Rand().Int64N(int64(d-half)+1))
}

// armPeriodic schedules the next periodic sync within SyncIntervalMax
// (jittered over its upper half, so a fleet of clients spreads out).
func (c *Client) armPeriodic(env Env) {
	d := c.cfg.SyncIntervalMax
	half := d / 2
	c.arm(env, timerPeriodic, half+time.Duration(env.Rand().Int64N(int64(d-half)+1)))
}

// onPeriodic fetches the conversation list: its answer (onConvList) syncs
// every conversation whose last_seq is ahead of what the client holds, and
// every known conversation the list leaves out. This is what delivers a
// message whose push was lost. One request per period, not one per
// conversation: syncing every conversation every period made idle clients
// the bulk of the load (broadcast-100k: 0.6 syncs per user per second,
// 1.5M simulator events per simulated second). If the list cannot be
// asked for, or fails, every known conversation is synced instead.
func (c *Client) onPeriodic(env Env) {
	c.armPeriodic(env)
	if !c.online {
		return
	}
	if c.tr.convList(env) != nil {
		c.syncAll(env)
	}
}

// onConvListFailed: a conversation list failed with code (unspecified: no
// answer in time). Sync every known conversation instead, so the period
// still fills gaps, unless the list was refused OVERLOADED or RATE_LIMITED:
// then the next period asks again. Answering a refusal with a sync of every
// conversation multiplied the load on a saturated das by the conversations
// per client (broadcast-100k: 2.1M OVERLOADED refusals in 110 s at 50,000
// users, where one list per period is all the safety net needs).
func (c *Client) onConvListFailed(env Env, code wire.ErrorCode) {
	if c.refused(code) {
		return
	}
	if c.online {
		c.syncAll(env)
	}
}

// refused counts a SYNC or CONV_LIST the server refused for load, and says
// whether code is such a refusal.
func (c *Client) refused(code wire.ErrorCode) bool {
	if code == wire.ErrorCode_OVERLOADED || code == wire.ErrorCode_RATE_LIMITED {
		c.stats.Refused++
		return true
	}
	return false
}
