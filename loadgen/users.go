package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/wire"
)

// Client bounds the generator sets (smaller than an app's: thousands of
// clients share one process).
const (
	clientMailboxMax = 256
	clientReadBuffer = 1024
	clientBackoffMax = time.Second
	clientHeldMax    = 1024 // messages held per conversation (verify mode); older are forgotten
	// clientHeldMaxLoad: without verify nothing reads what a client holds
	// (the final lines are only recorded for the checkers): a few per
	// conversation keep the live heap, and so the collector's work and its
	// pauses of the scheduler, small however long the run.
	clientHeldMaxLoad = 16
	tokenLifetime     = 48 * time.Hour
	dialTimeout       = 3 * time.Second
	churnOfflineFloor = 100 * time.Millisecond
)

// errOffline is the dial error of a user the churn took offline.
var errOffline = errors.New("loadgen: user offline (churn)")

// user is one simulated app user with one client.
type user struct {
	idx      int
	name     string
	longPoll bool
	convs    []string
	runner   *clientrun.Runner
	// offlineUntil (ns on the run's clock): dials fail until then (churn).
	offlineUntil atomic.Int64
	// log: u's sends awaiting an ack or a delivery, with their times.
	log sendLog

	// Writes of SEND frames during a send action (guarded by the client's
	// runner, which serializes the action and its writes): the new send's
	// entry is made once, with its intended and written times.
	sending bool
	wrote   []wroteNote
	wroteID []byte // the notes' ids, end to end
}

// wroteNote: a SEND went on the wire at at; its id is wroteID[from:to].
type wroteNote struct {
	from, to int
	at       int64
}

// conversation is a buyer/seller pair about one listing.
type conversation struct {
	id            string
	buyer, seller int
}

// population builds users and conversations: conversation k's buyer is
// user k mod U, its seller another user drawn from rnd.
func population(prefix string, users, convs int, lpShare float64, haveTCP, haveHTTP bool, rnd *rand.Rand) ([]*user, []conversation) {
	us := make([]*user, users)
	for i := range us {
		lp := !haveTCP || (haveHTTP && rnd.Float64() < lpShare)
		us[i] = &user{idx: i, name: prefix + "u" + strconv.Itoa(i), longPoll: lp}
	}
	cs := make([]conversation, 0, convs)
	for k := 0; k < convs && users >= 2; k++ {
		b := k % users
		s := rnd.IntN(users - 1)
		if s >= b {
			s++
		}
		id := wire.PairConvID(us[b].name, us[s].name, "l"+strconv.Itoa(k))
		cs = append(cs, conversation{id: id, buyer: b, seller: s})
		us[b].convs = append(us[b].convs, id)
		us[s].convs = append(us[s].convs, id)
	}
	return us, cs
}

// startUser starts u's client: its callbacks measure latency through the
// tracker and metrics; its dialer honours churn and source addresses.
func (g *gen) startUser(u *user) {
	held := clientHeldMaxLoad
	if g.cfg.Verify {
		held = clientHeldMax
	}
	cfg := client.Config{
		User: u.name, Device: g.device, Token: wire.SignToken(g.cfg.Secret, u.name, g.clock.Now().Add(tokenLifetime)),
		Entries: g.cfg.TCP, HTTP: g.cfg.HTTP, ClientNum: u.idx + 1 + g.cfg.ClientNumBase,
		BackoffMax: clientBackoffMax, HeldMax: held, InflightMax: g.prof.Workload.InflightMax,
		OnDeliver: g.onDeliver,
		OnSendDone: func(env client.Env, id string, seq uint64, code string) {
			g.onSendDone(u, env, id, seq, code)
		},
	}
	if u.longPoll {
		cfg.Transport = client.LongPoll
	}
	opts := clientrun.Options{
		Clock: g.clock, Recorder: g.rec, Logger: g.cfg.Logger, MailboxMax: clientMailboxMax,
		ReadBuffer: clientReadBuffer, Online: &g.online, Dial: g.dialer(u),
		OnWrite: func(f wire.Frame) { g.noteWrite(u, sendIDOfFrame(f)) },
		OnHTTP:  func(method, path string, body []byte) { g.noteWrite(u, sendIDOfHTTP(method, path, body)) },
	}
	u.runner = clientrun.Start(cfg, opts)
}

// dialer spreads users over the source addresses and refuses dials while
// the user is offline.
func (g *gen) dialer(u *user) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: dialTimeout}
	if n := len(g.cfg.SourceAddrs); n > 0 {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(g.cfg.SourceAddrs[u.idx%n], 0))
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if g.clock.Now().UnixNano() < u.offlineUntil.Load() {
			return nil, errOffline
		}
		return d.DialContext(ctx, network, addr)
	}
}

// noteWrite: a SEND of u's went on the wire now (first write or resend).
// During a send action the note waits for the action's end.
func (g *gen) noteWrite(u *user, id []byte) {
	if len(id) == 0 {
		return
	}
	now := nanos(g.clock.Now())
	if u.sending {
		from := len(u.wroteID)
		u.wroteID = append(u.wroteID, id...)
		u.wrote = append(u.wrote, wroteNote{from: from, to: len(u.wroteID), at: now})
		return
	}
	g.wrote(u, id, now)
}

func (g *gen) wrote(u *user, id []byte, at int64) {
	if !u.log.wrote(id, at) {
		g.m.Untracked.Add(1)
	}
}

// sendAct is a scheduled send, run on the sender's goroutine. The
// scheduler takes one from sendActs and posts it; it goes back once run
// (or refused). Dispatching a send allocates nothing, so the scheduler is
// not drafted into assisting the collector (a trace showed it held up
// there).
type sendAct struct {
	g        *gen
	u        *user
	conv     string
	intended int64
}

var sendActs = sync.Pool{New: func() any { return new(sendAct) }}

// postSend hands a send of u's in conv, intended at intended, to u's
// client; false when its mailbox is full.
func (g *gen) postSend(u *user, conv string, intended int64) bool {
	a := sendActs.Get().(*sendAct)
	*a = sendAct{g: g, u: u, conv: conv, intended: intended}
	if u.runner.PostAction(a) {
		return true
	}
	*a = sendAct{}
	sendActs.Put(a)
	return false
}

// Run sends: what a scheduled send does on the sender's goroutine.
func (a *sendAct) Run(c *client.Client, env client.Env) {
	g, u, conv, intended := a.g, a.u, a.conv, a.intended
	*a = sendAct{}
	sendActs.Put(a)
	g.send(c, env, u, conv, intended)
}

// send is a scheduled send of u's in conv, on u's goroutine: the send's
// entry in u's log gets its intended time and, when it went on the wire
// at once, its written time.
func (g *gen) send(c *client.Client, env client.Env, u *user, conv string, intended int64) {
	defer g.ran.Add(1)
	u.sending = true
	id, err := c.Send(env, conv, makeBody(intended, g.prof.Workload.BodySize))
	u.sending = false
	// The sends written meanwhile: this one (if its window was open),
	// and earlier ones it let through.
	var written int64
	for _, n := range u.wrote {
		if wid := u.wroteID[n.from:n.to]; err == nil && string(wid) == id {
			written = n.at
		} else {
			g.wrote(u, wid, n.at)
		}
	}
	u.wrote, u.wroteID = u.wrote[:0], u.wroteID[:0]
	if err != nil {
		g.m.error(env.Now(), sendErrKind(err))
		return
	}
	g.m.Accepted.Add(1)
	ok, deliveredAt := u.log.add(id, intended, written)
	if !ok {
		g.m.Untracked.Add(1)
	}
	if deliveredAt != 0 && written != 0 {
		g.m.deliverRaw(time.Duration(max(deliveredAt-written, 0)))
	}
}

func sendErrKind(err error) string {
	switch {
	case errors.Is(err, client.ErrPendingFull):
		return "pending_full"
	case errors.Is(err, client.ErrStopped):
		return "client_stopped"
	case errors.Is(err, client.ErrConvsFull):
		return "convs_full"
	case errors.Is(err, client.ErrTooLarge):
		return "too_large"
	}
	return "send_" + err.Error()
}

// onSendDone: a send of u's had its definite outcome, on u's goroutine.
func (g *gen) onSendDone(u *user, env client.Env, id string, seq uint64, code string) {
	now := env.Now()
	if code != "" {
		g.m.Failed.Add(1)
		g.m.error(now, code)
		u.log.fail(id, nanos(now))
		return
	}
	intended, raw := time.Duration(-1), time.Duration(-1)
	at, written := u.log.ack(id, nanos(now))
	if at > 0 {
		intended = time.Duration(nanos(now) - at)
	}
	if written > 0 {
		raw = time.Duration(nanos(now) - written)
	}
	if intended < 0 {
		intended = raw // intended unknown only if untracked; fall back
	}
	g.m.ack(now, max(intended, 0), raw)
}

// onDeliver: a message reached the receiving application.
func (g *gen) onDeliver(env client.Env, m *wire.ChatMessage, _ string) {
	intended, ok := parseBody(m.Body)
	if !ok || intended < g.startNs.Load() {
		return // not this run's message
	}
	now := env.Now()
	raw := time.Duration(-1)
	if from := g.byName[m.SenderId]; from != nil {
		if written := from.log.deliver(m.ClientMsgId, nanos(now)); written > 0 {
			raw = time.Duration(nanos(now) - written)
		}
	}
	g.m.deliver(now, max(time.Duration(nanos(now)-intended), 0), raw)
}

// churn takes a random TCP user offline for an exponential time of mean
// offline: its connection drops and its dials fail meanwhile.
func (g *gen) churn(rnd *rand.Rand, offline time.Duration) {
	if len(g.tcpUsers) == 0 {
		return
	}
	u := g.tcpUsers[rnd.IntN(len(g.tcpUsers))]
	d := max(time.Duration(rnd.ExpFloat64()*float64(offline)), churnOfflineFloor)
	u.offlineUntil.Store(nanos(g.clock.Now().Add(d)))
	g.churns.Add(1)
	if !u.runner.Post(func(_ *client.Client, env client.Env) { env.Hangup() }) {
		g.m.Dropped.Add(1)
	}
}

// reconnectStorm drops the connections of share of the TCP users at once.
func (g *gen) reconnectStorm(rnd *rand.Rand, share float64) {
	n := 0
	for _, u := range g.tcpUsers {
		if rnd.Float64() >= share {
			continue
		}
		n++
		if !u.runner.Post(func(_ *client.Client, env client.Env) { env.Hangup() }) {
			g.m.Dropped.Add(1)
		}
	}
	g.logf("reconnect storm: %d connections dropped", n)
}

func (g *gen) logf(format string, args ...any) {
	if g.cfg.Logger != nil {
		g.cfg.Logger.Info(fmt.Sprintf(format, args...))
	}
}
