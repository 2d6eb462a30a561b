package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge-go"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/wire"
)

// users are U connected users of one system; users 2k and 2k+1 are the
// two sides of conversation k.
type users interface {
	// send makes user `from` send message id of step s to its partner. It
	// never waits for the server: the schedule is open-loop.
	send(from int, s *stepTrack, id int, b []byte)
	// recover has every user fetch what it may have missed from the
	// server, once every step has drained: zzim's clients sync their
	// conversation (as zzim's apps do to recover from a lost push),
	// Centrifugo's read their channel's history. It returns once every
	// request is issued (zzim) or answered (Centrifugo); the messages
	// arrive through the tracker, marked late. failed counts requests
	// that got an error.
	recover(ctx context.Context) (failed int64)
	close()
}

func userName(u int) string { return "u" + strconv.Itoa(u) }

// connectBatch bounds the logins in flight while users connect.
const connectBatch = 500

// waitCount waits until *n reaches want.
func waitCount(ctx context.Context, what string, n *atomic.Int64, want int64) error {
	for n.Load() < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d: %w", what, n.Load(), want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// zzimUsers run the reference client (system/client under clientrun) over
// TCP, spread over the entries.
type zzimUsers struct {
	t       *tracker
	runners []*clientrun.Runner
	convs   []string
	pending []map[string]pending // by user, touched only with its client held
}

type pending struct {
	s  *stepTrack
	id int
}

func zzimConv(pair int) string {
	return "p:" + userName(2*pair) + ":" + userName(2*pair+1) + ":l" + strconv.Itoa(pair)
}

// connectZzim connects n users; dial, if set, gives user u's client its
// own dialer (a test drops the pushes of some users with it).
func connectZzim(ctx context.Context, t *tracker, entries []string, n int, dial func(u int) func(ctx context.Context, network, addr string) (net.Conn, error)) (*zzimUsers, error) {
	z := &zzimUsers{t: t, runners: make([]*clientrun.Runner, n), convs: make([]string, n/2), pending: make([]map[string]pending, n)}
	for k := range z.convs {
		z.convs[k] = zzimConv(k)
	}
	clock := clientrun.NewClock()
	var online atomic.Int64
	for lo := 0; lo < n; lo += connectBatch {
		hi := min(n, lo+connectBatch)
		for u := lo; u < hi; u++ {
			me := u
			z.pending[u] = map[string]pending{}
			cfg := client.Config{
				User: userName(u), Device: "bench", Token: wire.SignToken([]byte(benchSecret), userName(u), time.Now().Add(24*time.Hour)),
				Entries: []string{entries[u%len(entries)]},
				OnDeliver: func(_ client.Env, m *wire.ChatMessage, via string) {
					t.deliver(me, m.Body, via == "sync")
				},
				OnSendDone: func(_ client.Env, cid string, _ uint64, errCode string) {
					p, ok := z.pending[me][cid]
					if !ok {
						return
					}
					delete(z.pending[me], cid)
					p.s.ack(p.id, errCode == "")
				},
			}
			opts := clientrun.Options{Clock: clock, MailboxMax: 64, Online: &online}
			if dial != nil {
				opts.Dial = dial(u)
			}
			z.runners[u] = clientrun.Start(cfg, opts)
		}
		if err := waitCount(ctx, "zzim users online", &online, int64(hi)); err != nil {
			z.close()
			return nil, err
		}
	}
	return z, nil
}

// zzimSend is one send, run with the sender's client held.
type zzimSend struct {
	z    *zzimUsers
	from int
	s    *stepTrack
	id   int
	body string
}

func (a *zzimSend) Run(c *client.Client, env client.Env) {
	a.s.sent[a.id].Store(a.z.t.now())
	cid, err := c.Send(env, a.z.convs[a.from/2], a.body)
	if err != nil {
		a.s.ack(a.id, false)
		return
	}
	a.z.pending[a.from][cid] = pending{s: a.s, id: a.id}
}

func (z *zzimUsers) send(from int, s *stepTrack, id int, b []byte) {
	a := &zzimSend{z: z, from: from, s: s, id: id, body: string(b)}
	if !z.runners[from].PostAction(a) {
		// Its mailbox is full: wait for room without holding up the schedule.
		go z.runners[from].Do(a.Run)
	}
}

// recover: each user syncs its conversation from what its client holds
// and asks for its conversation list (which syncs whatever the list shows
// behind), the calls loadgen's verify mode makes before its final check.
// The client pages the sync to the conversation's last seq and retries a
// refused one with backoff; the caller waits for the deliveries to go quiet.
func (z *zzimUsers) recover(context.Context) int64 {
	for u, r := range z.runners {
		conv := z.convs[u/2]
		fn := func(c *client.Client, env client.Env) {
			_ = c.Sync(env, conv)
			_ = c.ConvList(env)
		}
		if !r.Post(fn) {
			go r.Do(fn)
		}
	}
	return 0
}

func (z *zzimUsers) close() {
	for _, r := range z.runners {
		if r != nil {
			r.Stop()
		}
	}
}

// centUsers run centrifuge-go over WebSocket with the Protobuf protocol
// (the binary one, as zzim's is), each subscribed to its conversation's
// channel with recovery on, publishing into it from the client.
type centUsers struct {
	t       *tracker
	clients []*centrifuge.Client
	subs    []*centrifuge.Subscription
}

// centChannel is conversation k's channel: user-limited to its two users.
func centChannel(pair int) string {
	return centNamespace + ":c" + strconv.Itoa(pair) + "#" + userName(2*pair) + "," + userName(2*pair+1)
}

// centToken is a connection JWT (HS256) for user u.
func centToken(u string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims := enc.EncodeToString([]byte(`{"sub":"` + u + `","exp":` + strconv.FormatInt(time.Now().Add(24*time.Hour).Unix(), 10) + `}`))
	mac := hmac.New(sha256.New, []byte(benchSecret))
	mac.Write([]byte(head + "." + claims))
	return head + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

// publishTimeout bounds one client publish (an unanswered one is a failure).
const publishTimeout = 30 * time.Second

func connectCentrifugo(ctx context.Context, t *tracker, addr string, n int) (*centUsers, error) {
	c := &centUsers{t: t, clients: make([]*centrifuge.Client, n), subs: make([]*centrifuge.Subscription, n)}
	var subscribed atomic.Int64
	url := "ws://" + addr + "/connection/websocket"
	for lo := 0; lo < n; lo += connectBatch {
		hi := min(n, lo+connectBatch)
		for u := lo; u < hi; u++ {
			me := u
			cl := centrifuge.NewProtobufClient(url, centrifuge.Config{Token: centToken(userName(u)), Name: "peers-bench"})
			sub, err := cl.NewSubscription(centChannel(u/2), centrifuge.SubscriptionConfig{Recoverable: true})
			if err != nil {
				c.close()
				return nil, fmt.Errorf("subscription: %w", err)
			}
			sub.OnPublication(func(e centrifuge.PublicationEvent) { t.deliver(me, string(e.Data), false) })
			sub.OnSubscribed(func(centrifuge.SubscribedEvent) { subscribed.Add(1) })
			c.clients[u], c.subs[u] = cl, sub
			if err := cl.Connect(); err != nil {
				c.close()
				return nil, fmt.Errorf("connect: %w", err)
			}
			if err := sub.Subscribe(); err != nil {
				c.close()
				return nil, fmt.Errorf("subscribe: %w", err)
			}
		}
		if err := waitCount(ctx, "centrifugo users subscribed", &subscribed, int64(hi)); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// send publishes from its own goroutine: Publish waits for the server's
// reply, and the schedule must not.
func (c *centUsers) send(from int, s *stepTrack, id int, b []byte) {
	go func() {
		s.sent[id].Store(c.t.now())
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		defer cancel()
		_, err := c.subs[from].Publish(ctx, b)
		s.ack(id, err == nil)
	}()
}

// recoverInflight bounds the history reads in flight after the run.
const recoverInflight = 64

// recover: each user reads its channel's history (the newest
// centHistorySize publications, all the namespace keeps) and takes the
// ones addressed to it that it lacks. This is what a Centrifugo client
// does to fill a gap outside a resubscribe (the namespace allows history
// for subscribers for this); recovery proper happens only when a
// subscription is re-established, which a client that stayed connected
// never does.
func (c *centUsers) recover(ctx context.Context) int64 {
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, recoverInflight)
	for u, sub := range c.subs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			failed.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			hctx, cancel := context.WithTimeout(ctx, publishTimeout)
			defer cancel()
			res, err := sub.History(hctx, centrifuge.WithHistoryLimit(centHistorySize))
			if err != nil {
				failed.Add(1)
				return
			}
			for _, p := range res.Publications {
				c.t.recoverDeliver(u, string(p.Data))
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

func (c *centUsers) close() {
	for _, cl := range c.clients {
		if cl != nil {
			cl.Close()
		}
	}
}
