package live

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// App connection bounds.
const (
	// WriteQueueMax bounds the frames waiting to be written to one app
	// connection. A client that does not read fills it and is disconnected
	// as a slow consumer (nats-server's rule): its unacknowledged pushes then
	// take the offline path in entry.
	WriteQueueMax = 1024
	// appReadBuffer is small on purpose: most app connections are idle, and
	// memory per connection is what limits how many one entry holds.
	appReadBuffer  = 512
	appWriteBuffer = 4096
	// appWriteTimeout bounds one flush to an app connection: a peer that
	// stops reading cannot hold its writer (and the frames queued behind
	// it) forever.
	appWriteTimeout = 10 * time.Second
)

// appConn is one app connection. Idle connections are what an entry holds
// by the ten thousand, so an idle one costs only this struct and the
// socket: a poller reads it when it is readable (poll_linux.go; a reader
// goroutine with a small buffer where there is no epoll), the write queue
// is a slice allocated only while frames wait, and the writer goroutine
// exists only while there is something to write (measured: 20 KB
// per connection with a preallocated 1024-frame channel and a resident
// writer, 9.9 KB with a reader goroutine and a 512-byte buffer).
type appConn struct {
	id      node.ConnID
	conn    net.Conn
	host    *Host
	rc      syscall.RawConn // the poller's reads and the host's direct writes; nil if the conn has no descriptor
	poller  *poller
	mu      sync.Mutex
	queue   []wire.Frame
	writing bool // a writer (the host's round flush or a goroutine) owns the socket's write side
	// due: frames wait for the end of the host's round (Host.flushWrites),
	// and c is in that host's due list.
	due      bool
	closed   bool // no more frames accepted; the writer closes after flushing
	done     bool // finalized: removed from the table
	readDone bool // the poller posted ClientDisconnect (it reads no more)
	// partial: the poller holds a frame of c begun by earlier reads (in
	// its own map: rare, and 24 bytes less on every idle connection).
	// Poller goroutine only.
	partial bool
	reason  string
}

// readEnded reports whether the poller stopped reading c.
func (c *appConn) readEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readDone
}

// conns is the process's table of app connections.
type conns struct {
	proc *Process
	mu   sync.Mutex
	m    map[node.ConnID]*appConn
	open atomic.Int64

	pollOnce sync.Once
	pollers  []*poller
}

func (cs *conns) get(id node.ConnID) *appConn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.m[id]
}

func (cs *conns) write(id node.ConnID, f wire.Frame) {
	c := cs.get(id)
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= WriteQueueMax {
		c.closed, c.reason = true, "slow consumer: write queue full"
		c.queue = nil
		c.mu.Unlock()
		cs.proc.metrics.slowConsumer()
		// A writer may be blocked on a peer that does not read: what is
		// queued will never be flushed, so cut the connection now.
		_ = c.conn.Close()
		cs.proc.finalizeIfIdle(c)
		return
	}
	c.queue = append(c.queue, f)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	cs.proc.metrics.frameOut(f.Op)
	if start {
		go cs.proc.appWriter(c, nil)
	}
}

// writeFrom is write for a frame of host h, the connection's own, on h's
// goroutine. It starts no writer: the host writes every connection it
// queued frames for once, at the end of its round (flushWrites), straight
// from its goroutine with a non-blocking write. A goroutine started per
// written frame cost a goroutine's creation, scheduling and exit for each
// of the two frames entry writes per message; and frames of one round to
// one connection now share a write.
func (cs *conns) writeFrom(h *Host, id node.ConnID, f wire.Frame) {
	c := cs.get(id)
	if c == nil {
		return
	}
	if c.rc == nil || c.host != h {
		cs.write(id, f)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= WriteQueueMax {
		c.mu.Unlock()
		cs.write(id, f) // the slow-consumer cut, as write does it
		return
	}
	c.queue = append(c.queue, f)
	// With a writer goroutine running (a flush that found the socket
	// full, or a close), the frame waits in the queue that it drains.
	if !c.writing && !c.due {
		c.due = true
		h.due = append(h.due, c)
	}
	c.mu.Unlock()
	cs.proc.metrics.frameOut(f.Op)
}

// flushDue writes what c's host queued for it this round: one
// non-blocking write of every frame waiting. What the socket does not take
// at once (the peer reads slowly) goes to a writer goroutine, which waits
// for room under appWriteTimeout; the host never blocks on a peer.
func (p *Process) flushDue(h *Host, c *appConn) {
	c.mu.Lock()
	c.due = false
	if c.writing || len(c.queue) == 0 {
		// A writer goroutine owns the socket (it drains the queue), or the
		// queue was dropped (slow consumer).
		c.mu.Unlock()
		return
	}
	buf := h.wbuf[:0]
	for _, f := range c.queue {
		buf, _ = wire.AppendFrame(buf, f)
	}
	c.queue = recycleQueue(c.queue)
	c.writing = true
	c.mu.Unlock()
	if cap(buf) <= hostWriteBufferMax {
		h.wbuf = buf
	} else {
		h.wbuf = nil
	}
	n, err := writeNonBlocking(c.rc, buf)
	switch {
	case err != nil:
		p.finalize(c)
		return
	case n < len(buf):
		go p.appWriter(c, append([]byte(nil), buf[n:]...))
		return
	}
	c.mu.Lock()
	if len(c.queue) > 0 || c.closed {
		// Frames queued from elsewhere meanwhile (an ERROR for a bad frame),
		// or a close that waits for the flush: a writer finishes the job.
		c.mu.Unlock()
		go p.appWriter(c, nil)
		return
	}
	c.writing = false
	c.mu.Unlock()
}

// recycleQueue empties a write queue and keeps its array when it is small:
// an idle connection keeps no large one.
func recycleQueue(q []wire.Frame) []wire.Frame {
	if cap(q) > 8 {
		return nil
	}
	clear(q)
	return q[:0]
}

// hostWriteBufferMax bounds the encoding buffer a host keeps between rounds.
const hostWriteBufferMax = 64 << 10

// close flushes what is queued, then closes. Idempotent.
func (cs *conns) close(id node.ConnID, reason string) {
	c := cs.get(id)
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed, c.reason = true, reason
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go cs.proc.appWriter(c, nil) // flushes what waits, closes
	}
}

// finalizeIfIdle finishes a closed connection that has no writer running
// (the writer finalizes it otherwise).
func (p *Process) finalizeIfIdle(c *appConn) {
	c.mu.Lock()
	idle := !c.writing
	if idle {
		c.writing = true // nobody else may start one now
	}
	c.mu.Unlock()
	if idle {
		p.finalize(c)
	}
}

// finalize closes the socket and forgets the connection, once.
func (p *Process) finalize(c *appConn) {
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		return
	}
	c.done, c.closed, c.queue = true, true, nil
	tell := c.poller != nil && !c.readDone
	c.mu.Unlock()
	_ = c.conn.Close() // which takes it out of the poller's epoll set
	p.conns.mu.Lock()
	delete(p.conns.m, c.id)
	p.conns.mu.Unlock()
	p.conns.open.Add(-1)
	p.metrics.connections(-1)
	if tell {
		c.poller.closed(c) // it posts the disconnect after the frames it read
	}
}

// serveApp accepts app connections for an entry host.
func (p *Process) serveApp(h *Host, ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(true)
		}
		c := &appConn{id: node.ConnID(p.connIDs.Add(1)), conn: nc, host: h}
		if sc, ok := nc.(syscall.Conn); ok {
			c.rc, _ = sc.SyscallConn()
		}
		p.pollApp(c)
		p.conns.mu.Lock()
		p.conns.m[c.id] = c
		p.conns.mu.Unlock()
		p.conns.open.Add(1)
		p.metrics.connections(1)
		if !h.post(node.ClientConnect{Conn: c.id, Remote: nc.RemoteAddr().String(), Accepted: time.Now()}) {
			p.finalize(c) // the node stopped
			continue
		}
		if c.poller != nil {
			c.poller.watch(c)
		} else {
			go p.appReader(c)
		}
	}
}

// appReader reads c in a goroutine of its own (no poller: see pollApp).
func (p *Process) appReader(c *appConn) {
	r := bufio.NewReaderSize(c.conn, appReadBuffer)
	reason := "client closed"
	for {
		f, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				reason = "bad frame: " + err.Error()
				p.rejectFrame(c, err)
			}
			break
		}
		if !f.Op.IsApp() {
			reason = "internal op on app connection"
			p.rejectFrame(c, wire.ErrUnknownOp)
			break
		}
		p.metrics.frameIn(f.Op)
		if !c.host.post(node.ClientFrame{Conn: c.id, Frame: f}) {
			break
		}
	}
	p.conns.close(c.id, reason)
	c.host.post(node.ClientDisconnect{Conn: c.id, Reason: reason})
}

// rejectFrame answers a frame that cannot be parsed with an ERROR, then the
// connection closes: after a framing error nothing that follows can be trusted.
func (p *Process) rejectFrame(c *appConn, err error) {
	code := wire.ErrorCode_BAD_REQUEST
	if errors.Is(err, wire.ErrOversized) {
		code = wire.ErrorCode_TOO_LARGE
	}
	f, _ := wire.EncodeMessage(0, &wire.Error{Code: code, Message: err.Error()})
	p.conns.write(c.id, f)
}

// writeBuffers recycles the buffers writers encode into: a connection holds
// one only while it writes.
var writeBuffers = sync.Pool{New: func() any { b := make([]byte, 0, appWriteBuffer); return &b }}

// appWriter writes first (the rest of a flush the socket did not take),
// then drains the queue, coalescing every frame waiting into one write,
// and exits when the queue is empty (or finalizes a closed connection).
func (p *Process) appWriter(c *appConn, first []byte) {
	if len(first) > 0 {
		_ = c.conn.SetWriteDeadline(time.Now().Add(appWriteTimeout))
		if _, err := c.conn.Write(first); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				p.metrics.slowConsumer()
			}
			p.finalize(c)
			return
		}
	}
	bp := writeBuffers.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= 64<<10 {
			*bp = (*bp)[:0]
			writeBuffers.Put(bp)
		}
	}()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			if c.closed {
				c.mu.Unlock()
				p.finalize(c)
				return
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		buf := (*bp)[:0]
		for _, f := range batch {
			buf, _ = wire.AppendFrame(buf, f)
		}
		*bp = buf
		_ = c.conn.SetWriteDeadline(time.Now().Add(appWriteTimeout))
		if _, err := c.conn.Write(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The peer read nothing for appWriteTimeout: a slow consumer too.
				p.metrics.slowConsumer()
			}
			p.finalize(c)
			return
		}
	}
}
