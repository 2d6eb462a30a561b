package live

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
	"google.golang.org/protobuf/proto"
)

// Internal link bounds.
const (
	// LinkQueueMax bounds the frames waiting on one outgoing link; a Send that
	// finds it full is reported to the sender as LinkDown (the message is lost
	// and the sender's timeout resends it elsewhere).
	LinkQueueMax     = 8192
	linkDialTimeout  = time.Second
	linkBackoffMin   = 50 * time.Millisecond
	linkBackoffMax   = 2 * time.Second
	linkHelloTimeout = 5 * time.Second
	linkWriteBuffer  = 64 << 10
	linkReadBuffer   = 64 << 10
)

// links carries internal messages. Between nodes of one process a message is
// handed over directly (no encoding: services never modify received
// messages); to other processes it goes over one persistent TCP connection
// per (sender, receiver) pair, framed like app traffic.
type links struct {
	proc  *Process
	mu    sync.Mutex
	peers map[[2]node.Addr]*peerLink
}

func (l *links) send(from, to node.Addr, m node.Message) bool {
	if h := l.proc.host(to); h != nil {
		if h.stopped.Load() {
			return false
		}
		select {
		case h.mailbox <- node.Recv{From: from, Msg: m}:
			l.proc.metrics.internalOut(to.Role, "local")
			return true
		default:
			return false
		}
	}
	target := l.proc.cfg.Internal[to]
	if target == "" {
		return false
	}
	pl := l.peer(from, to, target)
	if !pl.up.Load() {
		return false
	}
	f, err := wire.EncodeMessage(0, m)
	if err != nil {
		l.proc.log.Error("encode internal message", "to", to, "err", err)
		return false
	}
	buf, _ := wire.AppendFrame(nil, f)
	select {
	case pl.queue <- buf:
		l.proc.metrics.internalOut(to.Role, "tcp")
		return true
	default:
		return false
	}
}

func (l *links) peer(from, to node.Addr, target string) *peerLink {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := [2]node.Addr{from, to}
	h := l.proc.host(from)
	// A link belongs to one incarnation of its sender: its goroutine ends
	// when that host stops, so a restarted node gets a new one.
	if pl, ok := l.peers[key]; ok && pl.host == h {
		return pl
	}
	pl := &peerLink{links: l, host: h, from: from, to: to, target: target, queue: make(chan []byte, LinkQueueMax)}
	// The link starts optimistic: until the first dial fails, sends are
	// queued (set here, not in run, so the first send does not race it).
	pl.up.Store(true)
	l.peers[key] = pl
	go pl.run()
	return pl
}

type peerLink struct {
	links    *links
	host     *Host
	from, to node.Addr
	target   string
	queue    chan []byte
	up       atomic.Bool
}

// run dials, says hello, and drains the queue with coalesced flushes until
// the sender's host stops; it redials with backoff after every failure.
func (pl *peerLink) run() {
	h := pl.host
	if h == nil {
		return
	}
	backoff := linkBackoffMin
	for !h.stopped.Load() {
		conn, err := net.DialTimeout("tcp", pl.target, linkDialTimeout)
		if err != nil {
			if pl.up.Swap(false) {
				h.post(node.LinkDown{Peer: pl.to})
			}
			pl.drain()
			time.Sleep(backoff + time.Duration(rand.Int64N(int64(backoff))))
			backoff = min(backoff*2, linkBackoffMax)
			continue
		}
		backoff = linkBackoffMin
		if err := pl.serve(h, conn); err != nil && !h.stopped.Load() {
			pl.links.proc.log.Debug("internal link down", "from", pl.from, "to", pl.to, "err", err)
		}
		_ = conn.Close()
		if pl.up.Swap(false) {
			h.post(node.LinkDown{Peer: pl.to})
		}
		pl.drain()
	}
}

func (pl *peerLink) drain() {
	for {
		select {
		case <-pl.queue:
		default:
			return
		}
	}
}

func (pl *peerLink) serve(h *Host, conn net.Conn) error {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	hello, _ := wire.EncodeMessage(0, &wire.LinkHello{From: pl.from.String(), Incarnation: uint64(h.inc)})
	helloBuf, _ := wire.AppendFrame(nil, hello)
	if _, err := conn.Write(helloBuf); err != nil {
		return err
	}
	if !pl.up.Swap(true) {
		h.post(node.LinkUp{Peer: pl.to})
	}
	// The remote never writes on this connection: a read returns only when it closes.
	closed := make(chan struct{})
	go func() {
		var b [1]byte
		_, _ = conn.Read(b[:])
		close(closed)
	}()
	w := bufio.NewWriterSize(conn, linkWriteBuffer)
	for {
		select {
		case buf := <-pl.queue:
			if _, err := w.Write(buf); err != nil {
				return err
			}
			if len(pl.queue) == 0 {
				if err := w.Flush(); err != nil {
					return err
				}
			}
		case <-closed:
			return errors.New("closed by peer")
		case <-h.done:
			return nil
		}
	}
}

// listenInternal accepts internal links for host h.
func (p *Process) listenInternal(h *Host, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go p.serveInternal(h, conn)
	}
}

func (p *Process) serveInternal(h *Host, conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReaderSize(conn, linkReadBuffer)
	_ = conn.SetReadDeadline(time.Now().Add(linkHelloTimeout))
	f, err := readFrame(r)
	if err != nil || f.Op != wire.OpLinkHello {
		p.log.Warn("internal link without hello", "remote", conn.RemoteAddr(), "err", err)
		return
	}
	var hello wire.LinkHello
	if err := proto.Unmarshal(f.Body, &hello); err != nil {
		return
	}
	from, err := node.ParseAddr(hello.From)
	if err != nil {
		p.log.Warn("internal link hello", "err", err)
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	go func() { <-h.done; conn.Close() }()
	for {
		f, err := readFrame(r)
		if err != nil {
			return
		}
		m, err := wire.DecodeBody(f)
		if err != nil || f.Op.IsApp() {
			p.log.Warn("bad internal frame", "from", from, "op", f.Op, "err", err)
			return
		}
		p.metrics.internalIn(h.addr.Role)
		if !h.post(node.Recv{From: from, Msg: m}) {
			return
		}
	}
}
