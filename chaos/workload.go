package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/natsdeps"
	"github.com/zzim/zzim/system/wire"
)

// platformRetryMax bounds the retries of one platform notice.
const platformRetryMax = 5

// loginWait bounds how long the clients get to log in before traffic.
const loginWait = 30 * time.Second

type convRef struct {
	id            string
	buyer, seller int
}

// workload drives the scenario's users with reference clients on the
// host, like sim/workload.go drives simulated ones: the same users (u0..),
// the same conversation shape (each user buyer in round(conversations /
// users) conversations with random sellers), Poisson sends at the
// scenario's rate with its spikes, platform notices. Churn, login storms
// and broadcasts are not driven (the report notes them).
type workload struct {
	sc      *scenarios.Scenario
	env     *Env
	rnd     *rand.Rand
	clock   *clientrun.Clock
	rec     *clientrun.Recorder
	secret  []byte
	bugs    bugs.Set
	scale   float64
	users   []string
	convs   []convRef
	runners []*clientrun.Runner
	byUser  [][]int // runner indices per user
	userOf  []int   // user index per runner
	convsOf [][]string
	notices bool

	msgs, sends, refused, acked, failed atomic.Int64
	noticesSent, noticesFailed          atomic.Int64

	nats *natsdeps.Deps
	mu   sync.Mutex
}

func newWorkload(sc *scenarios.Scenario, env *Env, seed uint64, secret []byte, set bugs.Set, scale float64) *workload {
	w := &workload{sc: sc, env: env, rnd: rand.New(rand.NewPCG(seed, 0x63686173)), clock: clientrun.NewClock(),
		rec: &clientrun.Recorder{}, secret: secret, bugs: set, scale: scale}
	for i := 0; i < sc.Workload.Users; i++ {
		w.users = append(w.users, "u"+strconv.Itoa(i))
	}
	w.makeConvs()
	w.notices = sc.Workload.Notices != nil && sc.Workload.Notices.Rate > 0
	return w
}

func (w *workload) makeConvs() {
	n := len(w.users)
	if n < 2 {
		return
	}
	per := max(1, int(math.Round(float64(w.sc.Workload.Conversations)/float64(n))))
	seen := map[string]bool{}
	w.convsOf = make([][]string, n)
	for b := 0; b < n; b++ {
		for k := 0; k < per; k++ {
			sl := w.rnd.IntN(n - 1)
			if sl >= b {
				sl++
			}
			id := wire.PairConvID(w.users[b], w.users[sl], "l"+strconv.Itoa(b)+"x"+strconv.Itoa(k))
			if !seen[id] {
				seen[id] = true
				w.convs = append(w.convs, convRef{id: id, buyer: b, seller: sl})
				w.convsOf[b] = append(w.convsOf[b], id)
				w.convsOf[sl] = append(w.convsOf[sl], id)
			}
		}
	}
}

// start runs one client per user and waits until they are online.
func (w *workload) start(ctx context.Context) error {
	expiry := time.Now().Add(24 * time.Hour)
	w.byUser = make([][]int, len(w.users))
	for u, user := range w.users {
		idx := len(w.runners)
		cfg := client.Config{User: user, Device: "d0", Token: wire.SignToken(w.secret, user, expiry),
			Entries: w.env.Entries, ClientNum: idx + 1, Bugs: w.bugs,
			OnSendDone: func(_ client.Env, _ string, _ uint64, code string) {
				if code == "" {
					w.acked.Add(1)
				} else {
					w.failed.Add(1)
				}
			}}
		longPoll := len(w.env.Entries) == 0 || (len(w.env.HTTP) > 0 && w.rnd.Float64() < w.sc.Workload.LongPollShare)
		if longPoll {
			cfg.Transport = client.LongPoll
			cfg.HTTP = w.env.HTTP[idx%len(w.env.HTTP)]
		}
		w.runners = append(w.runners, clientrun.Start(cfg, clientrun.Options{Clock: w.clock, Recorder: w.rec}))
		w.byUser[u] = append(w.byUser[u], idx)
		w.userOf = append(w.userOf, u)
	}
	if w.notices && len(w.env.HTTP) == 0 {
		nd, err := natsdeps.Connect(ctx, w.env.NATSURL, natsdeps.Options{Name: "zzim-chaos-platform"})
		if err != nil {
			return fmt.Errorf("platform publisher: %w", err)
		}
		w.nats = nd
	}
	return waitUntil(ctx, loginWait, func() bool {
		for _, r := range w.runners {
			on := false
			r.Do(func(c *client.Client, _ client.Env) { on = c.Online() })
			if !on {
				return false
			}
		}
		return true
	})
}

// traffic sends until d has passed (or ctx ends): Poisson arrivals at the
// scenario's rate, times its spikes (scaled like the faults).
func (w *workload) traffic(ctx context.Context, t0 time.Time, d time.Duration) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.poisson(ctx, t0, d, w.sc.Workload.Rate, true, w.send)
	}()
	if w.notices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.poisson(ctx, t0, d, w.sc.Workload.Notices.Rate, false, func() { w.notice(ctx) })
		}()
	}
	wg.Wait()
}

func (w *workload) poisson(ctx context.Context, t0 time.Time, d time.Duration, rate float64, spikes bool, act func()) {
	if rate <= 0 {
		return
	}
	next := time.Duration(0)
	for {
		w.mu.Lock()
		gap := w.rnd.ExpFloat64() / (rate * w.spikeFactor(next, spikes))
		w.mu.Unlock()
		next += time.Duration(gap * float64(time.Second))
		if next >= d {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(t0.Add(next))):
		}
		act()
	}
}

func (w *workload) spikeFactor(at time.Duration, on bool) float64 {
	f := 1.0
	if !on {
		return f
	}
	for _, sp := range w.sc.Workload.Spikes {
		from := scaleTime(sp.At.D(), w.scale)
		to := from + scaleTime(sp.For.D(), w.scale)
		if at >= from && at < to && sp.Multiplier > 0 {
			f *= sp.Multiplier
		}
	}
	return f
}

// send makes one participant of a random conversation send a message.
func (w *workload) send() {
	if len(w.convs) == 0 {
		return
	}
	w.mu.Lock()
	cv := w.convs[w.rnd.IntN(len(w.convs))]
	u := cv.buyer
	if w.rnd.IntN(2) == 1 {
		u = cv.seller
	}
	rs := w.byUser[u]
	r := w.runners[rs[w.rnd.IntN(len(rs))]]
	w.mu.Unlock()
	n := w.msgs.Add(1)
	body := "m" + strconv.FormatInt(n, 10)
	posted := r.Post(func(c *client.Client, env client.Env) {
		if _, err := c.Send(env, cv.id, body); err != nil {
			w.refused.Add(1)
			return
		}
		w.sends.Add(1)
	})
	if !posted {
		w.refused.Add(1)
	}
}

// notice publishes one platform notice: through httpentry's platform API
// when there is one, else straight onto the queue, like the simulator.
func (w *workload) notice(ctx context.Context) {
	w.mu.Lock()
	u := w.rnd.IntN(len(w.users))
	w.mu.Unlock()
	n := w.msgs.Add(1)
	nt := &wire.PlatformNotice{NoticeId: "n" + strconv.FormatInt(n, 10), UserId: w.users[u], Kind: "order",
		Body: "notice " + strconv.FormatInt(n, 10)}
	go func() {
		for attempt := 1; attempt <= platformRetryMax; attempt++ {
			if err := w.publishNotice(ctx, nt); err == nil {
				w.noticesSent.Add(1)
				return
			}
			sleepCtx(ctx, time.Second)
		}
		w.noticesFailed.Add(1)
	}()
}

func (w *workload) publishNotice(ctx context.Context, nt *wire.PlatformNotice) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if w.nats != nil {
		data, err := proto.Marshal(nt)
		if err != nil {
			return err
		}
		return w.nats.Publish(ctx, mq.PlatformNotice, data, nt.NoticeId)
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(nt)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.env.HTTP[0]+"/v1/platform/notice", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Platform-Key", w.env.cfg.PlatformKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("platform notice: status %d", resp.StatusCode)
	}
	return nil
}

// unacked sums the clients' unacknowledged sends.
func (w *workload) unacked() int {
	n := 0
	for _, r := range w.runners {
		r.Do(func(c *client.Client, _ client.Env) { n += c.Unacked() })
	}
	return n
}

// convsOfClient are the conversations runner i must hold at the end.
func (w *workload) convsOfClient(i int) []string {
	u := w.userOf[i]
	out := append([]string(nil), w.convsOf[u]...)
	if w.notices {
		out = append(out, wire.SystemConvID(w.users[u]))
	}
	return out
}

// finalSync asks every client to sync every conversation it takes part in.
func (w *workload) finalSync() {
	for i, r := range w.runners {
		convs := w.convsOfClient(i)
		r.Do(func(c *client.Client, env client.Env) {
			for _, conv := range convs {
				_ = c.Sync(env, conv)
			}
		})
	}
}

// missing counts stored messages a participant does not hold.
func (w *workload) missing(stored map[string]map[uint64]bool) int {
	n := 0
	for i, r := range w.runners {
		convs := w.convsOfClient(i)
		r.Do(func(c *client.Client, _ client.Env) {
			for _, conv := range convs {
				held := map[uint64]bool{}
				for _, m := range c.Held(conv) {
					held[m.Seq] = true
				}
				for seq := range stored[conv] {
					if !held[seq] {
						n++
					}
				}
			}
		})
	}
	return n
}

// finish records each client's final holdings and stops the clients.
func (w *workload) finish() {
	for _, r := range w.runners {
		r.Do(func(c *client.Client, env client.Env) { c.Finish(env) })
		r.Stop()
	}
	if w.nats != nil {
		w.nats.Close()
	}
}

// clientStats sums the clients' counters.
func (w *workload) clientStats() (gapFills, reconnects, longPollReconnects, kicked int) {
	for _, r := range w.runners {
		r.Do(func(c *client.Client, _ client.Env) {
			st := c.Stats()
			gapFills += st.GapFills
			reconnects += st.Reconnects
			if c.Config().Transport == client.LongPoll {
				longPollReconnects += st.Reconnects
			}
			if st.Kicked {
				kicked++
			}
		})
	}
	return
}

// waitUntil polls cond every 100ms until it holds (nil) or d passes.
func waitUntil(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
