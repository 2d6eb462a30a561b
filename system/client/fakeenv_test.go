package client

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/wire"
)

// fakeEnv is a scripted client.Env: it records every effect and lets the
// test deliver answers in any order. The test is the scheduler.
type fakeEnv struct {
	now     time.Time
	rnd     *rand.Rand
	log     *slog.Logger
	dials   []string
	frames  []wire.Frame // written, not yet taken
	hangups int
	https   []httpCall // issued, not yet taken
	nextID  uint64
	timers  map[TimerID]fakeTimer
	ops     []check.Op
}

type httpCall struct {
	id      ReqID
	method  string
	path    string
	token   string
	body    []byte
	timeout time.Duration
}

type fakeTimer struct {
	at  time.Time
	tag any
}

func newFakeEnv() *fakeEnv {
	return &fakeEnv{
		now:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		rnd:    rand.New(rand.NewPCG(7, 11)),
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		timers: map[TimerID]fakeTimer{},
	}
}

func (e *fakeEnv) Now() time.Time       { return e.now }
func (e *fakeEnv) Rand() *rand.Rand     { return e.rnd }
func (e *fakeEnv) Log() *slog.Logger    { return e.log }
func (e *fakeEnv) Dial(addr string)     { e.dials = append(e.dials, addr) }
func (e *fakeEnv) Write(f wire.Frame)   { e.frames = append(e.frames, f) }
func (e *fakeEnv) Hangup()              { e.hangups++ }
func (e *fakeEnv) Record(op check.Op)   { e.ops = append(e.ops, op) }
func (e *fakeEnv) Cancel(id TimerID)    { delete(e.timers, id) }
func (e *fakeEnv) id() uint64           { e.nextID++; return e.nextID }
func (e *fakeEnv) pendingTimers() int   { return len(e.timers) }
func (e *fakeEnv) takeHTTP() []httpCall { out := e.https; e.https = nil; return out }

func (e *fakeEnv) HTTP(method, path, token string, body []byte, timeout time.Duration) ReqID {
	id := ReqID(e.id())
	e.https = append(e.https, httpCall{id: id, method: method, path: path, token: token, body: body, timeout: timeout})
	return id
}

func (e *fakeEnv) After(d time.Duration, tag any) TimerID {
	id := TimerID(e.id())
	e.timers[id] = fakeTimer{at: e.now.Add(d), tag: tag}
	return id
}

// advance moves the clock by d, firing due timers in (time, id) order.
func (e *fakeEnv) advance(c *Client, d time.Duration) {
	end := e.now.Add(d)
	for {
		var ids []TimerID
		for id, t := range e.timers {
			if !t.at.After(end) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			break
		}
		sort.Slice(ids, func(i, j int) bool {
			a, b := e.timers[ids[i]], e.timers[ids[j]]
			if !a.at.Equal(b.at) {
				return a.at.Before(b.at)
			}
			return ids[i] < ids[j]
		})
		id := ids[0]
		t := e.timers[id]
		delete(e.timers, id)
		e.now = t.at
		c.Handle(e, Timer{ID: id, Tag: t.tag})
	}
	e.now = end
}

// take returns the frames written since the last take, decoded.
func (e *fakeEnv) take(t *testing.T) []written {
	t.Helper()
	var out []written
	for _, f := range e.frames {
		m, err := wire.DecodeBody(f)
		if err != nil {
			t.Fatalf("client wrote an undecodable %s frame: %v", f.Op, err)
		}
		out = append(out, written{op: f.Op, reqID: f.ReqID, msg: m})
	}
	e.frames = nil
	return out
}

type written struct {
	op    wire.Op
	reqID uint32
	msg   proto.Message
}

// only returns the frames of one op.
func only(ws []written, op wire.Op) []written {
	var out []written
	for _, w := range ws {
		if w.op == op {
			out = append(out, w)
		}
	}
	return out
}

func sendsOf(ws []written) []*wire.Send {
	var out []*wire.Send
	for _, w := range only(ws, wire.OpSend) {
		out = append(out, w.msg.(*wire.Send))
	}
	return out
}

// reply delivers m to the client as a frame with reqID.
func reply(t *testing.T, c *Client, e *fakeEnv, reqID uint32, m proto.Message) {
	t.Helper()
	f, err := wire.EncodeMessage(reqID, m)
	if err != nil {
		t.Fatal(err)
	}
	c.Handle(e, FrameIn{Frame: f})
}

// opsOf returns the recorded ops of one kind.
func (e *fakeEnv) opsOf(kind string) []check.Op {
	var out []check.Op
	for _, op := range e.ops {
		if op.Kind == kind {
			out = append(out, op)
		}
	}
	return out
}

// history round-trips the recorded ops through the documented format.
func (e *fakeEnv) history(t *testing.T) *check.History {
	t.Helper()
	var buf bytes.Buffer
	if err := check.WriteHistory(&buf, e.ops); err != nil {
		t.Fatal(err)
	}
	h, err := check.ReadHistory(&buf)
	if err != nil {
		t.Fatalf("recorded history does not parse: %v", err)
	}
	return h
}
