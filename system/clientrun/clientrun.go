// Package clientrun drives reference clients (system/client) over real
// TCP and HTTP: one goroutine per client draining a mailbox, like
// system/live does for services. The chaos harness, the load generator,
// `zzim up` examples and end-to-end tests use it.
package clientrun

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/wire"
)

// MailboxMax bounds the events waiting for one client.
const MailboxMax = 4096

// Clock is one monotonic clock shared by every client of a recording
// process: histories compare call and return times across clients, so they
// must come from one clock no wall-clock step can skew.
type Clock struct{ base time.Time }

// NewClock starts a clock.
func NewClock() *Clock { return &Clock{base: time.Now()} }

// Now is base plus monotonic time elapsed.
func (c *Clock) Now() time.Time { return c.base.Add(time.Since(c.base)) }

// Recorder collects history ops from many clients safely.
type Recorder struct {
	mu  sync.Mutex
	rec check.Recorder
}

// Add records one op.
func (r *Recorder) Add(op check.Op) {
	r.mu.Lock()
	r.rec.Add(op)
	r.mu.Unlock()
}

// Ops returns the ops sorted by call time.
func (r *Recorder) Ops() []check.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rec.Ops()
}

// Options of a runner.
type Options struct {
	Clock    *Clock
	Recorder *Recorder // nil: histories are not kept
	Logger   *slog.Logger
	// HTTPClient for long-poll clients (a shared one with keep-alives by default).
	HTTPClient *http.Client
	// Dial overrides net.Dialer.DialContext (to spread source addresses, say).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MailboxMax bounds the events waiting for this client (MailboxMax if
	// 0). A load generator running many thousand clients uses a small one:
	// the buffer is allocated up front.
	MailboxMax int
	// ReadBuffer is the size of one read from the connection (4096 if 0).
	ReadBuffer int
	// OnWrite, if set, sees every frame the client writes, on the client's
	// goroutine (a load generator notes when each send went on the wire).
	OnWrite func(f wire.Frame)
	// OnHTTP, if set, sees every HTTP request the client makes, on the
	// client's goroutine.
	OnHTTP func(method, path string, body []byte)
	// Online, if set, counts the clients with a session up: each runner
	// adds 1 when its client comes online and -1 when it goes offline.
	Online *atomic.Int64
}

// Runner runs one client.
type Runner struct {
	c       *client.Client
	opts    Options
	mailbox chan any
	done    chan struct{}
	stopped atomic.Bool
	rnd     *rand.Rand
	online  bool // last value added to opts.Online (client goroutine only)

	// owned by the client goroutine
	conn    net.Conn
	connGen uint64
	out     []byte
	ids     uint64
	timers  map[client.TimerID]*time.Timer
}

type connEvent struct {
	gen uint64
	ev  client.Event
}

type doEvent struct {
	fn   func(*client.Client, client.Env)
	done chan struct{}
}

var sharedHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second}}

// Start runs a client until Stop.
func Start(cfg client.Config, opts Options) *Runner {
	if opts.Clock == nil {
		opts.Clock = NewClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = sharedHTTP
	}
	if opts.MailboxMax <= 0 {
		opts.MailboxMax = MailboxMax
	}
	if opts.ReadBuffer <= 0 {
		opts.ReadBuffer = readBufferDefault
	}
	r := &Runner{
		c: client.New(cfg), opts: opts, mailbox: make(chan any, opts.MailboxMax), done: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), timers: map[client.TimerID]*time.Timer{},
	}
	go r.run()
	return r
}

// Do runs fn on the client's goroutine and waits for it.
func (r *Runner) Do(fn func(c *client.Client, env client.Env)) {
	done := make(chan struct{})
	if !r.post(doEvent{fn: fn, done: done}) {
		return
	}
	select {
	case <-done:
	case <-r.done:
	}
}

// Post queues fn to run on the client's goroutine and returns at once:
// false when the mailbox is full or the runner stopped (fn will not run).
// An open-loop load generator must never wait for a client.
func (r *Runner) Post(fn func(c *client.Client, env client.Env)) bool {
	if r.stopped.Load() {
		return false
	}
	select {
	case r.mailbox <- doEvent{fn: fn}:
		return true
	default:
		return false
	}
}

// Stop ends the client's goroutine and closes its connection.
func (r *Runner) Stop() {
	if r.stopped.Swap(true) {
		return
	}
	close(r.done)
}

func (r *Runner) post(ev any) bool {
	if r.stopped.Load() {
		return false
	}
	select {
	case r.mailbox <- ev:
		return true
	case <-r.done:
		return false
	}
}

func (r *Runner) run() {
	env := (*runEnv)(r)
	r.c.Start(env)
	r.flush()
	r.noteOnline()
	for {
		select {
		case <-r.done:
			if r.conn != nil {
				r.conn.Close()
			}
			for _, t := range r.timers {
				t.Stop()
			}
			if r.online {
				r.opts.Online.Add(-1)
			}
			return
		case ev := <-r.mailbox:
			r.dispatch(env, ev)
			r.coalesce(env)
			r.flush()
			r.noteOnline()
		}
	}
}

// coalesceMax bounds the events handled between two writes.
const coalesceMax = 64

// coalesce handles events already waiting (at most coalesceMax) before the
// frames they produce are written in one write: under load, one syscall
// carries many sends and acks instead of one each.
func (r *Runner) coalesce(env *runEnv) {
	for i := 0; i < coalesceMax; i++ {
		select {
		case ev := <-r.mailbox:
			r.dispatch(env, ev)
		default:
			return
		}
	}
}

// noteOnline keeps Options.Online in step with the client.
func (r *Runner) noteOnline() {
	if r.opts.Online == nil {
		return
	}
	if on := r.c.Online(); on != r.online {
		r.online = on
		if on {
			r.opts.Online.Add(1)
		} else {
			r.opts.Online.Add(-1)
		}
	}
}

func (r *Runner) dispatch(env *runEnv, ev any) {
	switch e := ev.(type) {
	case doEvent:
		e.fn(r.c, env)
		if e.done != nil {
			close(e.done)
		}
	case connEvent:
		if e.gen != r.connGen {
			return // an old connection's news
		}
		r.flush() // frames of coalesced events belong to this connection
		if _, ok := e.ev.(client.Disconnected); ok && r.conn != nil {
			r.conn.Close()
			r.conn = nil
		}
		r.c.Handle(env, e.ev)
	case connUp:
		r.flush()
		if e.gen != r.connGen || r.stopped.Load() {
			e.conn.Close()
			return
		}
		r.conn = e.conn
		go r.reader(e.gen, e.conn)
		r.c.Handle(env, client.Connected{})
	case client.Timer:
		if _, ok := r.timers[e.ID]; !ok {
			return
		}
		delete(r.timers, e.ID)
		r.c.Handle(env, e)
	case client.Event:
		r.c.Handle(env, e)
	}
}

// flush writes the frames queued while handling one event in one write.
func (r *Runner) flush() {
	if len(r.out) == 0 || r.conn == nil {
		r.out = r.out[:0]
		return
	}
	_ = r.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.conn.Write(r.out); err != nil {
		r.conn.Close() // the reader reports Disconnected
	}
	r.out = r.out[:0]
}

type runEnv Runner

func (e *runEnv) Now() time.Time    { return e.opts.Clock.Now() }
func (e *runEnv) Rand() *rand.Rand  { return e.rnd }
func (e *runEnv) Log() *slog.Logger { return e.opts.Logger }

func (e *runEnv) Dial(addr string) {
	r := (*Runner)(e)
	r.flush()
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	r.connGen++
	gen := r.connGen
	dial := r.opts.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 3 * time.Second}).DialContext
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := dial(ctx, "tcp", addr)
		cancel()
		if err != nil {
			r.post(connEvent{gen: gen, ev: client.Disconnected{Reason: err.Error()}})
			return
		}
		r.post(connUp{gen: gen, conn: conn})
	}()
}

type connUp struct {
	gen  uint64
	conn net.Conn
}

func (e *runEnv) Write(f wire.Frame) {
	e.out, _ = wire.AppendFrame(e.out, f)
	if e.opts.OnWrite != nil {
		e.opts.OnWrite(f)
	}
}

func (e *runEnv) Hangup() {
	r := (*Runner)(e)
	r.flush()
	if r.conn != nil {
		r.conn.Close()
	}
}

func (e *runEnv) HTTP(method, path, token string, body []byte, timeout time.Duration) client.ReqID {
	r := (*Runner)(e)
	r.ids++
	id := client.ReqID(r.ids)
	base := r.c.Config().HTTP
	if r.opts.OnHTTP != nil {
		r.opts.OnHTTP(method, path, body)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			r.post(client.HTTPResponse{Req: id})
			return
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := r.opts.HTTPClient.Do(req)
		if err != nil {
			r.post(client.HTTPResponse{Req: id})
			return
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, wire.FrameSizeMax*16))
		resp.Body.Close()
		if err != nil {
			r.post(client.HTTPResponse{Req: id})
			return
		}
		r.post(client.HTTPResponse{Req: id, Status: resp.StatusCode, Body: b})
	}()
	return id
}

func (e *runEnv) After(d time.Duration, tag any) client.TimerID {
	r := (*Runner)(e)
	r.ids++
	id := client.TimerID(r.ids)
	r.timers[id] = time.AfterFunc(d, func() { r.post(client.Timer{ID: id, Tag: tag}) })
	return id
}

func (e *runEnv) Cancel(id client.TimerID) {
	if t, ok := e.timers[id]; ok {
		t.Stop()
		delete(e.timers, id)
	}
}

func (e *runEnv) Record(op check.Op) {
	if e.opts.Recorder != nil {
		e.opts.Recorder.Add(op)
	}
}

// readBufferDefault is the default size of one read.
const readBufferDefault = 4096

// reader turns a connection's bytes into FrameIn events. It reads straight
// into one buffer (no bufio layer: it would only copy twice).
func (r *Runner) reader(gen uint64, conn net.Conn) {
	var buf []byte
	tmp := make([]byte, r.opts.ReadBuffer)
	for {
		n, err := conn.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			f, used, derr := wire.Decode(buf)
			if derr != nil {
				if derr == wire.ErrShort {
					break
				}
				conn.Close()
				r.post(connEvent{gen: gen, ev: client.Disconnected{Reason: derr.Error()}})
				return
			}
			body := append([]byte(nil), f.Body...)
			f.Body = body
			buf = buf[used:]
			if !r.post(connEvent{gen: gen, ev: client.FrameIn{Frame: f}}) {
				return
			}
		}
		if err != nil {
			r.post(connEvent{gen: gen, ev: client.Disconnected{Reason: err.Error()}})
			return
		}
	}
}
