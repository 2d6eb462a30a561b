package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/wire"
)

// Client bounds the generator sets (smaller than an app's: thousands of
// clients share one process).
const (
	clientMailboxMax  = 256
	clientReadBuffer  = 1024
	clientBackoffMax  = time.Second
	clientHeldMax     = 1024 // messages held per conversation; older are forgotten
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
	cfg := client.Config{
		User: u.name, Device: "load", Token: wire.SignToken(g.cfg.Secret, u.name, g.clock.Now().Add(tokenLifetime)),
		Entries: g.cfg.TCP, HTTP: g.cfg.HTTP, ClientNum: u.idx + 1 + g.cfg.ClientNumBase,
		BackoffMax: clientBackoffMax, HeldMax: clientHeldMax, InflightMax: g.prof.Workload.InflightMax,
		OnDeliver:  g.onDeliver,
		OnSendDone: g.onSendDone,
	}
	if u.longPoll {
		cfg.Transport = client.LongPoll
	}
	opts := clientrun.Options{
		Clock: g.clock, Recorder: g.rec, Logger: g.cfg.Logger, MailboxMax: clientMailboxMax,
		ReadBuffer: clientReadBuffer, Online: &g.online, Dial: g.dialer(u),
		OnWrite: func(f wire.Frame) { g.noteWrite(sendIDOfFrame(f)) },
		OnHTTP:  func(method, path string, body []byte) { g.noteWrite(sendIDOfHTTP(method, path, body)) },
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

// noteWrite: a SEND went on the wire now (first write or resend).
func (g *gen) noteWrite(id string) {
	if id == "" {
		return
	}
	now := nanos(g.clock.Now())
	if !g.track.with(id, true, func(s *sent) bool { s.written = now; return false }) {
		g.m.Untracked.Add(1)
	}
}

// sendAction is what a scheduled send does on the sender's goroutine.
func (g *gen) sendAction(conv string, intended int64) func(*client.Client, client.Env) {
	return func(c *client.Client, env client.Env) {
		id, err := c.Send(env, conv, makeBody(intended, g.prof.Workload.BodySize))
		if err != nil {
			g.m.error(env.Now(), sendErrKind(err))
			return
		}
		g.m.Accepted.Add(1)
		g.track.with(id, true, func(s *sent) bool { s.intended = intended; return false })
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

// onSendDone: a send's definite outcome, on the sender's goroutine.
func (g *gen) onSendDone(env client.Env, id string, seq uint64, code string) {
	now := env.Now()
	if code != "" {
		g.m.Failed.Add(1)
		g.m.error(now, code)
		g.track.with(id, false, func(*sent) bool { return true })
		return
	}
	intended, raw := time.Duration(-1), time.Duration(-1)
	g.track.with(id, false, func(s *sent) bool {
		if s.intended > 0 {
			intended = time.Duration(nanos(now) - s.intended)
		}
		if s.written > 0 {
			raw = time.Duration(nanos(now) - s.written)
		}
		s.acked = true
		return s.delivered
	})
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
	g.track.with(m.ClientMsgId, false, func(s *sent) bool {
		if s.written > 0 {
			raw = time.Duration(nanos(now) - s.written)
		}
		s.delivered = true
		return s.acked
	})
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
