package client

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/wire"
)

const testConv = "p:u1:u2:l1"

func tcpConfig() Config {
	return Config{
		User: "u1", Device: "d1", Token: "tok", ClientNum: 3,
		Entries: []string{"e0:7000", "e1:7000", "e2:7000"},
		// Far away unless a test needs them, so they do not interleave.
		SyncIntervalMax:   time.Hour,
		HeartbeatInterval: time.Hour,
	}
}

// peerMsg is a message of u2 in testConv.
func peerMsg(seq uint64) *wire.ChatMessage {
	return &wire.ChatMessage{ConvId: testConv, Seq: seq, SenderId: "u2",
		ClientMsgId: fmt.Sprintf("u2-d9-%d", seq), Cseq: seq, Body: fmt.Sprintf("hello %d", seq)}
}

// connect answers Connected, checks the LOGIN, acknowledges it, answers
// the CONV_LIST and SYNCs a login issues, and returns what the client
// wrote after LOGIN_ACK.
func connect(t *testing.T, c *Client, e *fakeEnv) []written {
	t.Helper()
	c.Handle(e, Connected{})
	ws := e.take(t)
	if len(ws) != 1 || ws[0].op != wire.OpLogin {
		t.Fatalf("after Connected the client wrote %v, want one LOGIN", opNames(ws))
	}
	login := ws[0].msg.(*wire.Login)
	if login.Token != c.cfg.Token || login.DeviceId != c.cfg.Device {
		t.Fatalf("LOGIN {%q, %q}, want {%q, %q}", login.Token, login.DeviceId, c.cfg.Token, c.cfg.Device)
	}
	reply(t, c, e, ws[0].reqID, &wire.LoginAck{UserId: c.cfg.User, SessionId: 9})
	ws = e.take(t)
	for _, w := range ws {
		switch m := w.msg.(type) {
		case *wire.ConvList:
			reply(t, c, e, w.reqID, &wire.ConvListResp{})
		case *wire.Sync:
			reply(t, c, e, w.reqID, &wire.SyncResp{ConvId: m.ConvId, AfterSeq: m.AfterSeq, LastSeq: m.AfterSeq})
		}
	}
	if !c.Online() {
		t.Fatal("not online after LOGIN_ACK")
	}
	return ws
}

func opNames(ws []written) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.op.String())
	}
	return out
}

func startTCP(t *testing.T, cfg Config) (*Client, *fakeEnv) {
	t.Helper()
	c, e := New(cfg), newFakeEnv()
	c.Start(e)
	if len(e.dials) != 1 {
		t.Fatalf("Start dialed %d times, want 1", len(e.dials))
	}
	connect(t, c, e)
	return c, e
}

// sendReqs maps cseq to the reqID of the SEND frame that carried it.
func sendReqs(ws []written) map[uint64]uint32 {
	out := map[uint64]uint32{}
	for _, w := range only(ws, wire.OpSend) {
		out[w.msg.(*wire.Send).Cseq] = w.reqID
	}
	return out
}

func ack(t *testing.T, c *Client, e *fakeEnv, reqID uint32, cseq, seq uint64) {
	t.Helper()
	reply(t, c, e, reqID, &wire.SendAck{ConvId: testConv, ClientMsgId: fmt.Sprintf("u1-d1-%d", cseq), Cseq: cseq, Seq: seq})
}

type floorCseq struct{ cseq, floor uint64 }

func floors(sends []*wire.Send) []floorCseq {
	var out []floorCseq
	for _, s := range sends {
		out = append(out, floorCseq{s.Cseq, s.AckFloor})
	}
	return out
}

func heldSeqs(c *Client, conv string) []uint64 {
	var out []uint64
	for _, m := range c.Held(conv) {
		out = append(out, m.Seq)
	}
	return out
}

func deliverSeqs(e *fakeEnv) []string {
	var out []string
	for _, op := range e.opsOf(check.KindDeliver) {
		out = append(out, fmt.Sprintf("%d/%s", op.Out.Msgs[0].Seq, op.In.Via))
	}
	return out
}

func TestLoginThenPipelinedSends(t *testing.T) {
	cfg := tcpConfig()
	cfg.InflightMax = 2
	c, e := startTCP(t, cfg)
	if logins := e.opsOf(check.KindLogin); len(logins) != 1 || logins[0].Session != 1 {
		t.Fatalf("login ops %+v, want one with session 1", logins)
	}
	for i := 1; i <= 3; i++ {
		id, err := c.Send(e, testConv, fmt.Sprintf("m%d", i))
		if want := fmt.Sprintf("u1-d1-%d", i); err != nil || id != want {
			t.Fatalf("Send %d = %q, %v; want %q, nil", i, id, err, want)
		}
	}
	ws := e.take(t)
	if got, want := floors(sendsOf(ws)), []floorCseq{{1, 1}, {2, 1}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pipelined (cseq, floor) %v, want %v (InflightMax 2)", got, want)
	}
	reqs := sendReqs(ws)
	e.now = e.now.Add(time.Millisecond)
	ack(t, c, e, reqs[1], 1, 1)
	ws = e.take(t)
	if got, want := floors(sendsOf(ws)), []floorCseq{{3, 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the first ack (cseq, floor) %v, want %v", got, want)
	}
	reqs[3] = sendReqs(ws)[3]
	ack(t, c, e, reqs[2], 2, 2)
	ack(t, c, e, reqs[3], 3, 3)
	if c.Acked() != 3 || c.Unacked() != 0 {
		t.Fatalf("acked %d unacked %d, want 3 and 0", c.Acked(), c.Unacked())
	}
	if got := heldSeqs(c, testConv); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("sender holds %v, want its own [1 2 3]", got)
	}
	sends := e.opsOf(check.KindSend)
	if len(sends) != 3 {
		t.Fatalf("%d send ops, want 3", len(sends))
	}
	for i, op := range sends {
		if op.Out.Seq != uint64(i+1) || op.In.CSeq != uint64(i+1) || op.Return == nil || *op.Return <= op.Call {
			t.Errorf("send op %d: %+v, want seq = cseq = %d and return after call", i, op, i+1)
		}
	}
	if n := len(e.opsOf(check.KindDeliver)); n != 0 {
		t.Errorf("%d deliver ops for own messages, want 0", n)
	}
}

func TestReconnectResendsUnackedInOrder(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	for i := 0; i < 3; i++ {
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatal(err)
		}
	}
	reqs := sendReqs(e.take(t))
	ack(t, c, e, reqs[1], 1, 1)
	c.Handle(e, Disconnected{Reason: "reset"})
	if c.Online() {
		t.Fatal("online after Disconnected")
	}
	e.advance(c, BackoffMaxDefault)
	if len(e.dials) != 2 {
		t.Fatalf("%d dials after the backoff, want 2", len(e.dials))
	}
	entries := tcpConfig().Entries
	first := strings.Index(strings.Join(entries, " "), e.dials[0]) / len(entries[0]+" ")
	if want := entries[(first+1)%len(entries)]; e.dials[1] != want {
		t.Fatalf("redialed %s after %s, want the next entry %s", e.dials[1], e.dials[0], want)
	}
	ws := connect(t, c, e)
	if got, want := floors(sendsOf(ws)), []floorCseq{{2, 2}, {3, 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("resent (cseq, floor) %v, want %v", got, want)
	}
	st := c.Stats()
	if st.Resends != 2 || st.Reconnects != 1 || c.Session() != 2 {
		t.Fatalf("resends %d reconnects %d session %d, want 2, 1, 2", st.Resends, st.Reconnects, c.Session())
	}
	if logins := e.opsOf(check.KindLogin); len(logins) != 2 || logins[1].Session != 2 {
		t.Fatalf("login ops %+v, want sessions 1 and 2", logins)
	}
}

func TestSendErrors(t *testing.T) {
	tests := []struct {
		name      string
		errs      map[uint64]wire.ErrorCode // cseq → error answering it
		resent    []floorCseq
		sendError string // error recorded for cseq 1
		// afterAck: written when the first resent one is acknowledged
		// (nil: not checked).
		afterAck []floorCseq
		order    []uint64 // answer order (nil: by cseq)
	}{
		{
			// Refused for load: only the first goes again, then the
			// window widens by one per ack.
			name:     "overloaded then out of order goes back to the first, alone",
			errs:     map[uint64]wire.ErrorCode{1: wire.ErrorCode_OVERLOADED, 2: wire.ErrorCode_OUT_OF_ORDER, 3: wire.ErrorCode_OUT_OF_ORDER},
			resent:   []floorCseq{{1, 1}},
			afterAck: []floorCseq{{2, 2}, {3, 2}},
		},
		{
			name:     "rate limited after an out of order still resends the first alone",
			errs:     map[uint64]wire.ErrorCode{2: wire.ErrorCode_OUT_OF_ORDER, 1: wire.ErrorCode_RATE_LIMITED},
			order:    []uint64{2, 1},
			resent:   []floorCseq{{1, 1}},
			afterAck: []floorCseq{{2, 2}, {3, 2}},
		},
		{
			name:   "out of order alone",
			errs:   map[uint64]wire.ErrorCode{2: wire.ErrorCode_OUT_OF_ORDER},
			resent: []floorCseq{{1, 1}, {2, 1}, {3, 1}},
		},
		{
			name:      "bad request fails definitively and the floor moves past it",
			errs:      map[uint64]wire.ErrorCode{1: wire.ErrorCode_BAD_REQUEST, 2: wire.ErrorCode_OUT_OF_ORDER, 3: wire.ErrorCode_OUT_OF_ORDER},
			resent:    []floorCseq{{2, 2}, {3, 2}},
			sendError: "BAD_REQUEST",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, e := startTCP(t, tcpConfig())
			for i := 0; i < 3; i++ {
				if _, err := c.Send(e, testConv, "x"); err != nil {
					t.Fatal(err)
				}
			}
			reqs := sendReqs(e.take(t))
			order := tt.order
			if order == nil {
				order = []uint64{1, 2, 3}
			}
			for _, cseq := range order {
				if code, ok := tt.errs[cseq]; ok {
					reply(t, c, e, reqs[cseq], &wire.Error{Code: code, Op: uint32(wire.OpSend), Cseq: cseq})
				}
			}
			if ws := sendsOf(e.take(t)); len(ws) != 0 {
				t.Fatalf("resent %v before the backoff, want nothing", floors(ws))
			}
			e.advance(c, time.Second) // past the first backoff, within RequestTimeout
			ws := e.take(t)
			if got := floors(sendsOf(ws)); fmt.Sprint(got) != fmt.Sprint(tt.resent) {
				t.Fatalf("resent (cseq, floor) %v, want %v", got, tt.resent)
			}
			if got := c.Stats().GoBackN; got != 1 {
				t.Fatalf("go-back-N %d times, want 1", got)
			}
			// A late error from the abandoned round changes nothing.
			reply(t, c, e, reqs[3], &wire.Error{Code: wire.ErrorCode_OUT_OF_ORDER, Op: uint32(wire.OpSend), Cseq: 3})
			e.advance(c, time.Second) // past any backoff, within RequestTimeout
			if again := sendsOf(e.take(t)); len(again) != 0 || c.Stats().GoBackN != 1 {
				t.Fatalf("a stale error caused resends %v (go-back-N %d), want none", floors(again), c.Stats().GoBackN)
			}
			var got string
			for _, op := range e.opsOf(check.KindSend) {
				if op.In.CSeq == 1 {
					got = op.Error
				}
			}
			if got != tt.sendError {
				t.Fatalf("send 1 recorded error %q, want %q", got, tt.sendError)
			}
			if tt.afterAck != nil {
				ack(t, c, e, sendReqs(ws)[1], 1, 1)
				if got := floors(sendsOf(e.take(t))); fmt.Sprint(got) != fmt.Sprint(tt.afterAck) {
					t.Fatalf("after the ack wrote (cseq, floor) %v, want %v", got, tt.afterAck)
				}
			}
		})
	}
}

func TestDuplicatePushesDeliveredOnce(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	pushes := [][]*wire.ChatMessage{{peerMsg(1)}, {peerMsg(1)}, {peerMsg(1), peerMsg(2)}, {peerMsg(2)}}
	for i, msgs := range pushes {
		reply(t, c, e, 0, &wire.Push{PushId: uint64(i + 1), Messages: msgs})
	}
	ws := e.take(t)
	if got := only(ws, wire.OpPushAck); len(got) != 0 {
		t.Fatalf("PUSH_ACK written before PushAckDelay with nothing else to write: %v", got)
	}
	e.advance(c, PushAckDelayDefault)
	if acks := pushAcked(only(e.take(t), wire.OpPushAck)); fmt.Sprint(acks) != "[[1 2 3 4]]" {
		t.Fatalf("PUSH_ACKs %v, want one of [1 2 3 4]", acks)
	}
	if got := deliverSeqs(e); fmt.Sprint(got) != "[1/push 2/push]" {
		t.Fatalf("delivered %v, want [1/push 2/push]", got)
	}
	if got := c.Stats().DupPushesDropped; got != 3 {
		t.Fatalf("dropped %d duplicate pushes, want 3", got)
	}
	if got := only(ws, wire.OpSync); len(got) != 0 {
		t.Fatalf("%d syncs without a gap, want 0", len(got))
	}
}

func TestGapFill(t *testing.T) {
	tests := []struct {
		name    string
		bugs    bugs.Set
		deliver string // deliver ops after the whole exchange
		held    string
		syncs   int
	}{
		{name: "buffered and filled by sync", deliver: "[1/push 2/sync 3/push]", held: "[1 2 3]", syncs: 1},
		{name: "no-gap-fill bug delivers out of order", bugs: bugs.Set{bugs.NoGapFill: true},
			deliver: "[3/push 1/push]", held: "[1 3]", syncs: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tcpConfig()
			cfg.Bugs = tt.bugs
			c, e := startTCP(t, cfg)
			reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(3)}})
			syncs := only(e.take(t), wire.OpSync)
			if len(syncs) != tt.syncs {
				t.Fatalf("%d syncs after a gap, want %d", len(syncs), tt.syncs)
			}
			reply(t, c, e, 0, &wire.Push{PushId: 2, Messages: []*wire.ChatMessage{peerMsg(1)}})
			if len(syncs) == 1 {
				s := syncs[0].msg.(*wire.Sync)
				if s.ConvId != testConv || s.AfterSeq != 0 || s.Limit != SyncLimitDefault {
					t.Fatalf("gap-fill sync %v, want conv %s after 0 limit %d", s, testConv, SyncLimitDefault)
				}
				reply(t, c, e, syncs[0].reqID, &wire.SyncResp{ConvId: testConv, LastSeq: 3,
					Messages: []*wire.ChatMessage{peerMsg(1), peerMsg(2), peerMsg(3)}})
				ops := e.opsOf(check.KindSync)
				sync := ops[len(ops)-1]
				if len(sync.Out.Msgs) != 3 || sync.Out.LastSeq != 3 || sync.In.Limit != SyncLimitDefault {
					t.Fatalf("sync op %+v, want all 3 returned messages (before dedup) and last_seq 3", sync)
				}
			}
			if got := deliverSeqs(e); fmt.Sprint(got) != tt.deliver {
				t.Fatalf("delivered %v, want %s", got, tt.deliver)
			}
			if got := heldSeqs(c, testConv); fmt.Sprint(got) != tt.held {
				t.Fatalf("held %v, want %s", got, tt.held)
			}
			if got := only(e.take(t), wire.OpSync); len(got) != 0 {
				t.Fatalf("%d more syncs, want 0", len(got))
			}
		})
	}
}

func TestSyncPagesOn(t *testing.T) {
	cfg := tcpConfig()
	cfg.SyncLimit = 2
	c, e := startTCP(t, cfg)
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(5)}})
	for _, page := range [][]uint64{{1, 2}, {3, 4}} {
		syncs := only(e.take(t), wire.OpSync)
		if len(syncs) != 1 {
			t.Fatalf("%d syncs, want 1", len(syncs))
		}
		s := syncs[0].msg.(*wire.Sync)
		if s.AfterSeq != page[0]-1 || s.Limit != 2 {
			t.Fatalf("sync after %d limit %d, want after %d limit 2", s.AfterSeq, s.Limit, page[0]-1)
		}
		reply(t, c, e, syncs[0].reqID, &wire.SyncResp{ConvId: testConv, LastSeq: 5,
			Messages: []*wire.ChatMessage{peerMsg(page[0]), peerMsg(page[1])}})
	}
	if got := heldSeqs(c, testConv); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("held %v, want [1 2 3 4 5]", got)
	}
	if got := only(e.take(t), wire.OpSync); len(got) != 0 {
		t.Fatalf("%d syncs after catching up, want 0", len(got))
	}
}

// TestPeriodicSync: the periodic tick asks for the conversation list only;
// its answer syncs the conversations shown behind (from what the client
// holds) and those it leaves out, and not those it shows caught up.
func TestPeriodicSync(t *testing.T) {
	cfg := tcpConfig()
	cfg.SyncIntervalMax = 10 * time.Second
	cfg.RequestTimeout = time.Hour // the send below stays unanswered
	c, e := startTCP(t, cfg)
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(1)}})
	const other, caughtUp = "p:u3:u1:l9", "p:u4:u1:l9"
	if _, err := c.Send(e, other, "hi"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(e, caughtUp, "hello"); err != nil {
		t.Fatal(err)
	}
	e.take(t)
	e.advance(c, cfg.SyncIntervalMax)
	ws := e.take(t)
	if got := opNames(ws); len(only(ws, wire.OpConvList)) != 1 || len(only(ws, wire.OpSync)) != 0 {
		t.Fatalf("periodic tick wrote %v, want one CONV_LIST and no SYNC", got)
	}
	// testConv is behind (last_seq 2, held 1), caughtUp is not, other is
	// not listed at all.
	reply(t, c, e, only(ws, wire.OpConvList)[0].reqID, &wire.ConvListResp{Convs: []*wire.ConvSummary{
		{ConvId: testConv, LastSeq: 2}, {ConvId: caughtUp, LastSeq: 0}}})
	ws = e.take(t)
	after := map[string]uint64{}
	for _, w := range only(ws, wire.OpSync) {
		s := w.msg.(*wire.Sync)
		after[s.ConvId] = s.AfterSeq
		if s.ConvId == testConv {
			reply(t, c, e, w.reqID, &wire.SyncResp{ConvId: testConv, LastSeq: 2, Messages: []*wire.ChatMessage{peerMsg(2)}})
		}
	}
	if fmt.Sprint(after) != fmt.Sprint(map[string]uint64{testConv: 1, other: 0}) {
		t.Fatalf("syncs after the list %v, want the behind and the unlisted conversations from what it holds", after)
	}
	if got := deliverSeqs(e); fmt.Sprint(got) != "[1/push 2/sync]" {
		t.Fatalf("delivered %v, want [1/push 2/sync]", got)
	}
	if c.Stats().GapFills != 1 {
		t.Fatalf("gap fills %d, want 1", c.Stats().GapFills)
	}
}

// TestPeriodicListFailure: a conversation list that fails makes the period
// sync every known conversation instead, unless it was refused for load
// (OVERLOADED, RATE_LIMITED): then the next period asks again, and the
// refusal is counted.
func TestPeriodicListFailure(t *testing.T) {
	for _, tc := range []struct {
		code     wire.ErrorCode
		wantSync bool
	}{
		{wire.ErrorCode_UNAVAILABLE, true},
		{wire.ErrorCode_INTERNAL, true},
		{wire.ErrorCode_OVERLOADED, false},
		{wire.ErrorCode_RATE_LIMITED, false},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			cfg := tcpConfig()
			cfg.SyncIntervalMax = 10 * time.Second
			c, e := startTCP(t, cfg)
			reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(1)}})
			e.take(t)
			e.advance(c, cfg.SyncIntervalMax)
			ws := e.take(t)
			lists := only(ws, wire.OpConvList)
			if len(lists) != 1 {
				t.Fatalf("periodic tick wrote %v, want one CONV_LIST", opNames(ws))
			}
			reply(t, c, e, lists[0].reqID, &wire.Error{Op: uint32(wire.OpConvList), Code: tc.code})
			ws = e.take(t)
			syncs := only(ws, wire.OpSync)
			if !tc.wantSync {
				if len(syncs) != 0 || c.Stats().Refused != 1 {
					t.Fatalf("after a list refused %v wrote %v (refused %d), want nothing and one refusal counted",
						tc.code, opNames(ws), c.Stats().Refused)
				}
				return
			}
			if len(syncs) != 1 || syncs[0].msg.(*wire.Sync).ConvId != testConv || syncs[0].msg.(*wire.Sync).AfterSeq != 1 {
				t.Fatalf("after a list failed %v wrote %v, want a SYNC of %s after 1", tc.code, opNames(ws), testConv)
			}
		})
	}
}

func TestOwnMessageDedup(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	if _, err := c.Send(e, testConv, "mine"); err != nil {
		t.Fatal(err)
	}
	reqs := sendReqs(e.take(t))
	own := &wire.ChatMessage{ConvId: testConv, Seq: 1, SenderId: "u1", ClientMsgId: "u1-d1-1", Cseq: 1, Body: "mine"}
	ack(t, c, e, reqs[1], 1, 1)
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{own}})
	if err := c.Sync(e, testConv); err != nil {
		t.Fatal(err)
	}
	syncs := only(e.take(t), wire.OpSync)
	if len(syncs) != 1 || syncs[0].msg.(*wire.Sync).AfterSeq != 1 {
		t.Fatalf("syncs %v, want one from after 1 (own message held)", syncs)
	}
	if n := len(e.opsOf(check.KindDeliver)); n != 0 || len(c.Held(testConv)) != 1 {
		t.Fatalf("%d deliveries, %d held; want 0 and 1", n, len(c.Held(testConv)))
	}
}

func TestRequestTimeout(t *testing.T) {
	t.Run("silent connection is hung up and sends resent after login", func(t *testing.T) {
		c, e := startTCP(t, tcpConfig())
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatal(err)
		}
		e.take(t)
		e.advance(c, RequestTimeoutDefault)
		if e.hangups != 1 {
			t.Fatalf("%d hangups, want 1", e.hangups)
		}
		c.Handle(e, Disconnected{Reason: "hangup"})
		e.advance(c, BackoffMaxDefault)
		ws := connect(t, c, e)
		if got := floors(sendsOf(ws)); fmt.Sprint(got) != "[{1 1}]" {
			t.Fatalf("resent %v, want [{1 1}]", got)
		}
	})
	t.Run("live connection resends from the first unacknowledged", func(t *testing.T) {
		c, e := startTCP(t, tcpConfig())
		for i := 0; i < 2; i++ {
			if _, err := c.Send(e, testConv, "x"); err != nil {
				t.Fatal(err)
			}
		}
		e.take(t)
		e.advance(c, RequestTimeoutDefault/2)
		reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(1)}})
		e.advance(c, RequestTimeoutDefault/2)
		e.advance(c, BackoffMaxDefault)
		if e.hangups != 0 {
			t.Fatalf("%d hangups, want 0: frames were arriving", e.hangups)
		}
		if got := floors(sendsOf(e.take(t))); fmt.Sprint(got) != "[{1 1} {2 1}]" {
			t.Fatalf("resent %v, want [{1 1} {2 1}]", got)
		}
		if st := c.Stats(); st.Timeouts != 2 || st.Resends != 2 {
			t.Fatalf("timeouts %d resends %d, want 2 and 2", st.Timeouts, st.Resends)
		}
	})
}

func TestHeartbeatWhileIdle(t *testing.T) {
	cfg := tcpConfig()
	cfg.HeartbeatInterval = 30 * time.Second
	c, e := startTCP(t, cfg)
	e.advance(c, 29*time.Second)
	if hb := only(e.take(t), wire.OpHeartbeat); len(hb) != 0 {
		t.Fatalf("%d heartbeats before the interval, want 0", len(hb))
	}
	e.advance(c, time.Second)
	hb := only(e.take(t), wire.OpHeartbeat)
	if len(hb) != 1 {
		t.Fatalf("%d heartbeats after the interval, want 1", len(hb))
	}
	reply(t, c, e, hb[0].reqID, &wire.Heartbeat{})
	e.advance(c, RequestTimeoutDefault)
	if e.hangups != 0 {
		t.Fatalf("%d hangups after an answered heartbeat, want 0", e.hangups)
	}
}

// TestHeartbeatWhileBusy: a client that writes every second still sends a
// HEARTBEAT each interval, since only the heartbeat refreshes presence (a
// busy client used to fall out of presence one TTL after login).
func TestHeartbeatWhileBusy(t *testing.T) {
	cfg := tcpConfig()
	cfg.HeartbeatInterval = 30 * time.Second
	c, e := startTCP(t, cfg)
	beats := 0
	for sec := 1; sec <= 91; sec++ { // the 91st round takes what second 90 wrote
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatal(err)
		}
		ws := e.take(t)
		for _, hb := range only(ws, wire.OpHeartbeat) {
			beats++
			reply(t, c, e, hb.reqID, &wire.Heartbeat{})
		}
		for _, r := range sendReqs(ws) {
			ack(t, c, e, r, uint64(sec), uint64(sec))
		}
		e.advance(c, time.Second)
	}
	if beats != 3 {
		t.Fatalf("%d heartbeats in 90 s of sending every second, want 3 (one per 30 s interval)", beats)
	}
}

// TestLoginNamesInstanceAndAttempt: every LOGIN names the client's process
// (one id) and counts its attempts, which lets entry tell a stale login of
// this process from a newer one.
func TestLoginNamesInstanceAndAttempt(t *testing.T) {
	c, e := New(tcpConfig()), newFakeEnv()
	c.Start(e)
	var logins []*wire.Login
	for range 2 {
		c.Handle(e, Connected{})
		for _, w := range only(e.take(t), wire.OpLogin) {
			logins = append(logins, w.msg.(*wire.Login))
		}
		c.Handle(e, Disconnected{Reason: "test"})
		e.advance(c, time.Minute)
	}
	if len(logins) != 2 {
		t.Fatalf("%d LOGINs, want 2", len(logins))
	}
	if logins[0].Instance == "" || logins[1].Instance != logins[0].Instance {
		t.Fatalf("instances %q and %q, want one non-empty id", logins[0].Instance, logins[1].Instance)
	}
	if logins[0].Attempt != 1 || logins[1].Attempt != 2 {
		t.Fatalf("attempts %d and %d, want 1 and 2", logins[0].Attempt, logins[1].Attempt)
	}
}

func TestKickStopsReconnects(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	reply(t, c, e, 0, &wire.Kick{Reason: "newer login"})
	if e.hangups != 1 || !c.Stopped() {
		t.Fatalf("after KICK: hangups %d stopped %v, want 1 and true", e.hangups, c.Stopped())
	}
	c.Handle(e, Disconnected{Reason: "kicked"})
	e.advance(c, time.Hour)
	if len(e.dials) != 1 {
		t.Fatalf("%d dials after a KICK, want none beyond the first", len(e.dials))
	}
	logins := e.opsOf(check.KindLogin)
	if len(logins) != 2 || logins[1].Error != "KICKED" {
		t.Fatalf("login ops %+v, want the session and a KICKED end", logins)
	}
	if _, err := c.Send(e, testConv, "x"); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send after KICK: %v, want ErrStopped", err)
	}
	if e.pendingTimers() != 0 {
		t.Fatalf("%d timers left after KICK, want 0", e.pendingTimers())
	}
}

func TestPendingSendsMax(t *testing.T) {
	cfg := tcpConfig()
	cfg.PendingSendsMax = 3
	c, e := New(cfg), newFakeEnv()
	for i := 0; i < 3; i++ {
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if _, err := c.Send(e, testConv, "x"); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("4th Send: %v, want ErrPendingFull", err)
	}
	c.Start(e)
	reqs := sendReqs(connect(t, c, e))
	ack(t, c, e, reqs[1], 1, 1)
	if id, err := c.Send(e, testConv, "x"); err != nil || id != "u1-d1-4" {
		t.Fatalf("Send after an ack: %q, %v; want u1-d1-4, nil", id, err)
	}
	if _, err := New(cfg).Send(e, testConv, strings.Repeat("x", wire.BodySizeMax)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("unframeable Send: %v, want ErrTooLarge", err)
	}
}

func TestDuplicateAckWithDifferentSeqIsLogged(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	var logs bytes.Buffer
	e.log = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := c.Send(e, testConv, "x"); err != nil {
		t.Fatal(err)
	}
	reqs := sendReqs(e.take(t))
	ack(t, c, e, reqs[1], 1, 1)
	ack(t, c, e, reqs[1], 1, 1)
	if logs.Len() != 0 {
		t.Fatalf("a duplicate ack with the same seq logged %q, want nothing", logs.String())
	}
	ack(t, c, e, reqs[1], 1, 7)
	if !strings.Contains(logs.String(), "different seq") || c.Acked() != 1 {
		t.Fatalf("log %q acked %d; want the conflicting seq logged, 1 ack", logs.String(), c.Acked())
	}
}

// TestHistory drives a session through every op kind and checks that the
// history parses and carries the documented fields.
func TestHistory(t *testing.T) {
	cfg := tcpConfig()
	cfg.InflightMax = 1
	c, e := startTCP(t, cfg)
	for _, body := range []string{"a", "b", "c", "d"} {
		if _, err := c.Send(e, testConv, body); err != nil {
			t.Fatal(err)
		}
	}
	step := func() { e.now = e.now.Add(time.Millisecond) }
	step()
	ack(t, c, e, sendReqs(e.take(t))[1], 1, 1)
	step()
	reply(t, c, e, sendReqs(e.take(t))[2], &wire.Error{Code: wire.ErrorCode_BAD_REQUEST, Op: uint32(wire.OpSend), Cseq: 2})
	e.take(t) // cseq 3 is written and never answered; 4 waits behind it
	step()
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(3)}})
	syncs := only(e.take(t), wire.OpSync)
	step()
	reply(t, c, e, syncs[0].reqID, &wire.SyncResp{ConvId: testConv, LastSeq: 3,
		Messages: []*wire.ChatMessage{peerMsg(2), peerMsg(3)}})
	if err := c.Read(e, testConv, 2); err != nil {
		t.Fatal(err)
	}
	if err := c.ConvList(e); err != nil {
		t.Fatal(err)
	}
	ws := e.take(t)
	step()
	reply(t, c, e, only(ws, wire.OpRead)[0].reqID, &wire.ReadAck{ConvId: testConv, ReadSeq: 2})
	reply(t, c, e, only(ws, wire.OpConvList)[0].reqID, &wire.ConvListResp{Convs: []*wire.ConvSummary{
		{ConvId: testConv, PeerId: "u2", ListingId: "l1", LastSeq: 3, ReadSeq: 2, Unread: 1}}})
	step()
	c.Finish(e)

	h := e.history(t)
	bySend := map[uint64]check.Op{}
	kinds := map[string]int{}
	for _, op := range h.Ops {
		kinds[op.Kind]++
		if op.Client != 3 || op.User != "u1" || op.Session != 1 {
			t.Errorf("%s op client %d user %q session %d, want 3, u1, 1", op.Kind, op.Client, op.User, op.Session)
		}
		if op.Kind == check.KindSend {
			bySend[op.In.CSeq] = op
		}
	}
	want := map[string]int{"login": 1, "send": 4, "sync": 1, "deliver": 2, "read": 1, "conv_list": 2, "final": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("op kinds %v, want %v", kinds, want)
	}
	if op := bySend[1]; op.In.ClientMsgID != "u1-d1-1" || op.In.Body != "a" || op.Out.Seq != 1 || op.Return == nil || op.Conv != testConv {
		t.Errorf("acked send %+v, want client_msg_id u1-d1-1, body a, seq 1, a return", op)
	}
	if op := bySend[2]; op.Error != "BAD_REQUEST" || op.Return == nil {
		t.Errorf("failed send %+v, want error BAD_REQUEST with a return", op)
	}
	if op := bySend[3]; !op.Unknown || op.Return != nil {
		t.Errorf("unanswered send %+v, want unknown with return null", op)
	}
	if op := bySend[4]; op.Error != "NOT_SENT" {
		t.Errorf("never written send %+v, want error NOT_SENT", op)
	}
	for _, op := range h.Ops {
		switch op.Kind {
		case check.KindSync:
			if op.In.AfterSeq == 1 && (len(op.Out.Msgs) != 2 || op.Out.Msgs[0].Sender != "u2" || op.Out.LastSeq != 3) {
				t.Errorf("gap-fill sync %+v, want both returned messages and last_seq 3", op)
			}
		case check.KindRead:
			if op.In.Seq != 2 || op.Out.ReadSeq != 2 {
				t.Errorf("read %+v, want in seq 2 out read_seq 2", op)
			}
		case check.KindConvList:
			if op.Conv != "" {
				t.Errorf("conv_list has conv %q, want none", op.Conv)
			}
		case check.KindFinal:
			var seqs []uint64
			for _, m := range op.Out.Msgs {
				seqs = append(seqs, m.Seq)
			}
			if fmt.Sprint(seqs) != "[1 2 3]" || op.Out.ReadSeq != 2 || op.Out.Unread != 1 {
				t.Errorf("final %+v, want msgs [1 2 3], read_seq 2, unread 1", op)
			}
		}
	}
	if got := deliverSeqs(e); fmt.Sprint(got) != "[2/sync 3/push]" {
		t.Errorf("delivered %v, want [2/sync 3/push]", got)
	}
}

// httpCallsTo splits calls by path (without the query).
func httpCallsTo(calls []httpCall, path string) []httpCall {
	var out []httpCall
	for _, call := range calls {
		if strings.SplitN(call.path, "?", 2)[0] == path {
			out = append(out, call)
		}
	}
	return out
}

func jsonBody(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func respond(t *testing.T, c *Client, e *fakeEnv, call httpCall, status int, m proto.Message) {
	t.Helper()
	var body []byte
	if m != nil {
		body = jsonBody(t, m)
	}
	c.Handle(e, HTTPResponse{Req: call.id, Status: status, Body: body})
}

func postedSend(t *testing.T, calls []httpCall) (*wire.Send, httpCall) {
	t.Helper()
	sends := httpCallsTo(calls, "/v1/send")
	if len(sends) != 1 {
		t.Fatalf("%d POST /v1/send, want 1 (one send at a time)", len(sends))
	}
	var s wire.Send
	if err := protojson.Unmarshal(sends[0].body, &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(sends[0].body), `"client_msg_id"`) {
		t.Fatalf("send body %s, want proto field names", sends[0].body)
	}
	return &s, sends[0]
}

func TestLongPoll(t *testing.T) {
	cfg := Config{User: "u1", Device: "d1", Token: "tok", Transport: LongPoll, HTTP: "h:8080", ClientNum: 1,
		SyncIntervalMax: time.Hour}
	c, e := New(cfg), newFakeEnv()
	c.Start(e)
	calls := e.takeHTTP()
	if len(calls) != 1 || calls[0].method != "POST" || calls[0].path != "/v1/login" {
		t.Fatalf("Start issued %+v, want POST /v1/login", calls)
	}
	var login wire.Login
	if err := protojson.Unmarshal(calls[0].body, &login); err != nil || login.Token != "tok" || login.DeviceId != "d1" {
		t.Fatalf("login body %s (%v), want token tok device_id d1", calls[0].body, err)
	}
	respond(t, c, e, calls[0], 200, &wire.LoginAck{UserId: "u1", SessionId: 1})
	calls = e.takeHTTP()
	polls := httpCallsTo(calls, "/v1/poll")
	if len(polls) != 1 || polls[0].method != "GET" || polls[0].token != "tok" {
		t.Fatalf("after login %+v, want one parked GET /v1/poll with the token", calls)
	}
	q := mustQuery(t, polls[0].path)
	if q.Get("ack") != "0" || q.Get("timeout_ms") != "25000" {
		t.Fatalf("poll query %v, want ack=0 timeout_ms=25000", q)
	}
	respond(t, c, e, httpCallsTo(calls, "/v1/convs")[0], 200, &wire.ConvListResp{})

	for i := 0; i < 2; i++ {
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatal(err)
		}
	}
	s, call := postedSend(t, e.takeHTTP())
	if s.Cseq != 1 || s.AckFloor != 1 || s.ClientMsgId != "u1-d1-1" {
		t.Fatalf("first send %v, want cseq 1 floor 1", s)
	}
	c.Handle(e, HTTPResponse{Req: call.id, Status: 0}) // no answer: unknown
	if n := len(e.takeHTTP()); n != 0 {
		t.Fatalf("%d requests right after an unknown outcome, want 0 before the backoff", n)
	}
	e.advance(c, BackoffMaxDefault)
	s, call = postedSend(t, e.takeHTTP())
	if s.Cseq != 1 {
		t.Fatalf("resent cseq %d, want the same 1", s.Cseq)
	}
	respond(t, c, e, call, 200, &wire.SendAck{ConvId: testConv, Cseq: 1, Seq: 1})
	s, call = postedSend(t, e.takeHTTP())
	if s.Cseq != 2 || s.AckFloor != 2 {
		t.Fatalf("next send %v, want cseq 2 floor 2", s)
	}
	respond(t, c, e, call, 409, &wire.Error{Code: wire.ErrorCode_OUT_OF_ORDER})
	e.advance(c, BackoffMaxDefault)
	s, call = postedSend(t, e.takeHTTP())
	if s.Cseq != 2 {
		t.Fatalf("after OUT_OF_ORDER resent cseq %d, want 2", s.Cseq)
	}
	respond(t, c, e, call, 200, &wire.SendAck{ConvId: testConv, Cseq: 2, Seq: 2})

	respond(t, c, e, polls[0], 200, &wire.Push{PushId: 7, Messages: []*wire.ChatMessage{peerMsg(3)}})
	polls = httpCallsTo(e.takeHTTP(), "/v1/poll")
	if len(polls) != 1 || mustQuery(t, polls[0].path).Get("ack") != "7" {
		t.Fatalf("next poll %+v, want one acknowledging push 7", polls)
	}
	respond(t, c, e, polls[0], 200, &wire.Push{})
	polls = httpCallsTo(e.takeHTTP(), "/v1/poll")
	if len(polls) != 1 || mustQuery(t, polls[0].path).Get("ack") != "0" {
		t.Fatalf("poll after an empty one %+v, want ack=0", polls)
	}
	if got := heldSeqs(c, testConv); fmt.Sprint(got) != "[1 2 3]" || c.Acked() != 2 || c.Stats().Resends != 2 {
		t.Fatalf("held %v acked %d resends %d, want [1 2 3], 2, 2", got, c.Acked(), c.Stats().Resends)
	}
	if got := deliverSeqs(e); fmt.Sprint(got) != "[3/push]" {
		t.Fatalf("delivered %v, want [3/push]", got)
	}

	// Sync over HTTP: a gap in a poll is filled through GET /v1/sync.
	respond(t, c, e, polls[0], 200, &wire.Push{PushId: 8, Messages: []*wire.ChatMessage{peerMsg(5)}})
	syncs := httpCallsTo(e.takeHTTP(), "/v1/sync")
	if len(syncs) != 1 {
		t.Fatalf("%d syncs after a gap, want 1", len(syncs))
	}
	if q := mustQuery(t, syncs[0].path); q.Get("conv_id") != testConv || q.Get("after_seq") != "3" || q.Get("limit") != "50" {
		t.Fatalf("sync query %v, want conv_id=%s after_seq=3 limit=50", q, testConv)
	}
	respond(t, c, e, syncs[0], 200, &wire.SyncResp{ConvId: testConv, LastSeq: 5,
		Messages: []*wire.ChatMessage{peerMsg(4), peerMsg(5)}})
	if got := heldSeqs(c, testConv); fmt.Sprint(got) != "[1 2 3 4 5]" {
		t.Fatalf("held %v, want [1 2 3 4 5]", got)
	}
	e.history(t)
}

func mustQuery(t *testing.T, path string) url.Values {
	t.Helper()
	u, err := url.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

func TestLongPollKicked(t *testing.T) {
	cfg := Config{User: "u1", Device: "d1", Token: "tok", Transport: LongPoll, SyncIntervalMax: time.Hour}
	c, e := New(cfg), newFakeEnv()
	c.Start(e)
	respond(t, c, e, e.takeHTTP()[0], 200, &wire.LoginAck{UserId: "u1"})
	polls := httpCallsTo(e.takeHTTP(), "/v1/poll")
	respond(t, c, e, polls[0], 401, &wire.Error{Code: wire.ErrorCode_KICKED})
	e.advance(c, time.Hour)
	if calls := e.takeHTTP(); len(calls) != 0 || !c.Stopped() {
		t.Fatalf("after a KICKED poll: requests %+v stopped %v; want none and true", calls, c.Stopped())
	}
	if logins := e.opsOf(check.KindLogin); len(logins) != 2 || logins[1].Error != "KICKED" {
		t.Fatalf("login ops %+v, want the session and a KICKED end", logins)
	}
}

// A login the server cannot serve now (presence down, overloaded, too many
// connections) is retried after a backoff; only a refused token stops the
// client. Found by the simulator's presence-outage run: a client that gave up
// on UNAVAILABLE never received what was sent to it.
func TestLoginUnavailableRetries(t *testing.T) {
	for _, code := range []wire.ErrorCode{wire.ErrorCode_UNAVAILABLE, wire.ErrorCode_OVERLOADED, wire.ErrorCode_RATE_LIMITED, wire.ErrorCode_TIMEOUT} {
		t.Run(code.String(), func(t *testing.T) {
			c, e := New(tcpConfig()), newFakeEnv()
			c.Start(e)
			c.Handle(e, Connected{})
			ws := e.take(t)
			reply(t, c, e, ws[0].reqID, &wire.Error{Code: code, Op: uint32(wire.OpLogin)})
			if c.Stopped() || e.hangups != 1 {
				t.Fatalf("after login %s: stopped %v hangups %d, want running and 1 hangup", code, c.Stopped(), e.hangups)
			}
			c.Handle(e, Disconnected{Reason: "hung up"})
			e.advance(c, time.Minute)
			if len(e.dials) < 2 {
				t.Fatalf("%d dials after login %s, want a redial", len(e.dials), code)
			}
			if logins := e.opsOf(check.KindLogin); len(logins) != 1 || logins[0].Error != code.String() {
				t.Fatalf("login ops %+v, want one with error %s", logins, code)
			}
		})
	}
}

// TestSyncRetryBacksOff: consecutive refused syncs are retried after a
// backoff that doubles each time (an overloaded server is not hit by every
// client every BackoffMin); an answered sync resets it.
func TestSyncRetryBacksOff(t *testing.T) {
	cfg := tcpConfig()
	cfg.SyncIntervalMax = time.Hour
	cfg.BackoffMin, cfg.BackoffMax = 100*time.Millisecond, 5*time.Second
	c, e := startTCP(t, cfg)
	e.take(t)
	if err := c.Sync(e, testConv); err != nil {
		t.Fatal(err)
	}
	refuse := func() {
		t.Helper()
		syncs := only(e.take(t), wire.OpSync)
		if len(syncs) != 1 {
			t.Fatalf("got %d syncs, want 1", len(syncs))
		}
		reply(t, c, e, syncs[0].reqID, &wire.Error{Op: uint32(wire.OpSync), Code: wire.ErrorCode_OVERLOADED})
	}
	// Failure k (from 1) waits within [BackoffMin*2^(k-1)/2, BackoffMin*2^(k-1)].
	for k := 1; k <= 5; k++ {
		refuse()
		hi := cfg.BackoffMin << (k - 1)
		e.advance(c, hi/2-time.Millisecond)
		if got := only(e.take(t), wire.OpSync); len(got) != 0 && k > 1 {
			t.Fatalf("failure %d: retried before %v", k, hi/2)
		}
		e.advance(c, hi/2+time.Millisecond)
	}
	syncs := only(e.take(t), wire.OpSync)
	if len(syncs) != 1 {
		t.Fatalf("got %d syncs after the fifth backoff, want 1", len(syncs))
	}
	reply(t, c, e, syncs[0].reqID, &wire.SyncResp{ConvId: testConv, LastSeq: 0})
	if err := c.Sync(e, testConv); err != nil {
		t.Fatal(err)
	}
	refuse()
	e.advance(c, cfg.BackoffMin)
	if got := only(e.take(t), wire.OpSync); len(got) != 1 {
		t.Fatalf("after an answered sync, a refusal retried %d syncs within BackoffMin, want 1", len(got))
	}
}

// pushAcked lists the push ids each PUSH_ACK acknowledges.
func pushAcked(ws []written) [][]uint64 {
	var out [][]uint64
	for _, w := range ws {
		a := w.msg.(*wire.PushAck)
		out = append(out, append([]uint64{a.PushId}, a.MorePushIds...))
	}
	return out
}

// A push's ack rides on the client's next write (here a SEND), ahead of it,
// and the ack timer is then disarmed; a client with nothing to write acks
// after PushAckDelay; pushAcksPendingMax acks are written at once.
func TestPushAcksRideOnTheNextWrite(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(1)}})
	reply(t, c, e, 0, &wire.Push{PushId: 2, Messages: []*wire.ChatMessage{peerMsg(2)}})
	if _, err := c.Send(e, testConv, "hi"); err != nil {
		t.Fatal(err)
	}
	ws := e.take(t)
	if len(ws) != 2 || ws[0].op != wire.OpPushAck || ws[1].op != wire.OpSend {
		t.Fatalf("wrote %v, want PUSH_ACK then SEND", ws)
	}
	if acks := pushAcked(ws[:1]); fmt.Sprint(acks) != "[[1 2]]" {
		t.Fatalf("PUSH_ACKs %v, want [[1 2]]", acks)
	}
	e.advance(c, PushAckDelayDefault)
	if ws := only(e.take(t), wire.OpPushAck); len(ws) != 0 {
		t.Fatalf("acked again after the delay: %v", pushAcked(ws))
	}
	for i := range pushAcksPendingMax {
		reply(t, c, e, 0, &wire.Push{PushId: uint64(10 + i), Messages: []*wire.ChatMessage{peerMsg(uint64(3 + i))}})
	}
	acks := pushAcked(only(e.take(t), wire.OpPushAck))
	if len(acks) != 1 || len(acks[0]) != pushAcksPendingMax || acks[0][0] != 10 {
		t.Fatalf("after %d pushes: PUSH_ACKs %v, want one of all of them", pushAcksPendingMax, acks)
	}
}

// Acks held back when the connection drops are not written on the next one
// (its pushes took the offline path at entry); PushAckDelay < 0 acks each
// push at once.
func TestPushAcksOfALostConnection(t *testing.T) {
	c, e := startTCP(t, tcpConfig())
	reply(t, c, e, 0, &wire.Push{PushId: 1, Messages: []*wire.ChatMessage{peerMsg(1)}})
	c.Handle(e, Disconnected{Reason: "test"})
	e.advance(c, time.Minute) // reconnect timer; the ack timer is gone
	connect(t, c, e)
	e.advance(c, PushAckDelayDefault)
	if ws := only(e.take(t), wire.OpPushAck); len(ws) != 0 {
		t.Fatalf("acked a push of the lost connection: %v", pushAcked(ws))
	}

	cfg := tcpConfig()
	cfg.PushAckDelay = -1
	c, e = startTCP(t, cfg)
	reply(t, c, e, 0, &wire.Push{PushId: 7, Messages: []*wire.ChatMessage{peerMsg(1)}})
	if acks := pushAcked(only(e.take(t), wire.OpPushAck)); fmt.Sprint(acks) != "[[7]]" {
		t.Fatalf("PushAckDelay < 0: PUSH_ACKs %v, want [[7]] at once", acks)
	}
}
