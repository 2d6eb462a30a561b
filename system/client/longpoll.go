package client

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// pollReqsMax bounds the HTTP requests outstanding at once (one send, one
// poll, SyncInflightMax syncs, a login; the rest are the workload's reads
// and lists). Beyond it a request is refused with ErrBusy.
const pollReqsMax = 1024

// Requests are encoded with wire.MarshalJSON (deterministic bytes).
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// httpReq is what the client remembers of one HTTP request.
type httpReq struct {
	op    wire.Op // the app op it stands for; OpPush for a poll
	call  int64
	cseq  uint64 // send
	round uint64 // send
	sync  syncCall
	conv  string // read
	seq   uint64 // read
	ack   uint64 // poll: the push_id it acknowledged
}

// poll is the long-poll transport: HTTP requests to httpentry, sends one at
// a time (HTTP gives no order between concurrent requests), and one GET
// /v1/poll always parked while the session is up.
type poll struct {
	c           *Client
	reqs        map[ReqID]*httpReq
	loggingIn   bool
	attempt     int // login attempts since the last session
	polling     bool
	pollAttempt int    // failed polls in a row
	ack         uint64 // push_id to acknowledge with the next poll
}

func newPoll(c *Client) *poll { return &poll{c: c, reqs: map[ReqID]*httpReq{}} }

func (p *poll) window() int { return 1 }

func (p *poll) start(env Env) { p.login(env) }

func (p *poll) login(env Env) {
	if p.loggingIn || p.c.stopped {
		return
	}
	p.loggingIn = true
	p.do(env, http.MethodPost, "/v1/login", p.c.loginMessage(env),
		p.c.cfg.RequestTimeout, &httpReq{op: wire.OpLogin})
}

// do sends one request; a nil body is a GET.
func (p *poll) do(env Env, method, path string, body proto.Message, timeout time.Duration, r *httpReq) {
	var data []byte
	if body != nil {
		var err error
		if data, err = wire.MarshalJSON(body); err != nil {
			env.Log().Error("client: encode", "user", p.c.cfg.User, "err", err)
			return
		}
	}
	if r.call == 0 {
		r.call = env.Now().UnixNano()
	}
	id := env.HTTP(method, path, p.c.cfg.Token, data, timeout)
	p.reqs[id] = r
}

func (p *poll) room() bool { return p.c.online && len(p.reqs) < pollReqsMax }

func (p *poll) writeSend(env Env, s *pendingSend, floor uint64) {
	p.do(env, http.MethodPost, "/v1/send", &wire.Send{
		ConvId: s.conv, ClientMsgId: s.clientMsgID, Cseq: s.cseq, Body: s.body, AckFloor: floor,
	}, p.c.cfg.RequestTimeout, &httpReq{op: wire.OpSend, cseq: s.cseq, round: p.c.round})
}

func (p *poll) sync(env Env, conv string, after uint64, limit int, gen uint64) error {
	if !p.room() {
		return ErrBusy
	}
	sc := syncCall{conv: conv, after: after, limit: limit, call: env.Now().UnixNano(), gen: gen}
	q := url.Values{}
	q.Set("conv_id", conv)
	q.Set("after_seq", strconv.FormatUint(after, 10))
	q.Set("limit", strconv.Itoa(limit))
	p.do(env, http.MethodGet, "/v1/sync?"+q.Encode(), nil, p.c.cfg.RequestTimeout,
		&httpReq{op: wire.OpSync, sync: sc, call: sc.call})
	return nil
}

func (p *poll) convList(env Env) error {
	if !p.room() {
		return ErrBusy
	}
	p.do(env, http.MethodGet, "/v1/convs?limit="+strconv.Itoa(p.c.cfg.ConvListLimit), nil,
		p.c.cfg.RequestTimeout, &httpReq{op: wire.OpConvList})
	return nil
}

func (p *poll) read(env Env, conv string, seq uint64) error {
	if !p.room() {
		return ErrBusy
	}
	p.do(env, http.MethodPost, "/v1/read", &wire.Read{ConvId: conv, Seq: seq}, p.c.cfg.RequestTimeout,
		&httpReq{op: wire.OpRead, conv: conv, seq: seq})
	return nil
}

// startPoll parks the next poll, acknowledging the last push received.
func (p *poll) startPoll(env Env) {
	if p.polling || !p.c.online || p.c.stopped {
		return
	}
	p.polling = true
	q := url.Values{}
	q.Set("ack", strconv.FormatUint(p.ack, 10))
	q.Set("timeout_ms", strconv.FormatInt(p.c.cfg.PollWait.Milliseconds(), 10))
	p.do(env, http.MethodGet, "/v1/poll?"+q.Encode(), nil, p.c.cfg.PollWait+p.c.cfg.RequestTimeout,
		&httpReq{op: wire.OpPush, ack: p.ack})
}

// logout: there is no logout endpoint; the session expires on the server.
func (p *poll) logout(env Env) { p.stop(env) }

func (p *poll) stop(Env) {}

func (p *poll) timer(env Env, k timerKind) {
	switch k {
	case timerReconnect:
		p.login(env)
	case timerPoll:
		p.startPoll(env)
	}
}

// relogin: httpentry no longer knows the session (401 on a request).
func (p *poll) relogin(env Env) {
	if p.c.online {
		p.c.sessionLost()
	}
	p.login(env)
}

func (p *poll) handle(env Env, ev Event) {
	resp, ok := ev.(HTTPResponse)
	if !ok {
		return
	}
	r := p.reqs[resp.Req]
	if r == nil {
		return
	}
	delete(p.reqs, resp.Req)
	switch r.op {
	case wire.OpLogin:
		p.onLogin(env, r, resp)
	case wire.OpSend:
		p.onSend(env, r, resp)
	case wire.OpPush:
		p.onPoll(env, r, resp)
	case wire.OpSync:
		p.onSync(env, r, resp)
	case wire.OpConvList:
		var m wire.ConvListResp
		if p.ok(env, resp, &m) {
			p.c.onConvList(env, r.call, &m)
		} else {
			p.c.onConvListFailed(env, failedCode(resp))
		}
	case wire.OpRead:
		var m wire.ReadAck
		if p.ok(env, resp, &m) {
			p.c.onReadAck(env, r.call, r.conv, r.seq, &m)
		}
	}
}

// ok parses a 200 answer into m. A 401 means the session is gone.
func (p *poll) ok(env Env, resp HTTPResponse, m proto.Message) bool {
	if resp.Status >= 400 && errorCode(resp) == wire.ErrorCode_KICKED {
		// Logging in again would kick the newer session in turn.
		if !p.c.stopped {
			p.c.onKick(env)
		}
		return false
	}
	if resp.Status == http.StatusUnauthorized && !p.c.stopped {
		p.relogin(env)
		return false
	}
	if resp.Status != http.StatusOK {
		return false
	}
	if err := jsonIn.Unmarshal(resp.Body, m); err != nil {
		env.Log().Warn("client: bad response body", "user", p.c.cfg.User, "err", err)
		return false
	}
	return true
}

func (p *poll) onLogin(env Env, r *httpReq, resp HTTPResponse) {
	p.loggingIn = false
	if p.c.stopped {
		return
	}
	switch resp.Status {
	case http.StatusOK:
		p.attempt = 0
		p.c.onLogin(env, r.call)
		p.startPoll(env)
	case http.StatusUnauthorized, http.StatusForbidden:
		p.c.onLoginRejected(env, r.call, errorCode(resp).String())
	default:
		p.c.arm(env, timerReconnect, p.c.backoff(env, p.attempt))
		p.attempt++
	}
}

func (p *poll) onSend(env Env, r *httpReq, resp HTTPResponse) {
	if resp.Status >= 400 && errorCode(resp) == wire.ErrorCode_KICKED {
		if !p.c.stopped {
			p.c.onKick(env)
		}
		return
	}
	switch resp.Status {
	case http.StatusOK:
		var ack wire.SendAck
		if err := jsonIn.Unmarshal(resp.Body, &ack); err != nil {
			env.Log().Warn("client: bad SendAck", "user", p.c.cfg.User, "err", err)
			return
		}
		p.c.onSendAck(env, r.cseq, ack.Seq)
	case 0:
		// No answer: the send may or may not have happened. Resend the
		// same (idempotent) after a backoff.
		p.c.stats.Timeouts++
		if r.round == p.c.round && p.c.sendIndex(r.cseq) >= 0 {
			p.c.goBackN(env)
		}
	case http.StatusUnauthorized:
		if !p.c.stopped {
			p.relogin(env)
		}
	default:
		p.c.onSendError(env, r.cseq, errorCode(resp), r.round)
	}
}

func (p *poll) onPoll(env Env, r *httpReq, resp HTTPResponse) {
	p.polling = false
	if p.c.stopped {
		return
	}
	var push wire.Push
	if !p.ok(env, resp, &push) {
		if resp.Status != http.StatusUnauthorized {
			p.c.arm(env, timerPoll, p.c.backoff(env, p.pollAttempt))
			p.pollAttempt++
		}
		return
	}
	p.pollAttempt = 0
	if p.ack == r.ack {
		p.ack = 0 // the server has it
	}
	if push.PushId != 0 {
		p.ack = push.PushId
	}
	if len(push.Messages) > 0 {
		p.c.stats.Pushes++
	}
	for _, m := range push.Messages {
		p.c.accept(env, m, viaPush)
	}
	p.startPoll(env)
}

func (p *poll) onSync(env Env, r *httpReq, resp HTTPResponse) {
	var m wire.SyncResp
	if p.ok(env, resp, &m) {
		p.c.onSyncResp(env, r.sync, &m)
		return
	}
	p.c.onSyncFailed(env, r.sync, failedCode(resp))
}

// failedCode is the error code of a response that was not a success
// (unspecified when there was no answer).
func failedCode(resp HTTPResponse) wire.ErrorCode {
	if resp.Status < http.StatusBadRequest {
		return wire.ErrorCode_ERROR_CODE_UNSPECIFIED
	}
	return errorCode(resp)
}

// errorCode reads the wire.Error body of an HTTP error, falling back to the
// status's code (docs/protocol.md, HTTP API).
func errorCode(resp HTTPResponse) wire.ErrorCode {
	var e wire.Error
	if len(resp.Body) > 0 && jsonIn.Unmarshal(resp.Body, &e) == nil && e.Code != wire.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return e.Code
	}
	switch resp.Status {
	case http.StatusBadRequest:
		return wire.ErrorCode_BAD_REQUEST
	case http.StatusUnauthorized:
		return wire.ErrorCode_UNAUTHENTICATED
	case http.StatusForbidden:
		return wire.ErrorCode_FORBIDDEN
	case http.StatusConflict:
		return wire.ErrorCode_OUT_OF_ORDER
	case http.StatusRequestEntityTooLarge:
		return wire.ErrorCode_TOO_LARGE
	case http.StatusTooManyRequests:
		return wire.ErrorCode_RATE_LIMITED
	case http.StatusServiceUnavailable:
		return wire.ErrorCode_UNAVAILABLE
	case http.StatusGatewayTimeout:
		return wire.ErrorCode_TIMEOUT
	}
	return wire.ErrorCode_INTERNAL
}
