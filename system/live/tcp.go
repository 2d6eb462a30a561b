package live

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
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

type appConn struct {
	id     node.ConnID
	conn   net.Conn
	host   *Host
	mu     sync.Mutex
	out    chan wire.Frame
	closed bool
	reason string
}

// conns is the process's table of app connections.
type conns struct {
	proc *Process
	mu   sync.Mutex
	m    map[node.ConnID]*appConn
	open atomic.Int64
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
	select {
	case c.out <- f:
		c.mu.Unlock()
		cs.proc.metrics.frameOut(f.Op)
	default:
		c.mu.Unlock()
		cs.proc.metrics.slowConsumer()
		cs.close(id, "slow consumer: write queue full")
		// Its writer is blocked on a peer that does not read: what is
		// queued will never be flushed, so cut the connection now.
		_ = c.conn.Close()
	}
}

// close flushes what is queued, then closes. Idempotent.
func (cs *conns) close(id node.ConnID, reason string) {
	c := cs.get(id)
	if c == nil {
		return
	}
	c.mu.Lock()
	if !c.closed {
		c.closed, c.reason = true, reason
		close(c.out)
	}
	c.mu.Unlock()
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
		c := &appConn{id: node.ConnID(p.connIDs.Add(1)), conn: nc, host: h, out: make(chan wire.Frame, WriteQueueMax)}
		p.conns.mu.Lock()
		p.conns.m[c.id] = c
		p.conns.mu.Unlock()
		p.conns.open.Add(1)
		p.metrics.connections(1)
		if !h.post(node.ClientConnect{Conn: c.id, Remote: nc.RemoteAddr().String()}) {
			nc.Close()
			continue
		}
		go p.appWriter(c)
		go p.appReader(c)
	}
}

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

func (p *Process) appWriter(c *appConn) {
	w := bufio.NewWriterSize(c.conn, appWriteBuffer)
	var buf []byte
	var err error
	for f := range c.out {
		buf, _ = wire.AppendFrame(buf[:0], f)
		if w.Available() < len(buf) {
			// This write may reach the socket: bound how long it may block.
			_ = c.conn.SetWriteDeadline(time.Now().Add(appWriteTimeout))
		}
		if _, err = w.Write(buf); err != nil {
			break
		}
		// Coalesce: flush only when nothing else is waiting.
		if len(c.out) == 0 {
			_ = c.conn.SetWriteDeadline(time.Now().Add(appWriteTimeout))
			if err = w.Flush(); err != nil {
				break
			}
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The peer read nothing for appWriteTimeout: a slow consumer too.
		p.metrics.slowConsumer()
	}
	if err == nil {
		_ = w.Flush()
	}
	_ = c.conn.Close()
	// Stop further writes and end the drain below (a writer that failed
	// would otherwise wait forever for a close nobody can find).
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.out)
	}
	c.mu.Unlock()
	p.conns.mu.Lock()
	delete(p.conns.m, c.id)
	p.conns.mu.Unlock()
	p.conns.open.Add(-1)
	p.metrics.connections(-1)
	for range c.out {
	}
}
