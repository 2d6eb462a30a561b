package hardening

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/wire"
)

// TestHardening starts one cluster, keeps five well-behaved clients (four
// on TCP, one long-poll) exchanging messages, runs every attack at once
// against the same server, and then requires the well-behaved clients to
// have lost nothing: every send acknowledged and stored once, every message
// held by both participants, and check.Check passing on their history.
func TestHardening(t *testing.T) {
	if testing.Short() {
		t.Skip("real sockets, ~20s")
	}
	tc := startCluster(t)
	f := newFleet(t, tc)
	var good []*clientrun.Runner
	for i := 0; i < 5; i++ {
		tr := client.TCP
		if i == 4 {
			tr = client.LongPoll
		}
		good = append(good, f.start(t, fmt.Sprintf("w%d", i), tr))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range good {
		convs := []string{
			wire.PairConvID(fmt.Sprintf("w%d", i), fmt.Sprintf("w%d", (i+1)%5), "k"),
			wire.PairConvID(fmt.Sprintf("w%d", (i+2)%5), fmt.Sprintf("w%d", i), "k"),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(150 * time.Millisecond): // ~7/s, under the 20/s limit
				}
				f.send(r, convs[n%2], fmt.Sprintf("m%d", n))
			}
		}()
	}

	t.Run("attacks", func(t *testing.T) {
		t.Run("oversized-frame", func(t *testing.T) { t.Parallel(); oversizedFrame(t, tc) })
		t.Run("garbage-bytes", func(t *testing.T) { t.Parallel(); garbageBytes(t, tc) })
		t.Run("slowloris-http", func(t *testing.T) { t.Parallel(); slowloris(t, tc) })
		t.Run("never-reads-pushes", func(t *testing.T) { t.Parallel(); neverReadsPushes(t, tc, f) })
		t.Run("never-reads-responses", func(t *testing.T) { t.Parallel(); neverReadsResponses(t, tc) })
		t.Run("flood", func(t *testing.T) { t.Parallel(); flood(t, tc, f) })
		t.Run("forged-sender", func(t *testing.T) { t.Parallel(); forgedSender(t, tc) })
		t.Run("tokens", func(t *testing.T) { t.Parallel(); tokens(t, tc) })
		t.Run("connection-storm", func(t *testing.T) { t.Parallel(); connectionStorm(t, tc) })
		t.Run("hostile-strings", func(t *testing.T) { t.Parallel(); hostileStrings(t, tc, f) })
		t.Run("platform-key", func(t *testing.T) { t.Parallel(); platformKey(t, tc) })
	})
	close(stop)
	wg.Wait()
	t.Run("nothing-lost", func(t *testing.T) { f.converge(t) })
}

// A frame announcing more than FrameSizeMax: ERROR TOO_LARGE, then only that
// connection closes (nothing after it can be trusted to be framed right).
func oversizedFrame(t *testing.T, tc *testCluster) {
	c := dialRaw(t, tc.app)
	c.login(token("big", time.Hour), "d")
	var h [wire.HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:4], wire.FrameSizeMax) // total FrameSizeMax+4
	h[4], h[5] = wire.Version, byte(wire.OpSend)
	c.writeBytes(h[:])
	fs, err := c.closedAfter(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if codes := errorCodes(fs); !slices.Contains(codes, wire.ErrorCode_TOO_LARGE) {
		t.Fatalf("got error codes %v before the close, want TOO_LARGE", codes)
	}
}

// Bytes that are not frames: an ERROR, then the connection closes.
func garbageBytes(t *testing.T, tc *testCluster) {
	loginFrame := func(body []byte) []byte {
		b, _ := wire.AppendFrame(nil, wire.Frame{Op: wire.OpLogin, ReqID: 1, Body: body})
		return b
	}
	for _, tt := range []struct {
		name  string
		login bool // log in first
		bytes []byte
		want  wire.ErrorCode
	}{
		{"http-on-the-app-port", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wire.ErrorCode_TOO_LARGE},
		{"bad-version", false, []byte{0, 0, 0, 8, 9, byte(wire.OpLogin), 0, 0, 0, 0, 0, 1}, wire.ErrorCode_BAD_REQUEST},
		{"short-length", false, []byte{0, 0, 0, 1, 1}, wire.ErrorCode_BAD_REQUEST},
		{"unknown-op", true, []byte{0, 0, 0, 8, wire.Version, 250, 0, 0, 0, 0, 0, 1}, wire.ErrorCode_BAD_REQUEST},
		{"login-body-not-protobuf", false, loginFrame([]byte{0xff, 0xff, 0xff}), wire.ErrorCode_BAD_REQUEST},
		{"server-only-op", true, func() []byte {
			b, _ := wire.AppendFrame(nil, wire.Frame{Op: wire.OpPush, ReqID: 3})
			return b
		}(), wire.ErrorCode_BAD_REQUEST},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, tc.app)
			if tt.login {
				c.login(token("garbler", time.Hour), "d-"+tt.name)
			}
			c.writeBytes(tt.bytes)
			fs, err := c.closedAfter(3 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if codes := errorCodes(fs); !slices.Contains(codes, tt.want) {
				t.Fatalf("got error codes %v before the close, want %s", codes, tt.want)
			}
		})
	}
}

// Slowloris on HTTP: headers trickled past ReadHeaderTimeout, a body
// trickled past HTTPBodyReadTimeout, and headers past MaxHeaderBytes are
// each cut off; a parked long-poll of the well-behaved client is not.
func slowloris(t *testing.T, tc *testCluster) {
	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", tc.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "GET /v1/poll HTTP/1.1\r\nHost: x\r\n")
		closed := trickle(c, func(i int) string { return fmt.Sprintf("X-%d: y\r\n", i) }, 20*time.Second)
		took := time.Since(start)
		if !closed || took < live.HTTPReadHeaderTimeout-time.Second || took > live.HTTPReadHeaderTimeout+3*time.Second {
			t.Fatalf("header trickle: closed=%v after %s, want closed after about %s", closed, took, live.HTTPReadHeaderTimeout)
		}
		t.Logf("header trickle cut after %s", took.Round(time.Millisecond))
	})
	t.Run("body", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", tc.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 4096\r\n\r\n", token("w0", time.Hour))
		status := make(chan int, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Logf("body trickle: reading the answer: %v", err)
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
		var got int
		// One byte every 500ms; the answer ends the trickle.
	loop:
		for i := 0; i < 40; i++ {
			select {
			case got = <-status:
				break loop
			case <-time.After(500 * time.Millisecond):
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = io.WriteString(c, "{")
			}
		}
		took := time.Since(start)
		if got != http.StatusBadRequest || took < live.HTTPBodyReadTimeout-time.Second || took > live.HTTPBodyReadTimeout+3*time.Second {
			t.Fatalf("body trickle: got status %d after %s, want 400 after about %s", got, took, live.HTTPBodyReadTimeout)
		}
		t.Logf("body trickle cut after %s with %d", took.Round(time.Millisecond), got)
	})
	t.Run("huge-headers", func(t *testing.T) {
		t.Parallel()
		req, _ := http.NewRequest("GET", "http://"+tc.http+"/v1/poll", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 2*live.HTTPMaxHeaderBytes))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("got status %d, want 431", resp.StatusCode)
		}
	})
}

// trickle writes one piece every 500ms until the server closes the
// connection (true) or limit passes (false).
func trickle(c net.Conn, piece func(int) string, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for i := 0; time.Now().Before(deadline); i++ {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(c, piece(i)); err != nil {
			return true
		}
		// A closed connection shows as EOF or a reset on read.
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return true
		}
		// The server answered (an error status): the close follows.
	}
	return false
}

// A client that never reads its pushes: past PushesPendingMax unacknowledged
// pushes entry closes it as a slow consumer; its messages take the offline
// path and its next (well-behaved) session gets every one of them by sync.
func neverReadsPushes(t *testing.T, tc *testCluster, f *fleet) {
	c := dialRaw(t, tc.app)
	c.login(token("sloth", time.Hour), "d")
	before := tc.entryStats().SlowConsumerCloses
	pusher := f.start(t, "pusher", client.TCP)
	conv := wire.PairConvID("pusher", "sloth", "k")
	const n = testPushesPendingMax + 8 // within one user's send burst
	for i := 0; i < n; i++ {
		if !f.send(pusher, conv, fmt.Sprintf("p%d", i)) {
			t.Fatalf("send %d refused by the client", i)
		}
	}
	waitFor(t, 10*time.Second, "entry closing the slow consumer", func() bool {
		return tc.entryStats().SlowConsumerCloses > before
	})
	if _, err := c.closedAfter(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	sloth := f.start(t, "sloth", client.TCP)
	waitFor(t, 10*time.Second, "sloth's new session holding every message", func() bool {
		return len(held(sloth, conv)) == n
	})
}

// A client that sends requests and never reads the answers: live's
// per-connection write queue (WriteQueueMax frames) fills once the kernel
// buffers do, and the connection is closed as a slow consumer.
func neverReadsResponses(t *testing.T, tc *testCluster) {
	before := tc.metric(t, "zzim_slow_consumer_disconnects_total")
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		// A small receive window so the server's socket buffer fills soon.
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", tc.app)
	if err != nil {
		t.Fatal(err)
	}
	c := &raw{t: t, conn: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	t.Cleanup(func() { nc.Close() })
	c.login(token("hog", time.Hour), "d")
	conv := wire.PairConvID("hog", "nobody", "k")
	body := strings.Repeat("h", 4000)
	for i := uint64(1); i <= 4; i++ {
		c.write(&wire.Send{ConvId: conv, ClientMsgId: fmt.Sprintf("hog-%d", i), Cseq: i, Body: body, AckFloor: 1})
	}
	for i := 0; i < 4; i++ {
		if f, err := c.next(5 * time.Second); err != nil || f.Op != wire.OpSendAck {
			t.Fatalf("hog's send %d: got %s %v (%s), want SEND_ACK", i, f.Op, err, errText(f))
		}
	}
	// Each SYNC answer carries two 4 KB messages; the hog reads none. It
	// paces itself so that most SYNCs stay within entry's PendingMax and
	// get those big answers rather than a small OVERLOADED (the kernel's
	// socket buffers, up to megabytes, must fill before the queue does).
	const per = 20
	var batch []byte
	for i := 0; i < per; i++ {
		c.req++
		fr, _ := wire.EncodeMessage(c.req, &wire.Sync{ConvId: conv, Limit: 2})
		batch, _ = wire.AppendFrame(batch, fr)
	}
	start := time.Now()
	sent := 0
	// unsent is what of the current batch the socket has not taken: a write
	// that times out may have taken part of a frame, and the next write
	// must go on from there or the stream is no longer framed.
	unsent := batch
	for tc.metric(t, "zzim_slow_consumer_disconnects_total") == before {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no slow-consumer disconnect after %d unread SYNCs in %s", sent, time.Since(start))
		}
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := nc.Write(unsent)
		unsent = unsent[n:]
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			break // closed by the server
		}
		// A timeout only means the server read nothing for a second (a
		// loaded machine): keep writing what is left.
		if len(unsent) == 0 {
			unsent = batch
			sent += per
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the slow-consumer metric", func() bool {
		return tc.metric(t, "zzim_slow_consumer_disconnects_total") > before
	})
	t.Logf("write queue full after %d unread SYNCs in %s", sent, time.Since(start).Round(time.Millisecond))
	// What was queued is flushed, then the connection closes.
	if _, err := c.closedAfter(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// A flood past the per-user rate limit. A raw client pipelining 150 sends
// gets about a burst acknowledged, RATE_LIMITED for the first refused one
// and OUT_OF_ORDER after it (go-back-N), keeps its connection, and what is
// stored is a prefix in cseq order. A reference client queueing 120 sends at
// once is limited too, resends, and ends with every one acknowledged (the
// history check covers it).
func flood(t *testing.T, tc *testCluster, f *fleet) {
	t.Run("raw", func(t *testing.T) {
		t.Parallel()
		c := dialRaw(t, tc.app)
		c.login(token("flooder", time.Hour), "d")
		conv := wire.PairConvID("flooder", "nobody", "k")
		const n = 150
		for i := uint64(1); i <= n; i++ {
			c.write(&wire.Send{ConvId: conv, ClientMsgId: fmt.Sprintf("fl-%d", i), Cseq: i, Body: "f", AckFloor: 1})
		}
		counts := map[string]int{}
		acked := map[uint64]bool{}
		for i := 0; i < n; i++ {
			fr, err := c.next(10 * time.Second)
			if err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
			switch fr.Op {
			case wire.OpSendAck:
				var a wire.SendAck
				_ = proto.Unmarshal(fr.Body, &a)
				acked[a.Cseq] = true
				counts["ack"]++
			case wire.OpError:
				counts[errorCodes([]wire.Frame{fr})[0].String()]++
			}
		}
		t.Logf("flood of %d sends: %v", n, counts)
		if counts["RATE_LIMITED"] < 1 || counts["ack"] < logic.SendBurstDefault/2 || counts["ack"] > logic.SendBurstDefault+20 {
			t.Fatalf("got %v, want about %d acks and RATE_LIMITED", counts, logic.SendBurstDefault)
		}
		for i := uint64(1); i <= uint64(counts["ack"]); i++ {
			if !acked[i] {
				t.Fatalf("acked cseqs are not a prefix: %d missing of %d", i, counts["ack"])
			}
		}
		// Limited, not disconnected: the connection still answers.
		c.write(&wire.Heartbeat{})
		if fr, err := c.next(5 * time.Second); err != nil || fr.Op != wire.OpHeartbeat {
			t.Fatalf("heartbeat after the flood: got %s %v, want HEARTBEAT", fr.Op, err)
		}
		var stored []uint64
		for _, m := range tc.dump(t) {
			if m.ConvID == conv {
				stored = append(stored, m.CSeq)
			}
		}
		for i, cs := range stored {
			if cs != uint64(i+1) {
				t.Fatalf("stored cseqs %v, want 1..%d in seq order", stored, len(stored))
			}
		}
	})
	t.Run("reference-client", func(t *testing.T) {
		t.Parallel()
		before := tc.logicRateLimited()
		gush := f.start(t, "gush", client.TCP)
		conv := wire.PairConvID("gush", "w0", "k")
		for i := 0; i < 120; i++ {
			if !f.send(gush, conv, fmt.Sprintf("g%d", i)) {
				t.Fatalf("send %d refused by the client", i)
			}
		}
		waitFor(t, 20*time.Second, "every flooded send acknowledged", func() bool { return unacked(gush) == 0 })
		if tc.logicRateLimited() == before {
			t.Fatalf("120 sends at once were never rate limited")
		}
		var st client.Stats
		gush.Do(func(c *client.Client, _ client.Env) { st = c.Stats() })
		t.Logf("reference client: 120 sends acked after %d go-back-N rounds, %d resends", st.GoBackN, st.Resends)
	})
}

// The sender of a message is the session's user: a SEND naming someone
// else's conversation is FORBIDDEN, and sender_id is ignored.
func forgedSender(t *testing.T, tc *testCluster) {
	c := dialRaw(t, tc.app)
	c.login(token("mallory", time.Hour), "d")
	c.write(&wire.Send{ConvId: wire.PairConvID("w0", "w1", "k"), ClientMsgId: "m-1", Cseq: 1, Body: "as w0", SenderId: "w0", AckFloor: 1})
	fr, err := c.next(5 * time.Second)
	if err != nil || errorCodes([]wire.Frame{fr}) == nil || errorCodes([]wire.Frame{fr})[0] != wire.ErrorCode_FORBIDDEN {
		t.Fatalf("send into w0 and w1's conversation: got %s %v (%s), want ERROR FORBIDDEN", fr.Op, err, errText(fr))
	}
	conv := wire.PairConvID("mallory", "victim", "k")
	c.write(&wire.Send{ConvId: conv, ClientMsgId: "m-1", Cseq: 1, Body: "from victim", SenderId: "victim", AckFloor: 1})
	if fr, err := c.next(5 * time.Second); err != nil || fr.Op != wire.OpSendAck {
		t.Fatalf("send with a forged sender_id: got %s %v (%s), want SEND_ACK", fr.Op, err, errText(fr))
	}
	for _, m := range tc.dump(t) {
		if m.ConvID == conv && m.SenderID != "mallory" {
			t.Fatalf("stored sender %q, want the session's user mallory", m.SenderID)
		}
	}
}

// Expired, forged, missing and malformed tokens, and no login at all: ERROR
// UNAUTHENTICATED and only that connection closes. Over HTTP: 401.
func tokens(t *testing.T, tc *testCluster) {
	for _, tt := range []struct{ name, token string }{
		{"expired", token("w0", -time.Second)},
		{"forged", wire.SignToken([]byte("not-the-secret"), "w0", time.Now().Add(time.Hour))},
		{"missing", ""},
		{"malformed", "w0.1.zz"},
	} {
		t.Run("tcp-"+tt.name, func(t *testing.T) {
			c := dialRaw(t, tc.app)
			c.write(&wire.Login{Token: tt.token, DeviceId: "d"})
			fs, err := c.closedAfter(3 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if codes := errorCodes(fs); len(codes) != 1 || codes[0] != wire.ErrorCode_UNAUTHENTICATED {
				t.Fatalf("got error codes %v, want [UNAUTHENTICATED]", codes)
			}
		})
		t.Run("http-"+tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+tc.http+"/v1/login", strings.NewReader(`{"device_id":"web"}`))
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("got status %d, want 401", resp.StatusCode)
			}
		})
	}
	t.Run("no-login-within-deadline", func(t *testing.T) {
		c := dialRaw(t, tc.app)
		start := time.Now()
		fs, err := c.closedAfter(testLoginDeadline + 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < testLoginDeadline-200*time.Millisecond {
			t.Fatalf("closed after %s, want after the login deadline %s", took, testLoginDeadline)
		}
		if codes := errorCodes(fs); len(codes) != 1 || codes[0] != wire.ErrorCode_UNAUTHENTICATED {
			t.Fatalf("got error codes %v, want [UNAUTHENTICATED]", codes)
		}
	})
}

// A storm of connections for one user on one entry: logins past
// ConnsPerUserMax get ERROR RATE_LIMITED and close; every connection gets
// a definite answer.
func connectionStorm(t *testing.T, tc *testCluster) {
	const n = 40
	before := tc.entryStats().UserConnsRejected
	conns := make([]*raw, n)
	for i := range conns {
		conns[i] = dialRaw(t, tc.app)
	}
	tok := token("storm", time.Hour)
	for i, c := range conns {
		c.write(&wire.Login{Token: tok, DeviceId: fmt.Sprintf("d%d", i)})
	}
	acks, limited := 0, 0
	for i, c := range conns {
		fr, err := c.next(5 * time.Second)
		if err != nil {
			t.Fatalf("conn %d: no answer to LOGIN: %v", i, err)
		}
		switch {
		case fr.Op == wire.OpLoginAck:
			acks++
		case slices.Equal(errorCodes([]wire.Frame{fr}), []wire.ErrorCode{wire.ErrorCode_RATE_LIMITED}):
			limited++
			if _, err := c.closedAfter(3 * time.Second); err != nil {
				t.Fatalf("conn %d after RATE_LIMITED: %v", i, err)
			}
		default:
			t.Fatalf("conn %d: got %s (%s), want LOGIN_ACK or ERROR RATE_LIMITED", i, fr.Op, errText(fr))
		}
	}
	t.Logf("storm of %d logins: %d accepted, %d refused RATE_LIMITED", n, acks, limited)
	if limited == 0 || tc.entryStats().UserConnsRejected-before != uint64(limited) {
		t.Fatalf("got %d refused (entry counted %d), want some", limited, tc.entryStats().UserConnsRejected-before)
	}
}

// Hostile strings end to end: quotes, SQL fragments, NULs, the largest body
// come back unchanged (stored and delivered); an oversized body is
// TOO_LARGE, an invalid UTF-8 body BAD_REQUEST, over TCP and HTTP, and the
// connection stays up.
func hostileStrings(t *testing.T, tc *testCluster, f *fleet) {
	bodies := []string{
		`'`, `"`, "`", `\`, `'); DROP TABLE messages; --`, `" OR "1"="1`, `%s%d%x%n`, "\x00nul\x00",
		"😀 émoji ℌ \u202etxet", "line\r\nbreak", `<script>alert(1)</script>`, `{"json":true}`,
		strings.Repeat("é", wire.MessageBodySizeMax/2), // exactly the largest body
	}
	quoter := f.start(t, "quoter", client.TCP)
	conv := wire.PairConvID("quoter", "w1", "k")
	for i, b := range bodies {
		if !f.send(quoter, conv, b) {
			t.Fatalf("body %d refused by the client", i)
		}
	}
	waitFor(t, 10*time.Second, "the hostile bodies acknowledged", func() bool { return unacked(quoter) == 0 })
	var stored []string
	for _, m := range tc.dump(t) {
		if m.ConvID == conv {
			stored = append(stored, m.Body)
		}
	}
	if !slices.Equal(stored, bodies) {
		t.Fatalf("stored bodies differ from the sent ones:\ngot  %.200q\nwant %.200q", stored, bodies)
	}
	var got []string
	for _, m := range held(quoter, conv) {
		got = append(got, m.Body)
	}
	if !slices.Equal(got, bodies) {
		t.Fatalf("bodies held by the sender differ from the sent ones")
	}

	t.Run("rejected-tcp", func(t *testing.T) {
		c := dialRaw(t, tc.app)
		c.login(token("quoter2", time.Hour), "d")
		cv := wire.PairConvID("quoter2", "nobody", "k")
		c.write(&wire.Send{ConvId: cv, ClientMsgId: "q-1", Cseq: 1, Body: strings.Repeat("x", wire.MessageBodySizeMax+1), AckFloor: 1})
		wantError(t, c, wire.ErrorCode_TOO_LARGE)
		// Invalid UTF-8 cannot be marshalled by protobuf: build the body by hand.
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, cv)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, "q-1")
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte("bad \xc3\x28 utf8"))
		fr, _ := wire.AppendFrame(nil, wire.Frame{Op: wire.OpSend, ReqID: 99, Body: b})
		c.writeBytes(fr)
		wantError(t, c, wire.ErrorCode_BAD_REQUEST)
		c.write(&wire.Heartbeat{})
		if fr, err := c.next(5 * time.Second); err != nil || fr.Op != wire.OpHeartbeat {
			t.Fatalf("after rejected bodies: got %s %v, want HEARTBEAT on the same connection", fr.Op, err)
		}
		for _, m := range tc.dump(t) {
			if m.ConvID == cv {
				t.Fatalf("a rejected body was stored: %.40q", m.Body)
			}
		}
	})
	t.Run("rejected-http", func(t *testing.T) {
		tok := token("webq", time.Hour)
		req, _ := http.NewRequest("POST", "http://"+tc.http+"/v1/login", strings.NewReader(`{"device_id":"web"}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("login over HTTP: got %d, want 200", resp.StatusCode)
		}
		for _, tt := range []struct {
			name, body string
			want       int
		}{
			{"invalid-utf8", "{\"conv_id\":\"p:webq:nobody:k\",\"client_msg_id\":\"h-1\",\"cseq\":\"1\",\"body\":\"\xc3\x28\"}", http.StatusBadRequest},
			{"lone-surrogate", `{"conv_id":"p:webq:nobody:k","client_msg_id":"h-1","cseq":"1","body":"\ud800"}`, http.StatusBadRequest},
			{"too-large", `{"conv_id":"p:webq:nobody:k","client_msg_id":"h-1","cseq":"1","body":"` + strings.Repeat("x", wire.MessageBodySizeMax+1) + `"}`, http.StatusRequestEntityTooLarge},
			{"over-the-body-limit", strings.Repeat(" ", live.HTTPBodySizeMax+1), http.StatusRequestEntityTooLarge},
		} {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest("POST", "http://"+tc.http+"/v1/send", strings.NewReader(tt.body))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.want || !bytes.Contains(b, []byte(`"code"`)) {
					t.Fatalf("got %d %.120s, want %d with an error code", resp.StatusCode, b, tt.want)
				}
			})
		}
	})
}

func wantError(t *testing.T, c *raw, code wire.ErrorCode) {
	t.Helper()
	fr, err := c.next(5 * time.Second)
	if err != nil || !slices.Equal(errorCodes([]wire.Frame{fr}), []wire.ErrorCode{code}) {
		t.Fatalf("got %s %v (%s), want ERROR %s", fr.Op, err, errText(fr), code)
	}
}

// The platform API answers only its own key: a user's token is not enough.
func platformKey(t *testing.T, tc *testCluster) {
	notice := `{"notice_id":"n1","user_id":"platformuser","kind":"order","body":"paid"}`
	for _, tt := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"no-key", nil, http.StatusUnauthorized},
		{"wrong-key", map[string]string{"X-Platform-Key": "guess"}, http.StatusUnauthorized},
		{"user-token", map[string]string{"Authorization": "Bearer " + token("w0", time.Hour)}, http.StatusUnauthorized},
		{"key", map[string]string{"X-Platform-Key": "platform-key"}, http.StatusAccepted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+tc.http+"/v1/platform/notice", strings.NewReader(notice))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("got status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}
