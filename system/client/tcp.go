package client

import (
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// tcpReqsMax bounds the requests outstanding on one connection (sends are
// bounded by InflightMax, syncs by SyncInflightMax; the rest are the
// workload's reads and lists). Beyond it a request is refused with ErrBusy.
const tcpReqsMax = 4096

type connState int

const (
	connIdle    connState = iota // waiting for the reconnect timer
	connDialing                  // Dial issued
	connLogin                    // connected, LOGIN written
	connUp                       // LOGIN_ACK received: the session is up
	connClosing                  // Hangup issued, waiting for Disconnected
)

// tcpReq is what the client remembers of one request on the connection.
type tcpReq struct {
	op    wire.Op
	at    time.Time // when written
	call  int64
	cseq  uint64 // SEND
	round uint64 // SEND
	sync  syncCall
	conv  string // READ
	seq   uint64 // READ
}

// tcp is the TCP transport: one connection at a time to an entry from
// Config.Entries, rotated on every reconnect.
type tcp struct {
	c           *Client
	state       connState
	next        int // index into Entries of the next dial
	attempt     int // reconnect attempts since the last session
	dialed      bool
	reqID       uint32
	reqs        map[uint32]*tcpReq
	lastBeat    time.Time // when presence was last refreshed: login or the last HEARTBEAT
	lastFrameIn time.Time
	// acks: ids of pushes received and not yet acknowledged, in order;
	// written in one PUSH_ACK before the next frame, by timerPushAck at
	// the latest, or when pushAcksPendingMax wait.
	acks []uint64
}

// pushAcksPendingMax bounds the acks a client holds back: at that many it
// writes them at once (entry refuses a PUSH_ACK naming more ids than it
// keeps pushes pending, 256 by default).
const pushAcksPendingMax = 64

func newTCP(c *Client) *tcp { return &tcp{c: c, reqs: map[uint32]*tcpReq{}} }

func (t *tcp) window() int { return t.c.cfg.InflightMax }

func (t *tcp) start(env Env) {
	if len(t.c.cfg.Entries) == 0 {
		env.Log().Error("client: no entry addresses", "user", t.c.cfg.User)
		return
	}
	t.next = env.Rand().IntN(len(t.c.cfg.Entries))
	t.dial(env)
}

func (t *tcp) dial(env Env) {
	addr := t.c.cfg.Entries[t.next%len(t.c.cfg.Entries)]
	t.next = (t.next + 1) % len(t.c.cfg.Entries)
	if t.dialed {
		t.c.stats.Reconnects++
	}
	t.dialed = true
	t.state = connDialing
	env.Dial(addr)
}

func (t *tcp) handle(env Env, ev Event) {
	switch ev := ev.(type) {
	case Connected:
		t.onConnected(env)
	case Disconnected:
		t.onDisconnected(env, ev.Reason)
	case FrameIn:
		if t.state == connLogin || t.state == connUp {
			t.lastFrameIn = env.Now()
			t.onFrame(env, ev.Frame)
		}
	}
}

func (t *tcp) onConnected(env Env) {
	if t.state != connDialing {
		return
	}
	if t.c.stopped {
		t.state = connClosing
		env.Hangup()
		return
	}
	t.state = connLogin
	t.lastFrameIn = env.Now()
	t.request(env, &tcpReq{op: wire.OpLogin}, t.c.loginMessage(env))
}

// onDisconnected: requests on the connection are lost; everything
// unacknowledged is resent after the next login.
func (t *tcp) onDisconnected(env Env, reason string) {
	if t.state == connIdle {
		return
	}
	t.state = connIdle
	clear(t.reqs)
	// Pushes of the lost connection that were not acknowledged go to the
	// offline path at entry; the periodic sync or a gap fill brings them.
	t.acks = t.acks[:0]
	t.c.disarm(env, timerPushAck)
	t.c.disarm(env, timerRequest)
	t.c.disarm(env, timerHeartbeat)
	t.c.disarm(env, timerLogout)
	t.c.sessionLost()
	if t.c.stopped {
		return
	}
	env.Log().Debug("client: disconnected", "user", t.c.cfg.User, "reason", reason)
	t.c.arm(env, timerReconnect, t.c.backoff(env, t.attempt))
	t.attempt++
}

func (t *tcp) timer(env Env, k timerKind) {
	switch k {
	case timerReconnect:
		if t.state == connIdle && !t.c.stopped {
			t.dial(env)
		}
	case timerRequest:
		t.onRequestDeadline(env)
	case timerHeartbeat:
		t.onHeartbeat(env)
	case timerLogout:
		t.hangup(env)
	case timerPushAck:
		t.flushAcks(env)
	}
}

// ackPush acknowledges push id: with the next frame written, or when
// timerPushAck fires.
func (t *tcp) ackPush(env Env, id uint64) {
	if t.c.cfg.PushAckDelay < 0 {
		t.write(env, 0, &wire.PushAck{PushId: id})
		return
	}
	t.acks = append(t.acks, id)
	if len(t.acks) >= pushAcksPendingMax {
		t.flushAcks(env)
		return
	}
	if !t.c.armed(timerPushAck) {
		t.c.arm(env, timerPushAck, t.c.cfg.PushAckDelay)
	}
}

// flushAcks writes the acks held back, all in one PUSH_ACK.
func (t *tcp) flushAcks(env Env) {
	if len(t.acks) == 0 {
		return
	}
	t.c.disarm(env, timerPushAck)
	ack := &wire.PushAck{PushId: t.acks[0]}
	if len(t.acks) > 1 {
		ack.MorePushIds = append([]uint64(nil), t.acks[1:]...)
	}
	t.acks = t.acks[:0]
	t.writeFrame(env, 0, ack)
}

func (t *tcp) hangup(env Env) {
	if t.state == connDialing || t.state == connLogin || t.state == connUp {
		t.state = connClosing
		t.c.online = false // nothing more is written on a closing connection
		env.Hangup()
	}
}

// request writes m as a new request and remembers it until answered or
// expired.
func (t *tcp) request(env Env, r *tcpReq, m proto.Message) {
	t.reqID++
	if t.reqID == 0 {
		t.reqID = 1 // 0 is for server-initiated frames
	}
	r.at = env.Now()
	if r.call == 0 {
		r.call = r.at.UnixNano()
	}
	if !t.write(env, t.reqID, m) {
		return
	}
	t.reqs[t.reqID] = r
	if !t.c.armed(timerRequest) {
		t.c.arm(env, timerRequest, t.c.cfg.RequestTimeout)
	}
}

// write writes m, preceded by the PUSH_ACK of the pushes held back: the
// ack rides in the same write to the socket.
func (t *tcp) write(env Env, reqID uint32, m proto.Message) bool {
	t.flushAcks(env)
	return t.writeFrame(env, reqID, m)
}

func (t *tcp) writeFrame(env Env, reqID uint32, m proto.Message) bool {
	f, err := wire.EncodeMessage(reqID, m)
	if err != nil {
		env.Log().Error("client: encode", "user", t.c.cfg.User, "err", err)
		return false
	}
	env.Write(f)
	return true
}

func (t *tcp) room() bool { return t.state == connUp && len(t.reqs) < tcpReqsMax }

func (t *tcp) writeSend(env Env, s *pendingSend, floor uint64) {
	t.request(env, &tcpReq{op: wire.OpSend, cseq: s.cseq, round: t.c.round}, &wire.Send{
		ConvId: s.conv, ClientMsgId: s.clientMsgID, Cseq: s.cseq, Body: s.body, AckFloor: floor,
	})
}

func (t *tcp) sync(env Env, conv string, after uint64, limit int, gen uint64) error {
	if !t.room() {
		return ErrBusy
	}
	sc := syncCall{conv: conv, after: after, limit: limit, call: env.Now().UnixNano(), gen: gen}
	t.request(env, &tcpReq{op: wire.OpSync, sync: sc, call: sc.call},
		&wire.Sync{ConvId: conv, AfterSeq: after, Limit: uint32(limit)})
	return nil
}

func (t *tcp) convList(env Env) error {
	if !t.room() {
		return ErrBusy
	}
	t.request(env, &tcpReq{op: wire.OpConvList}, &wire.ConvList{Limit: uint32(t.c.cfg.ConvListLimit)})
	return nil
}

func (t *tcp) read(env Env, conv string, seq uint64) error {
	if !t.room() {
		return ErrBusy
	}
	t.request(env, &tcpReq{op: wire.OpRead, conv: conv, seq: seq}, &wire.Read{ConvId: conv, Seq: seq})
	return nil
}

// logout writes LOGOUT and lets the server close; if it does not within
// RequestTimeout, the client hangs up itself.
func (t *tcp) logout(env Env) {
	if t.state != connUp {
		t.hangup(env)
		return
	}
	t.reqID++
	t.write(env, t.reqID, &wire.Logout{})
	t.state = connClosing
	t.c.arm(env, timerLogout, t.c.cfg.RequestTimeout)
}

func (t *tcp) stop(env Env) { t.hangup(env) }

// onHeartbeat writes a HEARTBEAT every HeartbeatInterval, however busy the
// connection is: the heartbeat is what refreshes presence at logic (its TTL
// is three intervals), and other requests do not. It used to be sent only
// after an interval without writing, so a client that kept sending and
// syncing fell out of presence one TTL after login and got every message
// by the offline path and periodic sync (bench-standard: 90k of 120k
// deliveries) and a message stored late in a run not at all in time.
func (t *tcp) onHeartbeat(env Env) {
	if t.state != connUp {
		return
	}
	since := env.Now().Sub(t.lastBeat)
	if since >= t.c.cfg.HeartbeatInterval {
		t.request(env, &tcpReq{op: wire.OpHeartbeat}, &wire.Heartbeat{ClientTimeMs: env.Now().UnixMilli()})
		t.lastBeat, since = env.Now(), 0
	}
	t.c.arm(env, timerHeartbeat, t.c.cfg.HeartbeatInterval-since)
}
