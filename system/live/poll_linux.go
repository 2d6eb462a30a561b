//go:build linux

package live

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Idle app connections cost no goroutine: a few poller goroutines per
// process wait on an epoll set of every app socket and read whichever is
// readable into one buffer per poller (a frame split over reads keeps only
// its own bytes, in a buffer of the frame's size). A goroutine per
// connection blocked in Read cost its stack (4 KiB once it had handled a
// login) and its g on top of a read buffer: 9.9 KB was measured of
// entry RSS per idle connection that way.
//
// A poller waits in Go's own poller, on its epoll descriptor (an epoll set
// is readable while it has ready events): no thread blocks in epoll_wait,
// so a wake-up costs what a goroutine's read wake-up costs (waiting in
// epoll_wait(-1) on a thread of its own cost a thread hand-off per event,
// ~50% more CPU per message in e2e's overload run).
//
// The socket stays a net.Conn for writing and closing (Go's poller runs
// the writer); ours only reads. Reads go through syscall.RawConn, which
// holds the descriptor open for the length of the read, so a connection
// closed meanwhile is an error, never a read from a reused descriptor
// number; events carry the connection id, not the descriptor, for the same
// reason. Closing the socket removes it from the epoll set: finalize tells
// the poller through a pipe, and the poller, which alone posts a
// connection's frames, posts its ClientDisconnect after them.

const (
	// pollReadBuffer is each poller's read buffer: one read takes up to
	// this much from one connection before the next ready one is served.
	// Small for fairness: with 64 KiB a flooding connection put a thousand
	// frames in its node's mailbox between two of another connection's
	// (a storm of 40 logins then reached entry spread out enough for
	// logic's kicks to come back in between: e2e/hardening's
	// connection-storm saw none refused). 4 KiB is still 8 times what a
	// reader goroutine's 512-byte buffer took per read.
	pollReadBuffer = 4 << 10
	// pollersMax bounds the poller goroutines of a process.
	pollersMax = 4
	pollEvents = 256
)

type poller struct {
	proc *Process
	ep   *os.File        // the epoll set, non-blocking, in Go's poller
	eprc syscall.RawConn // epoll_wait and epoll_ctl on ep (which holds it open meanwhile)
	wake [2]int          // a pipe: a byte on wake[1] wakes the poller (key 0)
	buf  []byte
	// partial: frames begun by earlier reads, by connection (appConn.partial).
	partial map[*appConn][]byte

	mu      sync.Mutex
	stopped bool
	ended   []*appConn // closed by the write side; their disconnect is due
}

// pollApp picks c's poller before c is shared (nil without epoll, or
// for a connection without a descriptor: c then gets a reader goroutine).
func (p *Process) pollApp(c *appConn) {
	pls := p.conns.startPollers()
	if len(pls) == 0 {
		return
	}
	if c.rc == nil {
		return
	}
	c.poller = pls[uint64(c.id)%uint64(len(pls))]
}

// watch adds c to the epoll set. If it cannot (c closed meanwhile, the
// process stopping, epoll refusing), reading c ends at once.
func (pl *poller) watch(c *appConn) {
	pl.mu.Lock()
	err := errPollerStopped
	if !pl.stopped {
		err = pl.ctl(c, syscall.EPOLL_CTL_ADD)
	}
	pl.mu.Unlock()
	if err != nil {
		pl.end(c, "epoll: "+err.Error(), nil)
	}
}

var errPollerStopped = errors.New("process stopping")

// ctl adds c to the epoll set or deletes it. Both descriptors are held
// open meanwhile: a closed one is an error, never a reused number.
func (pl *poller) ctl(c *appConn, op int) error {
	var ctlErr error
	err := pl.eprc.Control(func(epfd uintptr) {
		ctlErr = c.rc.Control(func(fd uintptr) {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(uint32(c.id)), Pad: int32(uint32(uint64(c.id) >> 32))}
			if err := syscall.EpollCtl(int(epfd), op, int(fd), &ev); err != nil {
				ctlErr = err
			}
		})
	})
	if err != nil {
		return err
	}
	return ctlErr
}

// startPollers starts the process's pollers on first use; they stop when
// the process does. None if epoll is unavailable.
func (cs *conns) startPollers() []*poller {
	cs.pollOnce.Do(func() {
		n := min(max(runtime.GOMAXPROCS(0), 1), pollersMax)
		for range n {
			pl, err := newPoller(cs.proc)
			if err != nil {
				cs.proc.log.Warn("app connections: no epoll, a reader goroutine per connection", "err", err)
				break
			}
			cs.pollers = append(cs.pollers, pl)
			go pl.run()
			context.AfterFunc(cs.proc.ctx, pl.stop)
		}
	})
	return cs.pollers
}

func newPoller(p *Process) (*poller, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	// Non-blocking, so os.NewFile puts it in Go's poller.
	ep := os.NewFile(uintptr(epfd), "app-epoll")
	eprc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	pl := &poller{proc: p, ep: ep, eprc: eprc, buf: make([]byte, pollReadBuffer), partial: map[*appConn][]byte{}}
	if err := syscall.Pipe2(pl.wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		ep.Close()
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // key 0: connection ids start at 1
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, pl.wake[0], &ev); err != nil {
		pl.closeFDs()
		return nil, err
	}
	return pl, nil
}

func (pl *poller) closeFDs() {
	syscall.Close(pl.wake[0])
	syscall.Close(pl.wake[1])
	pl.ep.Close()
}

// notify wakes the poller (under pl.mu, so never after its descriptors
// closed). A full pipe already holds a wake-up.
func (pl *poller) notify() {
	_, _ = syscall.Write(pl.wake[1], []byte{0})
}

func (pl *poller) stop() {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if !pl.stopped {
		pl.stopped = true
		pl.notify()
	}
}

// closed tells the poller the write side closed c (finalize): it posts
// c's disconnect unless reading had already ended.
func (pl *poller) closed(c *appConn) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.stopped {
		return
	}
	pl.ended = append(pl.ended, c)
	if len(pl.ended) == 1 {
		pl.notify()
	}
}

func (pl *poller) run() {
	events := make([]syscall.EpollEvent, pollEvents)
	for {
		var n int
		var werr error
		err := pl.eprc.Read(func(epfd uintptr) bool {
			for {
				n, werr = epollWaitNow(int(epfd), events)
				if werr != syscall.EINTR {
					return n > 0 || werr != nil // else wait until the set is readable
				}
			}
		})
		if err == nil && werr != nil {
			err = werr
		}
		if err != nil {
			pl.proc.log.Error("app connections: epoll_wait failed; their reads stop", "err", err)
			pl.stop()
			pl.woken()
			return
		}
		for i := range n {
			id := node.ConnID(uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32)
			if id == 0 {
				if pl.woken() {
					return
				}
				continue
			}
			if c := pl.proc.conns.get(id); c != nil && c.poller == pl {
				pl.read(c)
			}
		}
	}
}

// woken drains the wake pipe and posts the disconnects due. It reports
// whether the poller stopped, after closing its descriptors.
func (pl *poller) woken() bool {
	var b [64]byte
	for {
		if n, _ := syscall.Read(pl.wake[0], b[:]); n <= 0 {
			break
		}
	}
	pl.mu.Lock()
	ended := pl.ended
	pl.ended = nil
	stopped := pl.stopped
	if stopped {
		pl.closeFDs()
	}
	pl.mu.Unlock()
	for _, c := range ended {
		c.mu.Lock()
		reason := c.reason
		c.mu.Unlock()
		pl.end(c, reason, nil)
	}
	return stopped
}

// read takes what one read returns from c and posts its frames.
func (pl *poller) read(c *appConn) {
	if c.readEnded() {
		return
	}
	var n int
	var rerr error
	if err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = readNow(int(fd), pl.buf)
			if rerr != syscall.EINTR {
				return true
			}
		}
	}); err != nil {
		// Closed by the write side: finalize's notice follows.
		return
	}
	switch {
	case rerr == syscall.EAGAIN:
		return
	case rerr != nil:
		pl.end(c, "read: "+rerr.Error(), nil)
		return
	case n == 0:
		pl.end(c, "client closed", nil)
		return
	}
	var reject error
	var stop string
	var partial []byte
	if c.partial {
		partial = pl.partial[c]
	}
	partial, err := assemble(partial, pl.buf[:n], func(f wire.Frame) bool {
		if !f.Op.IsApp() {
			stop, reject = "internal op on app connection", wire.ErrUnknownOp
			return false
		}
		pl.proc.metrics.frameIn(f.Op)
		if !c.host.post(node.ClientFrame{Conn: c.id, Frame: f}) {
			stop = "node stopped"
			return false
		}
		return true
	})
	if partial != nil {
		pl.partial[c], c.partial = partial, true
	} else if c.partial {
		delete(pl.partial, c)
		c.partial = false
	}
	if err != nil {
		pl.end(c, "bad frame: "+err.Error(), err)
	} else if stop != "" {
		pl.end(c, stop, reject)
	}
}

// end stops reading c: it leaves the epoll set, an unreadable frame is
// answered with an ERROR, the connection closes after flushing, and its
// node hears the disconnect after every frame read before. Once.
func (pl *poller) end(c *appConn, reason string, reject error) {
	c.mu.Lock()
	if c.readDone {
		c.mu.Unlock()
		return
	}
	c.readDone = true
	c.mu.Unlock()
	if c.partial {
		delete(pl.partial, c)
		c.partial = false
	}
	// A closed descriptor has left the set already; Control then fails
	// without touching a number the kernel may have reused.
	_ = pl.ctl(c, syscall.EPOLL_CTL_DEL)
	if reject != nil {
		pl.proc.rejectFrame(c, reject)
	}
	pl.proc.conns.close(c.id, reason)
	c.host.post(node.ClientDisconnect{Conn: c.id, Reason: reason})
}

// writeNonBlocking writes what the socket takes now: n < len(b) with a nil
// error when it is full.
func writeNonBlocking(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, werr = writeNow(int(fd), b)
			if werr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN {
		return 0, nil
	}
	if werr != nil {
		return 0, werr
	}
	return n, nil
}

// The poller's epoll_wait (timeout 0), its reads and the hosts' writes are
// made on non-blocking descriptors and never wait: they are raw system
// calls, which do not tell the scheduler they may block. Through
// syscall.Read/Write/EpollWait each one entered and left a "syscall" state,
// and the runtime's monitor thread, seeing the process's one P in a system
// call at nearly every look (two socket writes a message, each some
// microseconds of loopback TCP), handed the P to another thread and kept
// checking every 20 µs: measured under `zzim up` at 5,000 msg/s on one core,
// sysmon's sleeps and the thread hand-offs were about 30% of the process's
// CPU (perf), more than the writes' own kernel work.

// epollWaitNow is epoll_wait with a timeout of 0.
func epollWaitNow(epfd int, events []syscall.EpollEvent) (int, error) {
	var p unsafe.Pointer
	if len(events) > 0 {
		p = unsafe.Pointer(&events[0])
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(p), uintptr(len(events)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// readNow is read(2) on a non-blocking descriptor.
func readNow(fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(p), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// writeNow is write(2) on a non-blocking descriptor.
func writeNow(fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(p), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
