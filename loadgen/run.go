package loadgen

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
)

// Run bounds.
const (
	ConnectTimeoutDefault = 30 * time.Second
	DrainDefault          = 5 * time.Second
	// settleQuiet: after the final syncs, deliveries must stay unchanged
	// this long before clients finish (verify mode).
	settleQuiet = 500 * time.Millisecond
	settleMin   = time.Second
	settleMax   = 10 * time.Second
	pollEvery   = 50 * time.Millisecond
	// finishTimeout bounds waiting for one client to finish.
	finishTimeout = 5 * time.Second
)

// Config of a run.
type Config struct {
	// TCP entry addresses; HTTP is httpentry's base URL (or host:port).
	// At least one is needed; users take long-poll with the profile's
	// long_poll_share when both are given.
	TCP  []string
	HTTP string
	// Secret signs the users' login tokens (the cluster's secret).
	Secret  []byte
	Profile *Profile
	// Verify records histories and runs the checkers after the drain.
	Verify bool
	// UserPrefix names users (<prefix>u<i>); generator processes sharing
	// one cluster use different prefixes.
	UserPrefix string
	// ClientNumBase offsets history client numbers.
	ClientNumBase int
	// SourceAddrs spread client connections over local addresses (user i
	// dials from SourceAddrs[i mod n]), past the ephemeral port limit.
	SourceAddrs []netip.Addr
	// Seed draws conversations, senders and churn; 0 picks one.
	Seed uint64
	// Progress receives a line per second (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
	// ConnectTimeout bounds waiting for the users' first logins.
	ConnectTimeout time.Duration
	// OnSecond, if set, sees each closed second (the Prometheus endpoint).
	OnSecond func(Row)
	// OnStart, if set, is called when traffic starts (tests pause servers).
	OnStart func(start time.Time)
}

// Result of a run.
type Result struct {
	Summary *Summary
	Metrics *Metrics
	// Verdict and History are set in verify mode.
	Verdict *check.Verdict
	History []check.Op
}

// gen is one run in progress.
type gen struct {
	cfg   Config
	prof  *Profile
	clock *clientrun.Clock
	rec   *clientrun.Recorder
	m     *Metrics
	// byName finds a message's sender (its send log) by user name; set
	// before any client starts, read-only after.
	byName map[string]*user
	// tracked counts the sends kept in send logs (at most trackedMax);
	// seed hashes their ids.
	tracked atomic.Int64
	seed    maphash.Seed
	// posted: send actions handed to a client; ran: those that ran (the
	// client accepted the send or refused it). The drain waits for both.
	posted, ran atomic.Int64

	users    []*user
	tcpUsers []*user
	convs    []conversation
	stormMu  sync.Mutex
	storm    []*user
	online   atomic.Int64
	churns   atomic.Int64
	// startNs: traffic start; messages meant before it (an earlier run's,
	// synced at login) are not this run's deliveries.
	startNs atomic.Int64
	// device is every user's device id in this run (runDevice).
	device string
}

// runDevice names this run's device: "load-" and 8 random hex digits.
// Logic keeps per-sender FIFO state per (user, device) and a client's
// cseq counts from 1 over its whole life, and message ids are
// <user>-<device>-<cseq>: a run that reused an earlier run's device on
// the same cluster (same user names) restarted cseq on sessions that had
// those cseqs done, so its sends were taken for resends (appended out of
// order) and deduplicated against the earlier run's messages. A device
// of its own makes each run a new client life.
func runDevice() string {
	var b [4]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand)
	return "load-" + hex.EncodeToString(b[:])
}

func (c *Config) validate() error {
	if len(c.TCP) == 0 && c.HTTP == "" {
		return errors.New("loadgen: no --tcp and no --http address")
	}
	if len(c.Secret) == 0 {
		return errors.New("loadgen: no token secret")
	}
	if c.Profile == nil {
		return errors.New("loadgen: no profile")
	}
	return c.Profile.Validate()
}

// Run drives the profile against the cluster and measures it. The error
// is for setup failures; broken thresholds and violations are in the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.HTTP != "" && !strings.Contains(cfg.HTTP, "://") {
		cfg.HTTP = "http://" + cfg.HTTP
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = ConnectTimeoutDefault
	}
	p := cfg.Profile
	w := &p.Workload
	g := &gen{cfg: cfg, prof: p, clock: clientrun.NewClock(), device: runDevice()}
	if cfg.Verify {
		g.rec = &clientrun.Recorder{}
	}
	rnd := rand.New(rand.NewPCG(cfg.Seed, 1))
	g.users, g.convs = population(cfg.UserPrefix, w.Users, w.Conversations, w.LongPollShare, len(cfg.TCP) > 0, cfg.HTTP != "", rnd)
	g.byName = make(map[string]*user, len(g.users))
	g.seed = maphash.MakeSeed()
	for _, u := range g.users {
		u.log.init(&g.tracked, g.seed)
		g.byName[u.name] = u
		if !u.longPoll {
			g.tcpUsers = append(g.tcpUsers, u)
		}
	}
	var replay []replayEvent
	if w.Replay != nil {
		var err error
		if replay, err = loadReplay(w.Replay, len(g.convs)); err != nil {
			return nil, err
		}
	}
	drain := p.Drain.D()
	if drain <= 0 {
		drain = DrainDefault
	}
	connectStart := g.clock.Now()
	secs := int(math.Ceil((p.Duration.D() + drain + settleMax + 2*finishTimeout).Seconds())) + 1
	g.m = NewMetrics(connectStart, secs, &g.online)
	g.startNs.Store(math.MaxInt64)
	connected := g.connect(ctx)
	connectTime := g.clock.Now().Sub(connectStart)

	start := g.clock.Now()
	g.m.setStart(start)
	g.startNs.Store(start.UnixNano())
	if cfg.OnStart != nil {
		cfg.OnStart(start)
	}
	ticks := g.startTicker(start)

	sch := &scheduler{now: g.clock.Now, start: start, end: p.Duration.D()}
	g.addSources(sch, rnd, replay)
	sch.run(ctx)

	drained := g.drain(ctx, drain)
	res := &Result{Metrics: g.m}
	if cfg.Verify {
		g.settle(ctx)
	}
	g.finish()
	ticks.stop()
	if unacked := g.m.Accepted.Load() - g.m.Acked.Load() - g.m.Failed.Load(); unacked > 0 {
		g.m.errorN(g.clock.Now(), "unacked_at_end", unacked)
	}
	res.Summary = g.summary(connected, connectTime, drained)
	if cfg.Verify {
		res.History = g.rec.Ops()
		v, err := check.Check(&check.History{Ops: res.History}, check.Options{})
		if err != nil {
			return res, fmt.Errorf("verify: %w", err)
		}
		res.Verdict = v
		res.Summary.Verify = &VerifySummary{Pass: v.Pass, Word: v.Word(), Line: v.Line()}
	}
	return res, nil
}

// connect starts every user, spread over start_over, and waits (bounded)
// for their sessions. It returns how many were online.
func (g *gen) connect(ctx context.Context) int {
	n := len(g.users)
	spread := g.prof.Workload.StartOver.D()
	t0 := time.Now()
	for i, u := range g.users {
		if spread > 0 {
			if d := time.Until(t0.Add(spread * time.Duration(i) / time.Duration(n))); d > 0 {
				time.Sleep(d)
			}
		}
		if ctx.Err() != nil {
			break
		}
		g.startUser(u)
	}
	deadline := time.Now().Add(g.cfg.ConnectTimeout)
	for g.online.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(pollEvery)
	}
	on := int(g.online.Load())
	if on < n {
		g.logf("connect: %d of %d users online after %s; starting anyway", on, n, g.cfg.ConnectTimeout)
	}
	return on
}

// addSources: sends (rate shape or replay), churn, storms.
func (g *gen) addSources(sch *scheduler, rnd *rand.Rand, replay []replayEvent) {
	w := &g.prof.Workload
	sendTo := func(intended time.Time, k int, seller bool) {
		cv := g.convs[k]
		u := g.users[cv.buyer]
		if seller {
			u = g.users[cv.seller]
		}
		g.m.offer(intended, g.clock.Now().Sub(intended))
		if g.postSend(u, cv.id, nanos(intended)) {
			g.posted.Add(1)
		} else {
			g.m.Dropped.Add(1)
			g.m.error(intended, "dropped")
		}
	}
	if replay != nil {
		i := 0
		sch.add(&source{name: "replay", pop: func() (time.Duration, bool) {
			if i >= len(replay) {
				return 0, false
			}
			i++
			return replay[i-1].at, true
		}, fire: func(intended time.Time, _ time.Duration) {
			ev := replay[i-1]
			sendTo(intended, ev.conv, ev.seller)
		}})
	} else if len(g.convs) > 0 {
		arr := newArrivals(w, g.prof.Duration.D(), rand.New(rand.NewPCG(g.cfg.Seed, 2)))
		sch.add(&source{name: "sends", pop: arr.pop, fire: func(intended time.Time, _ time.Duration) {
			sendTo(intended, rnd.IntN(len(g.convs)), rnd.IntN(2) == 1)
		}})
	}
	if c := w.Churn; c != nil && c.Rate > 0 {
		crnd := rand.New(rand.NewPCG(g.cfg.Seed, 3))
		var at time.Duration
		offline := c.Offline.D()
		if offline <= 0 {
			offline = 2 * time.Second
		}
		sch.add(&source{name: "churn", pop: func() (time.Duration, bool) {
			at += max(time.Duration(crnd.ExpFloat64()/c.Rate*float64(time.Second)), 1)
			return at, true
		}, fire: func(time.Time, time.Duration) { g.churn(crnd, offline) }})
	}
	if s := w.LoginStorm; s != nil {
		sch.add(once("login_storm", s.At.D(), func(time.Time, time.Duration) { go g.loginStorm(s.Clients) }))
	}
	if s := w.ReconnectStorm; s != nil {
		srnd := rand.New(rand.NewPCG(g.cfg.Seed, 4))
		sch.add(once("reconnect_storm", s.At.D(), func(time.Time, time.Duration) { g.reconnectStorm(srnd, s.Share) }))
	}
}

// loginStorm starts n idle users at once (mass login).
func (g *gen) loginStorm(n int) {
	base := len(g.users)
	us := make([]*user, n)
	for i := range us {
		lp := len(g.cfg.TCP) == 0
		us[i] = &user{idx: base + i, name: g.cfg.UserPrefix + "storm" + strconv.Itoa(i), longPoll: lp}
		us[i].log.init(&g.tracked, g.seed) // storm users are idle; their sends would be kept as any
		g.startUser(us[i])
	}
	g.stormMu.Lock()
	g.storm = us
	g.stormMu.Unlock()
	g.logf("login storm: %d users started", n)
}

func (g *gen) allUsers() []*user {
	g.stormMu.Lock()
	defer g.stormMu.Unlock()
	return append(append([]*user(nil), g.users...), g.storm...)
}

// drain waits until every send handed to a client ran and every accepted
// one has an outcome, at most d. Churn ends first: offline users may dial
// again.
func (g *gen) drain(ctx context.Context, d time.Duration) bool {
	for _, u := range g.allUsers() {
		u.offlineUntil.Store(0)
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		// ran is read first: a send counted in it was accepted already.
		if g.ran.Load() == g.posted.Load() && g.m.Accepted.Load() == g.m.Acked.Load()+g.m.Failed.Load() &&
			(!g.cfg.Verify || g.online.Load() >= int64(len(g.allUsers()))) {
			return true
		}
		time.Sleep(pollEvery)
	}
	return false
}

// settle (verify mode): every client syncs each of its conversations, then
// deliveries must go quiet, so the final lines hold everything acknowledged.
func (g *gen) settle(ctx context.Context) {
	for _, u := range g.allUsers() {
		convs := u.convs
		u.runner.Post(func(c *client.Client, env client.Env) {
			for _, cv := range convs {
				_ = c.Sync(env, cv)
			}
			_ = c.ConvList(env)
		})
	}
	t0 := time.Now()
	last, lastChange := g.m.Delivered.Load(), time.Now()
	for ctx.Err() == nil && time.Since(t0) < settleMax {
		time.Sleep(pollEvery)
		if d := g.m.Delivered.Load(); d != last {
			last, lastChange = d, time.Now()
		}
		if time.Since(t0) >= settleMin && time.Since(lastChange) >= settleQuiet {
			return
		}
	}
}

// finish records what each client holds (verify mode) and stops them all.
func (g *gen) finish() {
	var wg sync.WaitGroup
	for _, u := range g.allUsers() {
		if u.runner == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.cfg.Verify {
				done := make(chan struct{})
				go func() { u.runner.Do(func(c *client.Client, env client.Env) { c.Finish(env) }); close(done) }()
				select {
				case <-done:
				case <-time.After(finishTimeout):
				}
			}
			u.runner.Stop()
		}()
	}
	wg.Wait()
}

// ticker closes one second of metrics per second and prints progress.
type ticker struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func (t *ticker) stop() {
	close(t.done)
	t.wg.Wait()
}

func (g *gen) startTicker(start time.Time) *ticker {
	t := &ticker{done: make(chan struct{})}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for sec := 0; sec < g.m.secs; sec++ {
			timer.Reset(time.Until(start.Add(time.Duration(sec+1) * time.Second)))
			select {
			case <-t.done:
				return
			case <-timer.C:
			}
			row := g.m.tick(sec)
			if g.cfg.Progress != nil {
				fmt.Fprintln(g.cfg.Progress, g.progressLine(row))
			}
			if g.cfg.OnSecond != nil {
				g.cfg.OnSecond(row)
			}
		}
	}()
	return t
}

func (g *gen) progressLine(r Row) string {
	phase := "traffic"
	if time.Duration(r.T)*time.Second >= g.prof.Duration.D() {
		phase = "drain"
	}
	return fmt.Sprintf("t=%3ds %-7s offered=%d/s achieved=%d/s ack p50=%.1fms p99=%.1fms deliver p50=%.1fms p99=%.1fms errors=%d conns=%d lag_p99=%.2fms dropped=%d",
		r.T, phase, r.Offered, r.Achieved, r.AckP50, r.AckP99, r.DeliverP50, r.DeliverP99, g.m.Errors.Load(),
		r.Connections, r.LagP99, g.m.Dropped.Load())
}
