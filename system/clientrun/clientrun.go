// Package clientrun drives reference clients (system/client) over real
// TCP and HTTP: one goroutine per client draining a mailbox, like
// system/live does for services, and one reading its connection. Both
// hold the client's lock while it handles an event, so the client sees
// one event at a time. Frames read are handled on the reading goroutine
// when the client is free (no hand-off per frame), else posted behind the
// mailbox's events; only the mailbox goroutine writes, so reading never
// waits for a write the server is slow to take. The chaos harness, the
// load generator, `zzim up` examples and end-to-end tests use it.
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
	// ReadBuffer is the size of one read from the connection (4096 if 0;
	// the buffer grows for a larger frame).
	ReadBuffer int
	// OnWrite, if set, sees every frame the client writes, with the client
	// held (calls for one client never overlap); a load generator notes
	// when each send went on the wire.
	OnWrite func(f wire.Frame)
	// OnHTTP, if set, sees every HTTP request the client makes, with the
	// client held. Like frames, which are written once the event that made
	// them is handled, a request starts then: what OnHTTP notes (a load
	// generator's send) is in place before the server can answer it.
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

	// mu is held while the client handles an event: by the mailbox
	// goroutine, or by the reader of the current connection. Everything
	// below is guarded by it.
	mu sync.Mutex
	// posted (atomic) counts the reader's events waiting in the mailbox (frames
	// and the end of its connection): while any wait, the reader posts
	// its next ones behind them instead of handling them itself.
	posted atomic.Int64
	// flushAsked: the reader asked the mailbox goroutine to write what its
	// frames produced.
	flushAsked bool
	closed     bool // the runner stopped: nothing more is handled
	online     bool // last value added to opts.Online
	conn       net.Conn
	// wdl is the write deadline set on conn (zero: none yet). It is moved
	// only when less than writeTimeout-writeDeadlineSlack remains, not on
	// every write: a write may block between 4 and 5 seconds.
	wdl     time.Time
	connGen uint64
	out     []byte
	http    []func() // requests made while handling an event, started by flush
	ids     uint64
	timers  map[client.TimerID]struct{} // set and not cancelled (fired ones go when handled)
}

// A write that cannot complete within writeTimeout (less the slack) closes
// the connection.
const (
	writeTimeout       = 5 * time.Second
	writeDeadlineSlack = time.Second
)

type connEvent struct {
	gen    uint64
	ev     client.Event // Disconnected, or FrameIn from the reader
	reader bool         // posted by the reader (counted in posted)
}

// flushEvent asks the mailbox goroutine for a flush (its batch ends with
// one).
type flushEvent struct{}

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
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), timers: map[client.TimerID]struct{}{},
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
	return r.PostAction(funcAction(fn))
}

// Action is work to run with the client held. PostAction of a pointer (a
// pooled one, say) allocates nothing: a load generator's scheduler posts
// tens of thousands a second.
type Action interface {
	Run(c *client.Client, env client.Env)
}

type funcAction func(c *client.Client, env client.Env)

func (f funcAction) Run(c *client.Client, env client.Env) { f(c, env) }

// PostAction is Post for an Action.
func (r *Runner) PostAction(a Action) bool {
	if r.stopped.Load() {
		return false
	}
	select {
	case r.mailbox <- a:
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
	r.mu.Lock()
	r.c.Start(env)
	r.flush()
	r.noteOnline()
	r.mu.Unlock()
	for {
		select {
		case <-r.done:
			r.mu.Lock()
			r.closed = true
			if r.conn != nil {
				r.conn.Close()
				r.conn = nil
			}
			clear(r.timers) // still in the timer service: they find the runner stopped
			if r.online {
				r.online = false
				r.opts.Online.Add(-1)
			}
			r.mu.Unlock()
			return
		case ev := <-r.mailbox:
			r.mu.Lock()
			r.dispatch(env, ev)
			r.coalesce(env)
			r.flush()
			r.noteOnline()
			r.mu.Unlock()
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
	case Action:
		e.Run(r.c, env)
	case doEvent:
		e.fn(r.c, env)
		if e.done != nil {
			close(e.done)
		}
	case connEvent:
		_, frame := e.ev.(client.FrameIn)
		if e.reader {
			r.posted.Add(-1)
		}
		if e.gen != r.connGen {
			return // an old connection's news
		}
		if frame {
			r.c.Handle(env, e.ev)
			return
		}
		r.disconnected(env, e.ev)
	case flushEvent: // the batch ends with a flush
	case connUp:
		r.flush()
		if e.gen != r.connGen || r.stopped.Load() {
			e.conn.Close()
			return
		}
		r.conn = e.conn
		r.wdl = time.Time{}
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

// disconnected closes the current connection and tells the client (ev is
// its Disconnected).
func (r *Runner) disconnected(env *runEnv, ev client.Event) {
	r.flush() // frames of events handled before belong to this connection
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	r.c.Handle(env, ev)
}

// askFlush has the mailbox goroutine write what the reader's frames
// produced. A full mailbox is being drained, and its batch ends with a
// flush anyway.
func (r *Runner) askFlush() {
	if r.flushAsked || len(r.out) == 0 && len(r.http) == 0 {
		return
	}
	r.flushAsked = true
	select {
	case r.mailbox <- flushEvent{}:
	default:
	}
}

// flush starts the HTTP requests and writes the frames (in one write)
// made while handling events.
func (r *Runner) flush() {
	r.flushAsked = false
	for i, start := range r.http {
		start()
		r.http[i] = nil
	}
	r.http = r.http[:0]
	if len(r.out) == 0 || r.conn == nil {
		r.out = r.out[:0]
		return
	}
	if now := time.Now(); r.wdl.Sub(now) < writeTimeout-writeDeadlineSlack {
		r.wdl = now.Add(writeTimeout)
		_ = r.conn.SetWriteDeadline(r.wdl)
	}
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
	r.http = append(r.http, func() { go r.doHTTP(id, base, method, path, token, body, timeout) })
	return id
}

// doHTTP makes one request and posts its response (Status 0: none).
func (r *Runner) doHTTP(id client.ReqID, base, method, path, token string, body []byte, timeout time.Duration) {
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
}

func (e *runEnv) After(d time.Duration, tag any) client.TimerID {
	r := (*Runner)(e)
	r.ids++
	id := client.TimerID(r.ids)
	r.timers[id] = struct{}{}
	timers.add(timerEntry{at: timerDue(time.Now(), d), r: r, id: id, tag: tag})
	return id
}

// Cancel forgets the timer: when it fires, the runner ignores it.
func (e *runEnv) Cancel(id client.TimerID) { delete(e.timers, id) }

func (e *runEnv) Record(op check.Op) {
	if e.opts.Recorder != nil {
		e.opts.Recorder.Add(op)
	}
}

// readBufferDefault is the default size of one read.
const readBufferDefault = 4096

// reader reads a connection straight into one buffer. When the client is
// free and none of the reader's events waits in the mailbox, it hands the
// client every whole frame of a read at once, holding the client's lock:
// no hand-off and no copy per frame (a frame's body aliases the buffer;
// the client decodes it while handling the frame and keeps no reference).
// Otherwise (the mailbox goroutine holds the client, writing maybe) it
// posts copies behind the mailbox's events, as it would if it never
// handled any. It never writes: what its frames produce is written by the
// mailbox goroutine (askFlush).
func (r *Runner) reader(gen uint64, conn net.Conn) {
	env := (*runEnv)(r)
	buf := make([]byte, r.opts.ReadBuffer)
	var start, end int // buf[start:end] is read and not yet decoded
	for {
		if start > 0 { // keep the partial frame left, at the front
			end = copy(buf, buf[start:end])
			start = 0
		}
		if end == len(buf) { // one frame larger than the buffer
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := conn.Read(buf[end:])
		end += n
		inline := r.mu.TryLock()
		if inline && r.posted.Load() > 0 {
			r.mu.Unlock()
			inline = false
		}
		if inline && (r.closed || gen != r.connGen) {
			r.mu.Unlock()
			conn.Close()
			return
		}
		for start < end && (!inline || gen == r.connGen) {
			f, used, derr := wire.Decode(buf[start:end])
			if derr == wire.ErrShort {
				break
			}
			if derr != nil {
				err = derr
				break
			}
			start += used
			if inline {
				r.c.Handle(env, client.FrameIn{Frame: f})
				continue
			}
			f.Body = append([]byte(nil), f.Body...)
			r.posted.Add(1)
			if !r.post(connEvent{gen: gen, ev: client.FrameIn{Frame: f}, reader: true}) {
				conn.Close()
				return
			}
		}
		if start == end {
			start, end = 0, 0
		}
		if inline {
			if err != nil && gen == r.connGen {
				conn.Close()
				r.disconnected(env, client.Disconnected{Reason: err.Error()})
			}
			r.askFlush()
			r.noteOnline()
			r.mu.Unlock()
		} else if err != nil {
			conn.Close()
			r.posted.Add(1)
			r.post(connEvent{gen: gen, ev: client.Disconnected{Reason: err.Error()}, reader: true})
		}
		if err != nil {
			conn.Close()
			return
		}
	}
}
