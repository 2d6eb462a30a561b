// Package nodetest is a scripted environment for service state machines: it
// records every effect a node produces and lets a test deliver events in any
// order it chooses. The test is the scheduler, so every interleaving a test
// needs can be written down (etcd-io/raft's approach).
package nodetest

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Effect kinds recorded by Env.
type (
	Sent struct {
		To  node.Addr
		Msg node.Message
	}
	ToClient struct {
		Conn  node.ConnID
		Frame wire.Frame
	}
	Closed    struct{ Conn node.ConnID }
	HTTPReply struct {
		Conn        node.ConnID
		Status      int
		ContentType string
		Body        []byte
	}
	TimerSet struct {
		ID  node.TimerID
		At  time.Time
		Tag any
	}
	TimerCanceled struct{ ID node.TimerID }
	StoreReq      struct {
		Req node.ReqID
		Op  node.StoreOp
	}
	PresenceReq struct {
		Req node.ReqID
		Op  node.PresenceOp
	}
	PublishReq struct {
		Req     node.ReqID
		Subject string
		Data    []byte
		MsgID   string
	}
	RegistryReq struct {
		Req node.ReqID
		Op  node.RegistryOp
	}
	Acked  struct{ ID node.DeliveryID }
	Nakked struct {
		ID    node.DeliveryID
		Delay time.Duration
	}
)

// Env implements node.Env by recording effects.
type Env struct {
	Addr    node.Addr
	Inc     node.Incarnation
	Clock   time.Time
	Effects []any
	rnd     *rand.Rand
	log     *slog.Logger
	nextID  uint64
	timers  map[node.TimerID]TimerSet
}

// New returns an Env for addr at a fixed start time with a fixed seed.
func New(addr node.Addr) *Env {
	return &Env{
		Addr:   addr,
		Inc:    1,
		Clock:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		rnd:    rand.New(rand.NewPCG(1, 2)),
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		timers: map[node.TimerID]TimerSet{},
	}
}

func (e *Env) id() uint64 { e.nextID++; return e.nextID }

func (e *Env) Self() node.Addr               { return e.Addr }
func (e *Env) Incarnation() node.Incarnation { return e.Inc }
func (e *Env) Now() time.Time                { return e.Clock }
func (e *Env) Rand() *rand.Rand              { return e.rnd }
func (e *Env) Log() *slog.Logger             { return e.log }
func (e *Env) Send(to node.Addr, m node.Message) {
	e.Effects = append(e.Effects, Sent{To: to, Msg: m})
}
func (e *Env) ToClient(c node.ConnID, f wire.Frame) {
	e.Effects = append(e.Effects, ToClient{Conn: c, Frame: f})
}
func (e *Env) Close(c node.ConnID) { e.Effects = append(e.Effects, Closed{Conn: c}) }
func (e *Env) HTTPReply(c node.ConnID, status int, ct string, body []byte) {
	e.Effects = append(e.Effects, HTTPReply{Conn: c, Status: status, ContentType: ct, Body: body})
}
func (e *Env) After(d time.Duration, tag any) node.TimerID {
	t := TimerSet{ID: node.TimerID(e.id()), At: e.Clock.Add(d), Tag: tag}
	e.timers[t.ID] = t
	e.Effects = append(e.Effects, t)
	return t.ID
}
func (e *Env) Cancel(id node.TimerID) {
	delete(e.timers, id)
	e.Effects = append(e.Effects, TimerCanceled{ID: id})
}
func (e *Env) Store(op node.StoreOp) node.ReqID {
	r := node.ReqID(e.id())
	e.Effects = append(e.Effects, StoreReq{Req: r, Op: op})
	return r
}
func (e *Env) Presence(op node.PresenceOp) node.ReqID {
	r := node.ReqID(e.id())
	e.Effects = append(e.Effects, PresenceReq{Req: r, Op: op})
	return r
}
func (e *Env) Publish(subject string, data []byte, msgID string) node.ReqID {
	r := node.ReqID(e.id())
	e.Effects = append(e.Effects, PublishReq{Req: r, Subject: subject, Data: data, MsgID: msgID})
	return r
}
func (e *Env) Registry(op node.RegistryOp) node.ReqID {
	r := node.ReqID(e.id())
	e.Effects = append(e.Effects, RegistryReq{Req: r, Op: op})
	return r
}
func (e *Env) AckDelivery(id node.DeliveryID) { e.Effects = append(e.Effects, Acked{ID: id}) }
func (e *Env) NakDelivery(id node.DeliveryID, d time.Duration) {
	e.Effects = append(e.Effects, Nakked{ID: id, Delay: d})
}

// Take returns the effects recorded so far and clears them.
func (e *Env) Take() []any {
	out := e.Effects
	e.Effects = nil
	return out
}

// Advance moves the clock by d and returns the timers that are now due, in
// due order, removing them. The test decides whether to deliver them.
func (e *Env) Advance(d time.Duration) []node.Timer {
	e.Clock = e.Clock.Add(d)
	var due []TimerSet
	for _, t := range e.timers {
		if !t.At.After(e.Clock) {
			due = append(due, t)
		}
	}
	// Deterministic order: by due time, then id.
	for i := 1; i < len(due); i++ {
		for j := i; j > 0 && (due[j].At.Before(due[j-1].At) || due[j].At.Equal(due[j-1].At) && due[j].ID < due[j-1].ID); j-- {
			due[j], due[j-1] = due[j-1], due[j]
		}
	}
	out := make([]node.Timer, len(due))
	for i, t := range due {
		delete(e.timers, t.ID)
		out[i] = node.Timer{ID: t.ID, Tag: t.Tag}
	}
	return out
}

// Of returns the recorded effects of type T.
func Of[T any](effects []any) []T {
	var out []T
	for _, e := range effects {
		if t, ok := e.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// Describe renders effects one per line, for golden traces and failure messages.
func Describe(effects []any) string {
	s := ""
	for _, e := range effects {
		s += fmt.Sprintf("%T %+v\n", e, e)
	}
	return s
}

var _ node.Env = (*Env)(nil)
