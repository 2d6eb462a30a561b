package live

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// checkFor polls cond every 10ms until it holds or total passes (nats-server's checkFor).
func checkFor(t *testing.T, total time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(total)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", total, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func quietProcess(internal map[node.Addr]string) *Process {
	return NewProcess(Config{
		Topology: map[node.Role]int{node.RoleLogic: 1, node.RoleDas: 1, node.RoleEntry: 1},
		Internal: internal,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, Deps{})
}

// pinger sends a StoreRequest to das-0 every tick and counts the replies.
type pinger struct {
	replies *atomic.Int64
	next    uint64
}

type tick struct{}

func (p *pinger) Start(env node.Env) { env.After(10*time.Millisecond, tick{}) }
func (p *pinger) Handle(env node.Env, ev node.Event) {
	switch e := ev.(type) {
	case node.Timer:
		p.next++
		env.Send(node.Addr{Role: node.RoleDas}, &wire.StoreRequest{ReqId: p.next, ReplyTo: env.Self().String()})
		env.After(10*time.Millisecond, tick{})
	case node.Recv:
		if _, ok := e.Msg.(*wire.StoreReply); ok {
			p.replies.Add(1)
		}
	}
}

// echo answers every StoreRequest with a StoreReply of the same req_id.
type echo struct{}

func (echo) Start(node.Env) {}
func (echo) Handle(env node.Env, ev node.Event) {
	if r, ok := ev.(node.Recv); ok {
		if req, ok := r.Msg.(*wire.StoreRequest); ok {
			env.Send(r.From, &wire.StoreReply{ReqId: req.ReqId})
		}
	}
}

// A node killed (no goodbye) and restarted in another process is reached
// again over the internal TCP links in both directions: the sender's link
// notices the close, redials with backoff, and the restarted node's new
// incarnation dials back.
func TestKilledNodeLinksRecover(t *testing.T) {
	logicAddr, dasAddr := node.Addr{Role: node.RoleLogic}, node.Addr{Role: node.RoleDas}
	internal := map[node.Addr]string{logicAddr: freeAddr(t), dasAddr: freeAddr(t)}
	front, back := quietProcess(internal), quietProcess(internal)
	defer front.Shutdown(context.Background(), 0)
	defer back.Shutdown(context.Background(), 0)
	var replies atomic.Int64
	if err := back.Start(NodeSpec{Addr: dasAddr, New: func() node.Node { return echo{} }}); err != nil {
		t.Fatal(err)
	}
	if err := front.Start(NodeSpec{Addr: logicAddr, New: func() node.Node { return &pinger{replies: &replies} }}); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, "replies before the kill", func() bool { return replies.Load() >= 5 })

	back.Kill(dasAddr)
	time.Sleep(200 * time.Millisecond) // the link notices; pings go nowhere meanwhile
	before := replies.Load()
	time.Sleep(100 * time.Millisecond)
	if got := replies.Load(); got != before {
		t.Fatalf("replies while das is dead: got %d more, want 0", got-before)
	}
	if err := back.Restart(dasAddr); err != nil {
		t.Fatalf("restart: %v", err)
	}
	checkFor(t, 10*time.Second, "replies after the restart", func() bool { return replies.Load() >= before+5 })
}

// appNode echoes every app frame back to its connection, and on a frame
// with reqID floodReqID writes floodFrames large frames to it.
type appNode struct {
	disconnects *atomic.Int64
}

const (
	floodReqID  = 7
	floodFrames = 4 * WriteQueueMax
)

func (appNode) Start(node.Env) {}
func (n appNode) Handle(env node.Env, ev node.Event) {
	switch e := ev.(type) {
	case node.ClientFrame:
		if e.Frame.ReqID == floodReqID {
			body := make([]byte, 32<<10)
			for i := 0; i < floodFrames; i++ {
				env.ToClient(e.Conn, wire.Frame{Op: wire.OpPush, Body: body})
			}
			return
		}
		env.ToClient(e.Conn, e.Frame)
	case node.ClientDisconnect:
		n.disconnects.Add(1)
	}
}

func startApp(t *testing.T) (*Process, string, *atomic.Int64) {
	t.Helper()
	p := quietProcess(nil)
	t.Cleanup(func() { p.Shutdown(context.Background(), 0) })
	var disconnects atomic.Int64
	a := node.Addr{Role: node.RoleEntry}
	if err := p.Start(NodeSpec{Addr: a, New: func() node.Node { return appNode{disconnects: &disconnects} }, AppListen: "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	return p, p.AppAddr(a), &disconnects
}

func writeFrame(t *testing.T, c net.Conn, f wire.Frame) {
	t.Helper()
	buf, err := wire.AppendFrame(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(buf); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// roundTrip writes a HEARTBEAT with reqID and reads the echo.
func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, reqID uint32) {
	t.Helper()
	writeFrame(t, c, wire.Frame{Op: wire.OpHeartbeat, ReqID: reqID})
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := readFrame(r)
	if err != nil || f.Op != wire.OpHeartbeat || f.ReqID != reqID {
		t.Fatalf("echo: got %v %v, want HEARTBEAT reqID %d", f, err, reqID)
	}
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// A client that stops reading is cut off as a slow consumer (its write
// queue filled), the node hears it disconnect, and other connections are
// served as before.
func TestSlowConsumerDisconnected(t *testing.T) {
	p, addr, disconnects := startApp(t)
	slow, _ := dial(t, addr)
	other, otherR := dial(t, addr)
	roundTrip(t, other, otherR, 1)
	writeFrame(t, slow, wire.Frame{Op: wire.OpHeartbeat, ReqID: floodReqID}) // and never read
	checkFor(t, 10*time.Second, "the slow consumer disconnected", func() bool { return disconnects.Load() == 1 })
	if got := counterValue(t, p, "zzim_slow_consumer_disconnects_total"); got != 1 {
		t.Fatalf("slow consumer disconnects: got %g, want 1", got)
	}
	// The slow connection is really closed: reading drains what the
	// kernel had buffered, then ends.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := io.Copy(io.Discard, slow); err == nil && n >= int64(floodFrames)*(32<<10) {
		t.Fatalf("slow consumer: read all %d bytes, want the connection cut before", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow consumer: connection still open after 10s")
	}
	roundTrip(t, other, otherR, 2)
}

// A bad frame gets an ERROR and closes only its own connection.
func TestBadFrameClosesOnlyItsConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
		code wire.ErrorCode
	}{
		{"oversized", binary.BigEndian.AppendUint32(nil, wire.FrameSizeMax+1), wire.ErrorCode_TOO_LARGE},
		{"short", append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3), wire.ErrorCode_BAD_REQUEST},
		{"internal-op", func() []byte {
			f, _ := wire.EncodeMessage(0, &wire.StoreRequest{ReqId: 1})
			b, _ := wire.AppendFrame(nil, f)
			return b
		}(), wire.ErrorCode_BAD_REQUEST},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr, disconnects := startApp(t)
			bad, badR := dial(t, addr)
			good, goodR := dial(t, addr)
			roundTrip(t, good, goodR, 1)
			if _, err := bad.Write(tc.raw); err != nil {
				t.Fatal(err)
			}
			_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
			f, err := readFrame(badR)
			if err != nil || f.Op != wire.OpError {
				t.Fatalf("bad frame: got %v %v, want ERROR", f, err)
			}
			m, err := wire.DecodeBody(f)
			if e, ok := m.(*wire.Error); err != nil || !ok || e.Code != tc.code {
				t.Fatalf("bad frame: got %v %v, want ERROR %s", m, err, tc.code)
			}
			if _, err := readFrame(badR); err == nil {
				t.Fatalf("bad frame: connection still open")
			}
			checkFor(t, 5*time.Second, "the bad connection's disconnect", func() bool { return disconnects.Load() == 1 })
			roundTrip(t, good, goodR, 2)
			if got := disconnects.Load(); got != 1 {
				t.Fatalf("disconnects: got %d, want 1", got)
			}
		})
	}
}

func counterValue(t *testing.T, p *Process, name string) float64 {
	t.Helper()
	mfs, err := p.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var v float64
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue()
			}
			return v
		}
	}
	return 0
}
