// Package clientrun drives reference clients (system/client) over real
// TCP and HTTP: one goroutine per client draining a mailbox, like
// system/live does for services. The chaos harness, the load generator,
// `zzim up` examples and end-to-end tests use it.
package clientrun

import (
	"bufio"
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
}

// Runner runs one client.
type Runner struct {
	c       *client.Client
	opts    Options
	mailbox chan any
	done    chan struct{}
	stopped atomic.Bool
	rnd     *rand.Rand

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
	r := &Runner{
		c: client.New(cfg), opts: opts, mailbox: make(chan any, MailboxMax), done: make(chan struct{}),
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
	for {
		select {
		case <-r.done:
			if r.conn != nil {
				r.conn.Close()
			}
			for _, t := range r.timers {
				t.Stop()
			}
			return
		case ev := <-r.mailbox:
			r.dispatch(env, ev)
			r.flush()
		}
	}
}

func (r *Runner) dispatch(env *runEnv, ev any) {
	switch e := ev.(type) {
	case doEvent:
		e.fn(r.c, env)
		close(e.done)
	case connEvent:
		if e.gen != r.connGen {
			return // an old connection's news
		}
		if _, ok := e.ev.(client.Disconnected); ok && r.conn != nil {
			r.conn.Close()
			r.conn = nil
		}
		r.c.Handle(env, e.ev)
	case connUp:
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
}

func (e *runEnv) Hangup() {
	r := (*Runner)(e)
	if r.conn != nil {
		r.conn.Close()
	}
}

func (e *runEnv) HTTP(method, path, token string, body []byte, timeout time.Duration) client.ReqID {
	r := (*Runner)(e)
	r.ids++
	id := client.ReqID(r.ids)
	base := r.c.Config().HTTP
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

// reader turns a connection's bytes into FrameIn events.
func (r *Runner) reader(gen uint64, conn net.Conn) {
	br := bufio.NewReaderSize(conn, 4096)
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := br.Read(tmp)
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
