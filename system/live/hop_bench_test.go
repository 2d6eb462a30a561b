package live

import (
	"context"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// The cost of live's own hops, without TCP or clients: a front node sends
// a request to a back node and sets a timeout timer; the back node looks
// the user up in presence and answers; the front cancels the timer. That
// is the shape of entry → logic and logic → das (timer per call, a
// dependency request on the way). Window requests are outstanding at a
// time. cpu-ns/op is this process's CPU (getrusage) per round trip.
//
//	go test ./system/live -run '^$' -bench HostHop -benchmem
func BenchmarkHostHop(b *testing.B) {
	for _, tc := range []struct {
		name     string
		presence Presence
		window   int
	}{
		{"presence=memory/window=1", NewMemPresence(), 1},
		{"presence=memory/window=64", NewMemPresence(), 64},
		{"presence=pool/window=64", poolPresence{NewMemPresence()}, 64},
	} {
		b.Run(tc.name, func(b *testing.B) {
			front := &hopFront{total: b.N, window: tc.window, done: make(chan struct{})}
			p := NewProcess(Config{
				Topology: map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 1},
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
			}, Deps{Presence: tc.presence})
			defer p.Shutdown(context.Background(), 0)
			if err := p.Start(NodeSpec{Addr: node.Addr{Role: node.RoleLogic}, New: func() node.Node { return &hopBack{pending: map[node.ReqID]hopPending{}} }}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			if err := p.Start(NodeSpec{Addr: node.Addr{Role: node.RoleEntry}, New: func() node.Node { return front }}); err != nil {
				b.Fatal(err)
			}
			select {
			case <-front.done:
			case <-time.After(time.Minute):
				b.Fatalf("%d of %d round trips in a minute", front.replies, b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type hopTimeout struct{ req uint64 }

// hopFront keeps window requests outstanding until total have been answered.
type hopFront struct {
	total, window     int
	sent, replies     int
	timers            map[uint64]node.TimerID
	done              chan struct{}
	back              node.Addr
	timedOut, strange int
}

func (f *hopFront) Start(env node.Env) {
	f.timers = map[uint64]node.TimerID{}
	f.back = node.Addr{Role: node.RoleLogic}
	for i := 0; i < f.window && f.sent < f.total; i++ {
		f.send(env)
	}
}

func (f *hopFront) send(env node.Env) {
	f.sent++
	id := uint64(f.sent)
	f.timers[id] = env.After(time.Second, hopTimeout{req: id})
	env.Send(f.back, &wire.StoreRequest{ReqId: id, ReplyTo: env.Self().String()})
}

func (f *hopFront) Handle(env node.Env, ev node.Event) {
	switch e := ev.(type) {
	case node.Recv:
		r, ok := e.Msg.(*wire.StoreReply)
		if !ok {
			return
		}
		t, ok := f.timers[r.ReqId]
		if !ok {
			f.strange++
			return
		}
		delete(f.timers, r.ReqId)
		env.Cancel(t)
		f.replies++
		if f.sent < f.total {
			f.send(env)
		} else if f.replies == f.total {
			close(f.done)
		}
	case node.Timer:
		f.timedOut++
	}
}

type hopPending struct {
	from node.Addr
	req  uint64
}

// hopBack answers each request after a presence lookup.
type hopBack struct{ pending map[node.ReqID]hopPending }

func (k *hopBack) Start(node.Env) {}
func (k *hopBack) Handle(env node.Env, ev node.Event) {
	switch e := ev.(type) {
	case node.Recv:
		if r, ok := e.Msg.(*wire.StoreRequest); ok {
			id := env.Presence(node.PresenceOp{Kind: node.PresenceGet, Users: []string{"u1"}})
			k.pending[id] = hopPending{from: e.From, req: r.ReqId}
		}
	case node.Completion:
		if p, ok := k.pending[e.Req]; ok {
			delete(k.pending, e.Req)
			env.Send(p.from, &wire.StoreReply{ReqId: p.req})
		}
	}
}
