package sim

import (
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Workload actions (event.a of evWorkload).
const (
	actStart       uint64 = iota + 1 // start client target
	actSend                          // the next chat message arrives
	actChurn                         // a client goes offline
	actStorm                         // login storm b
	actNotice                        // a platform notice
	actBroadcast                     // a platform broadcast
	actRetry                         // retry platform request b
	actBroadcastAt                   // the platform broadcast at BroadcastAt[b]
	actFinal                         // client target does its final sync
)

// platformRetryMax bounds the retries of one platform API call; past it
// the notice is counted as lost by the platform (not by zzim).
const platformRetryMax = 5

// startSpread bounds how long client start-up is spread over, for up to
// startRate clients; more clients take longer, at startRate logins per
// second: a fleet of 100,000 apps does not connect within one second (and
// when it does, that is the login-storm scenario, not the start of a run).
const (
	startSpread = time.Second
	startRate   = 5000
)

// startSpreadFor is how long n clients take to start.
func startSpreadFor(n int) time.Duration {
	return max(startSpread, time.Duration(n)*time.Second/startRate)
}

type convRef struct {
	id            string
	buyer, seller int
}

// workload drives users, clients and the platform service. Every draw
// comes from the workload stream, and every workload event is scheduled
// only by workload events, so faults never shift the workload.
type workload struct {
	s           *sim
	users       []string
	convs       []convRef
	userClients [][]int32
	// activeUser and activeConv: Workload.KeepUsers and KeepConvs applied.
	activeUser []bool
	activeConv []bool
	msgs       uint64
	platform   map[uint64]*platformCall
	notices    bool // the system and broadcast conversations have traffic
}

type platformCall struct {
	path    string
	body    []byte
	attempt int
}

func newWorkload(s *sim) (*workload, error) {
	w := &workload{s: s, platform: map[uint64]*platformCall{}}
	cfg := &s.cfg.Workload
	for i := 0; i < cfg.Users; i++ {
		w.users = append(w.users, "u"+strconv.Itoa(i))
	}
	w.makeConvs()
	w.applyKeep()
	if err := w.makeClients(); err != nil {
		return nil, err
	}
	w.notices = cfg.NoticeRate > 0 || cfg.BroadcastRate > 0 || len(cfg.BroadcastAt) > 0
	w.next(actSend, cfg.Rate)
	if cfg.ChurnRate > 0 && len(s.clients) > 0 {
		w.next(actChurn, cfg.ChurnRate*float64(len(s.clients)))
	}
	w.next(actNotice, cfg.NoticeRate)
	w.next(actBroadcast, cfg.BroadcastRate)
	for i, st := range cfg.LoginStorms {
		s.schedule(int64(st.At), event{kind: evWorkload, a: actStorm, b: uint64(i)})
	}
	for i, at := range cfg.BroadcastAt {
		s.schedule(int64(at), event{kind: evWorkload, a: actBroadcastAt, b: uint64(i)})
	}
	return w, nil
}

// makeConvs: each user is buyer in ConvsPerUser conversations with random sellers.
func (w *workload) makeConvs() {
	n := len(w.users)
	if n < 2 {
		return
	}
	seen := map[string]bool{}
	for b := 0; b < n; b++ {
		for k := 0; k < w.s.cfg.Workload.ConvsPerUser; k++ {
			sl := w.s.wl.IntN(n - 1)
			if sl >= b {
				sl++
			}
			id := wire.PairConvID(w.users[b], w.users[sl], "l"+strconv.Itoa(b)+"x"+strconv.Itoa(k))
			if !seen[id] {
				seen[id] = true
				w.convs = append(w.convs, convRef{id: id, buyer: b, seller: sl})
			}
		}
	}
}

// applyKeep marks the active users and conversations (Workload.KeepUsers,
// KeepConvs); indices out of range are ignored.
func (w *workload) applyKeep() {
	cfg := &w.s.cfg.Workload
	w.activeUser = keepMask(len(w.users), cfg.KeepUsers)
	keepConv := keepMask(len(w.convs), cfg.KeepConvs)
	w.activeConv = make([]bool, len(w.convs))
	for i, c := range w.convs {
		w.activeConv[i] = keepConv[i] && w.activeUser[c.buyer] && w.activeUser[c.seller]
	}
}

// keepMask: every index when keep is empty, else the ones listed.
func keepMask(n int, keep []int) []bool {
	m := make([]bool, n)
	for i := range m {
		m[i] = len(keep) == 0
	}
	for _, k := range keep {
		if k >= 0 && k < n {
			m[k] = true
		}
	}
	return m
}

func (w *workload) makeClients() error {
	s := w.s
	cfg := &s.cfg.Workload
	var entries, https []string
	for _, in := range s.instances {
		switch in.addr.Role {
		case node.RoleEntry:
			entries = append(entries, in.addr.String())
		case node.RoleHTTPEntry:
			https = append(https, in.addr.String())
		}
	}
	if len(w.users) > 0 && len(entries) == 0 && len(https) == 0 {
		return errNoFrontEnd
	}
	userConvs := make([][]string, len(w.users))
	for i, c := range w.convs {
		if w.activeConv[i] {
			userConvs[c.buyer] = append(userConvs[c.buyer], c.id)
			userConvs[c.seller] = append(userConvs[c.seller], c.id)
		}
	}
	w.userClients = make([][]int32, len(w.users))
	expiry := epoch.Add(365 * 24 * time.Hour)
	spread := startSpreadFor(len(w.users) * cfg.ClientsPerUser)
	for u, user := range w.users {
		for d := 0; d < cfg.ClientsPerUser; d++ {
			idx := int32(len(s.clients))
			longPoll := len(entries) == 0 || (len(https) > 0 && coin(s.wl, cfg.LongPollShare))
			cc := client.Config{User: user, Device: "d" + strconv.Itoa(d),
				Token: wire.SignToken(s.cfg.Secret, user, expiry), Entries: entries,
				ClientNum: int(idx) + 1, Bugs: s.cfg.Bugs}
			sc := &simClient{idx: idx, user: user, longPoll: longPoll, convs: userConvs[u], inactive: !w.activeUser[u]}
			if longPoll {
				cc.Transport = client.LongPoll
				sc.http = https[int(idx)%len(https)]
				cc.HTTP = sc.http
			}
			sc.drv = s.services.Client(cc)
			sc.env = &clientEnv{s: s, c: sc, rnd: newStream(s.cfg.Seed, "client/"+strconv.Itoa(int(idx)))}
			s.clients = append(s.clients, sc)
			w.userClients[u] = append(w.userClients[u], idx)
			at := s.wl.Int64N(int64(min(spread, s.cfg.Duration/4)) + 1)
			if !sc.inactive {
				s.schedule(at, event{kind: evWorkload, a: actStart, target: idx})
			}
		}
	}
	return nil
}

// next schedules the next arrival of a Poisson process of rate per second.
func (w *workload) next(act uint64, rate float64) {
	if rate <= 0 {
		return
	}
	if act == actSend {
		rate *= w.spikeFactor(w.s.now)
	}
	gap := int64(w.s.wl.ExpFloat64() / rate * float64(time.Second))
	at := w.s.now + gap
	if at >= int64(w.s.cfg.Duration) {
		return
	}
	w.s.schedule(at, event{kind: evWorkload, a: act})
}

func (w *workload) spikeFactor(at int64) float64 {
	f := 1.0
	for _, sp := range w.s.cfg.Workload.Spikes {
		if at >= int64(sp.At) && at < int64(sp.At+sp.For) && sp.Factor > 0 {
			f *= sp.Factor
		}
	}
	return f
}

func (w *workload) act(e *event) {
	s := w.s
	cfg := &s.cfg.Workload
	switch e.a {
	case actStart:
		c := s.clients[e.target]
		c.drv.Start(c.env)
	case actSend:
		if s.phase != phaseTraffic {
			return
		}
		w.send()
		w.next(actSend, cfg.Rate)
	case actChurn:
		if s.phase != phaseTraffic {
			return
		}
		c := s.clients[s.wl.IntN(len(s.clients))]
		until := s.now + expDuration(s.wl, cfg.OfflineMean)
		if !c.inactive {
			w.goOffline(c, until)
		}
		w.next(actChurn, cfg.ChurnRate*float64(len(s.clients)))
	case actStorm:
		share := cfg.LoginStorms[e.b].Share
		for _, c := range s.clients {
			if coin(s.wl, share) && !c.inactive {
				w.goOffline(c, s.now)
				s.obs.stormReconnects++
			}
		}
		s.obs.loginStorms++
	case actNotice:
		if s.phase != phaseTraffic {
			return
		}
		w.notice()
		w.next(actNotice, cfg.NoticeRate)
	case actBroadcast:
		if s.phase != phaseTraffic {
			return
		}
		w.broadcast()
		w.next(actBroadcast, cfg.BroadcastRate)
	case actBroadcastAt:
		if s.phase != phaseTraffic {
			return
		}
		w.broadcast()
	case actFinal:
		w.finalSync(s.clients[e.target])
	case actRetry:
		if call := w.platform[e.b]; call != nil {
			delete(w.platform, e.b)
			w.platformCall(call)
		}
	}
}

// send makes one participant of a random conversation send a message.
func (w *workload) send() {
	s := w.s
	if len(w.convs) == 0 {
		return
	}
	ci := s.wl.IntN(len(w.convs))
	cv := w.convs[ci]
	u := cv.buyer
	if s.wl.IntN(2) == 1 {
		u = cv.seller
	}
	cs := w.userClients[u]
	c := s.clients[cs[s.wl.IntN(len(cs))]]
	w.msgs++
	if !w.activeConv[ci] {
		return // removed: the draws above are made all the same
	}
	body := "m" + strconv.FormatUint(w.msgs, 10)
	if pad := s.cfg.Workload.BodySize - len(body); pad > 0 {
		body += strings.Repeat(".", pad)
	}
	if _, err := c.drv.Send(c.env, cv.id, body); err != nil {
		s.obs.sendsRefused++
		return
	}
	s.obs.sends++
}

// goOffline drops a client's network until until: its connection breaks
// and its dials and HTTP requests fail meanwhile.
func (w *workload) goOffline(c *simClient, until int64) {
	s := w.s
	c.offlineUntil = max(c.offlineUntil, until)
	s.obs.churns++
	if c.conn != nil {
		s.dropConn(c.conn, true, "client offline")
		s.schedule(s.now, event{kind: evClient, target: c.idx, inc: c.gen, p: client.Disconnected{Reason: "network lost"}})
	}
}

func (w *workload) notice() {
	s := w.s
	if len(w.users) == 0 {
		return
	}
	w.msgs++
	u := s.wl.IntN(len(w.users))
	if !w.activeUser[u] {
		return
	}
	n := &wire.PlatformNotice{NoticeId: "n" + strconv.FormatUint(w.msgs, 10),
		UserId: w.users[u], Kind: "order", Body: "notice " + strconv.FormatUint(w.msgs, 10)}
	w.platformSend("/v1/platform/notice", mq.PlatformNotice, n.NoticeId, n)
}

func (w *workload) broadcast() {
	w.msgs++
	b := &wire.PlatformBroadcast{BroadcastId: "b" + strconv.FormatUint(w.msgs, 10), Kind: "activity",
		Body: "broadcast " + strconv.FormatUint(w.msgs, 10)}
	w.platformSend("/v1/platform/broadcast", mq.PlatformBroadcast, b.BroadcastId, b)
}

// platformSend publishes through httpentry's platform API, or straight
// onto the queue when there is no httpentry.
func (w *workload) platformSend(path, subject, id string, m node.Message) {
	s := w.s
	body, err := wire.MarshalJSON(m) // deterministic bytes: trace hashes stay the same across builds
	if err != nil {
		panic("sim: platform message does not marshal: " + err.Error())
	}
	if s.cfg.Topology[node.RoleHTTPEntry] == 0 {
		data, err := protoMarshal(m)
		if err != nil {
			panic("sim: platform message does not marshal: " + err.Error())
		}
		if s.queue.append(subject, data, id) != nil {
			s.obs.platformFailed++
		} else {
			s.obs.platformAccepted++
		}
		return
	}
	w.platformCall(&platformCall{path: path, body: body})
}

func (w *workload) platformCall(call *platformCall) {
	s := w.s
	call.attempt++
	req := s.id()
	w.platform[req] = call
	https := s.cfg.Topology[node.RoleHTTPEntry]
	addr := node.Addr{Role: node.RoleHTTPEntry, Slot: int(req % uint64(https))}.String()
	s.httpRequest(-1, client.ReqID(req), "POST", call.path, map[string]string{"X-Platform-Key": s.cfg.PlatformKey},
		call.body, s.cfg.Deps.HTTPTimeout, addr)
}

// platformReply: 202 accepted; anything else is retried with the same
// idempotency key (the queue dedups it) up to platformRetryMax.
func (w *workload) platformReply(e *event) {
	s := w.s
	call := w.platform[e.a]
	if call == nil {
		return
	}
	if e.b == 202 || e.b == 200 {
		delete(w.platform, e.a)
		s.obs.platformAccepted++
		return
	}
	if call.attempt >= platformRetryMax {
		delete(w.platform, e.a)
		s.obs.platformFailed++
		return
	}
	s.obs.platformRetries++
	s.schedule(s.now+int64(time.Second), event{kind: evWorkload, a: actRetry, b: e.a})
}

// quiet: no new traffic; every client's network comes back.
func (w *workload) quiet() {
	for _, c := range w.s.clients {
		c.offlineUntil = 0
	}
}

// final asks every client to sync every conversation it takes part in.
//
// The clients start their final syncs spread over finalSpreadFor. All at
// one instant, broadcast-100k's 100,000 clients asked for 400,000 syncs at
// once; logic refused most of them OVERLOADED and the retries were over
// half the run's events (a harness artefact: apps do not act in lockstep;
// login-storm is the scenario for a herd).
func (w *workload) final() {
	s := w.s
	active := 0
	for _, c := range s.clients {
		if !c.inactive {
			active++
		}
	}
	spread := int64(finalSpreadFor(active, s.cfg.Quiet-s.cfg.Settle))
	for _, c := range s.clients {
		if c.inactive {
			continue
		}
		s.schedule(s.now+s.wl.Int64N(spread+1), event{kind: evWorkload, a: actFinal, target: c.idx})
	}
}

// finalSpreadFor spreads n clients' final syncs at startRate clients per
// second, over at most a third of what is left of the quiet period
// (left), so the syncs and their retries end before the run does.
func finalSpreadFor(n int, left time.Duration) time.Duration {
	return min(time.Duration(n)*time.Second/startRate, left/3)
}

// finalSync: client c syncs every conversation it takes part in.
func (w *workload) finalSync(c *simClient) {
	if c.inactive {
		return
	}
	for _, conv := range c.convs {
		_ = c.drv.Sync(c.env, conv)
	}
	if w.notices {
		_ = c.drv.Sync(c.env, wire.SystemConvID(c.user))
		_ = c.drv.Sync(c.env, wire.BroadcastConvID)
	}
}

// finish ends every client: each records what it holds.
func (w *workload) finish() {
	for _, c := range w.s.clients {
		if c.inactive {
			continue
		}
		c.drv.Finish(c.env)
	}
}
