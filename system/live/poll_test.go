package live

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// assemble gives back the frames of a stream however reads cut it.
func TestAssembleAnyCut(t *testing.T) {
	var stream []byte
	var want []wire.Frame
	for i := range 50 {
		f := wire.Frame{Op: wire.OpSend, ReqID: uint32(i + 1), Body: bytes.Repeat([]byte{byte(i)}, i*37%300)}
		want = append(want, f)
		var err error
		if stream, err = wire.AppendFrame(stream, f); err != nil {
			t.Fatal(err)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var got []wire.Frame
		var partial []byte
		buf := make([]byte, 0, len(stream))
		for rest := stream; len(rest) > 0; {
			n := 1 + rnd.IntN(min(len(rest), []int{3, 20, 700}[round%3]))
			// The caller reuses its buffer: frames must not alias it.
			buf = append(buf[:0], rest[:n]...)
			rest = rest[n:]
			var err error
			partial, err = assemble(partial, buf, func(f wire.Frame) bool { got = append(got, f); return true })
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for i := range buf {
				buf[i] = 0xee
			}
		}
		if partial != nil {
			t.Fatalf("round %d: %d bytes left over, want none", round, len(partial))
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: got %d frames, want %d", round, len(got), len(want))
		}
		for i := range want {
			if got[i].Op != want[i].Op || got[i].ReqID != want[i].ReqID || !bytes.Equal(got[i].Body, want[i].Body) {
				t.Fatalf("round %d frame %d: got %v, want %v", round, i, got[i], want[i])
			}
		}
	}
}

func TestAssembleRefuses(t *testing.T) {
	ok, _ := wire.AppendFrame(nil, wire.Frame{Op: wire.OpHeartbeat, ReqID: 1})
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"oversized", binary.BigEndian.AppendUint32(nil, wire.FrameSizeMax), wire.ErrOversized},
		{"short", append(binary.BigEndian.AppendUint32(nil, 3), 1, 2, 3), wire.ErrGarbage},
		{"oversized after a frame", binary.BigEndian.AppendUint32(append([]byte(nil), ok...), wire.FrameSizeMax), wire.ErrOversized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whole, and a byte at a time (the prefix split over reads).
			for _, step := range []int{len(tc.data), 1} {
				var partial []byte
				var err error
				frames := 0
				for i := 0; i < len(tc.data) && err == nil; i += step {
					partial, err = assemble(partial, tc.data[i:min(i+step, len(tc.data))], func(wire.Frame) bool { frames++; return true })
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("step %d: got %v, want %v", step, err, tc.want)
				}
				if wantFrames := len(tc.data) / len(ok); frames != wantFrames {
					t.Fatalf("step %d: %d frames before the error, want %d", step, frames, wantFrames)
				}
			}
		})
	}
	// emit returning false stops at once.
	two := append(append([]byte(nil), ok...), ok...)
	n := 0
	rest, err := assemble(nil, two, func(wire.Frame) bool { n++; return false })
	if n != 1 || rest != nil || err != nil {
		t.Fatalf("stop: got %d frames, %d left, %v; want 1, 0, nil", n, len(rest), err)
	}
}

// Idle app connections hold no goroutine each, frames cut anywhere over
// time still arrive whole, and a client that leaves is heard once.
func TestIdleConnectionsHoldNoGoroutine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("app connections are polled with epoll on linux only")
	}
	_, addr, disconnects := startApp(t)
	const n = 200
	before := runtime.NumGoroutine()
	conns := make([]*testConn, n)
	for i := range conns {
		c, r := dial(t, addr)
		conns[i] = &testConn{c, r}
		roundTrip(t, c, r, uint32(100+i)) // not floodReqID
	}
	time.Sleep(100 * time.Millisecond) // writers that flushed the echoes exit
	if grown := runtime.NumGoroutine() - before; grown > n/10 {
		t.Fatalf("goroutines: %d more with %d idle connections, want at most %d", grown, n, n/10)
	}
	// A frame written a byte at a time still arrives whole.
	c := conns[0]
	raw, _ := wire.AppendFrame(nil, wire.Frame{Op: wire.OpHeartbeat, ReqID: 4242, Body: []byte("split")})
	for i := range raw {
		if _, err := c.c.Write(raw[i : i+1]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := readFrame(c.r); err != nil || f.ReqID != 4242 || string(f.Body) != "split" {
		t.Fatalf("split frame echo: got %v %v", f, err)
	}
	for _, c := range conns[:n/2] {
		c.c.Close()
	}
	checkFor(t, 5*time.Second, "disconnects of the closed half", func() bool { return disconnects.Load() == n/2 })
	time.Sleep(100 * time.Millisecond)
	if got := disconnects.Load(); got != n/2 {
		t.Fatalf("disconnects: got %d, want %d (once each)", got, n/2)
	}
	for i, c := range conns[n/2:] {
		roundTrip(t, c.c, c.r, uint32(10000+i))
	}
}

type testConn struct {
	c net.Conn
	r *bufio.Reader
}
