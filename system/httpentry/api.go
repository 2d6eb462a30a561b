package httpentry

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// JSON is protojson with the protobuf field names (docs/protocol.md "HTTP
// API"); answers are encoded with wire.MarshalJSON (deterministic bytes).
var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

const contentJSON = "application/json"

// call is one HTTP request waiting for logic's answer. conn 0 is a
// heartbeat httpentry sends for a session itself: its answer is dropped.
type call struct {
	id       uint32
	conn     node.ConnID
	sess     *session
	origin   uint64 // the vconn the request named
	deadline node.TimerID
}

func (h *HTTPEntry) onRequest(env node.Env, r node.HTTPRequest) {
	h.stats.Requests++
	switch r.Method + " " + r.Path {
	case "POST /v1/login":
		h.login(env, r)
	case "POST /v1/send":
		h.forwardJSON(env, r, wire.OpSend, &wire.Send{})
	case "POST /v1/read":
		h.forwardJSON(env, r, wire.OpRead, &wire.Read{})
	case "GET /v1/sync":
		h.forwardSync(env, r)
	case "GET /v1/convs":
		limit, err := queryUint(r.Query, "limit", 32)
		if err != nil {
			h.badRequest(env, r.Conn, err.Error())
			return
		}
		h.forwardMessage(env, r, wire.OpConvList, &wire.ConvList{Limit: uint32(limit)})
	case "GET /v1/poll":
		h.poll(env, r)
	case "POST /v1/platform/notice":
		h.platformNotice(env, r)
	case "POST /v1/platform/broadcast":
		h.platformBroadcast(env, r)
	default:
		h.stats.NotFound++
		h.reply(env, r.Conn, http.StatusNotFound, &wire.Error{Code: wire.ErrorCode_BAD_REQUEST, Message: fmt.Sprintf("no route %q %q", r.Method, r.Path)})
	}
}

// authenticate verifies the Bearer token of every request.
func (h *HTTPEntry) authenticate(env node.Env, r node.HTTPRequest) (user, token string, ok bool) {
	token, found := strings.CutPrefix(r.Header["Authorization"], "Bearer ")
	if !found {
		token = ""
	}
	user, err := wire.VerifyToken(h.cfg.Secret, token, env.Now())
	if err != nil {
		h.stats.Unauthenticated++
		h.replyError(env, r.Conn, wire.ErrorCode_UNAUTHENTICATED, err.Error())
		return "", "", false
	}
	return user, token, true
}

// sessionOf authenticates and finds the user's long-poll session.
func (h *HTTPEntry) sessionOf(env node.Env, r node.HTTPRequest) *session {
	user, _, ok := h.authenticate(env, r)
	if !ok {
		return nil
	}
	s := h.sessions[user]
	if s == nil {
		h.stats.Unauthenticated++
		h.replyError(env, r.Conn, wire.ErrorCode_UNAUTHENTICATED, "no session: POST /v1/login first")
	}
	return s
}

// login creates or refreshes the user's session. Each login takes a fresh
// virtual connection id, so a kick or push aimed at an older login does not
// reach the new one; the buffer and the route to logic carry over.
func (h *HTTPEntry) login(env node.Env, r node.HTTPRequest) {
	user, token, ok := h.authenticate(env, r)
	if !ok {
		return
	}
	var login wire.Login
	if err := unmarshalBody(r.Body, &login); err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	if login.DeviceId == "" {
		login.DeviceId = "web"
	}
	if err := wire.ValidClientMsgID(login.DeviceId); err != nil {
		h.badRequest(env, r.Conn, "device_id: "+err.Error())
		return
	}
	if login.Instance != "" {
		if err := wire.ValidClientMsgID(login.Instance); err != nil {
			h.badRequest(env, r.Conn, "instance: "+err.Error())
			return
		}
	}
	login.Token = token // logic sees the token that was verified
	s := h.sessions[user]
	if s == nil {
		if len(h.sessions) >= h.cfg.SessionsMax {
			h.overloaded(env, r.Conn, "too many sessions")
			return
		}
		s = h.newSession(env, user)
	}
	h.vconnNext++
	h.sessionNext++
	s.vconn, s.device, s.id = h.vconnNext, login.DeviceId, h.sessionNext
	s.instance, s.attempt = login.Instance, login.Attempt
	s.lastActive, s.lastHeartbeat = env.Now(), env.Now()
	h.stats.Logins++
	h.forward(env, s, r.Conn, wire.OpLogin, mustMarshal(&login))
}

func (h *HTTPEntry) forwardJSON(env node.Env, r node.HTTPRequest, op wire.Op, m proto.Message) {
	if err := unmarshalBody(r.Body, m); err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	h.forwardMessage(env, r, op, m)
}

func (h *HTTPEntry) forwardSync(env node.Env, r node.HTTPRequest) {
	after, err := queryUint(r.Query, "after_seq", 64)
	if err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	limit, err := queryUint(r.Query, "limit", 32)
	if err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	h.forwardMessage(env, r, wire.OpSync, &wire.Sync{ConvId: r.Query["conv_id"], AfterSeq: after, Limit: uint32(limit)})
}

// forwardMessage sends one app request of the user's session to logic.
// Like entry, httpentry does no business processing: logic validates.
func (h *HTTPEntry) forwardMessage(env node.Env, r node.HTTPRequest, op wire.Op, m proto.Message) {
	s := h.sessionOf(env, r)
	if s == nil {
		return
	}
	// m may carry query strings as they came (conv_id): protobuf refuses
	// invalid UTF-8, which is the client's error, not a bug.
	body, err := proto.Marshal(m)
	if err != nil {
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	h.forward(env, s, r.Conn, op, body)
}

// forward queues a request on the session's lane; the HTTP request conn
// (0 for httpentry's own heartbeats) waits for the answer up to RequestTimeout.
func (h *HTTPEntry) forward(env node.Env, s *session, conn node.ConnID, op wire.Op, body []byte) {
	switch {
	case h.router.Views.Slots(node.RoleLogic) == 0:
		h.replyError(env, conn, wire.ErrorCode_UNAVAILABLE, "no logic configured")
		return
	case !h.router.Serves(op):
		h.replyError(env, conn, wire.ErrorCode_UNAVAILABLE, "no logic slot serves "+string(entry.BusinessOf(op)))
		return
	case len(h.calls) >= h.cfg.RequestsMax:
		h.overloaded(env, conn, "too many requests waiting")
		return
	case s.lane.Len() >= h.cfg.PendingMax:
		h.overloaded(env, conn, "too many requests of this session waiting")
		return
	}
	c := &call{id: h.nextReqID(), conn: conn, sess: s, origin: s.vconn}
	fr := &forwardAlloc{}
	fr.origin.Entry = h.self.Of(env.Self())
	fr.origin.Conn = s.vconn
	fr.origin.EntryIncarnation = uint64(env.Incarnation())
	req := &fr.req
	req.Origin = &fr.origin
	req.UserId = s.user
	req.DeviceId = s.device
	req.Op = uint32(op)
	req.ReqId = c.id
	req.Body = body
	req.SessionId = s.id
	h.calls[c.id] = c
	if conn != 0 {
		h.callConns[conn] = c.id
	}
	c.deadline = env.After(h.cfg.RequestTimeout, deadlineTag{req: c.id})
	h.stats.Forwarded++
	p := &fr.pending
	p.Req, p.Tag = req, attemptTag{user: s.user}
	h.exhausted(env, h.router.Forward(env, s.lane, p))
}

// forwardAlloc holds a forwarded request's pending entry, the request and
// its origin in one allocation: they are made together on every request
// and live as long as each other (the pending entry holds the request).
type forwardAlloc struct {
	pending entry.Pending
	req     wire.ClientRequest
	origin  wire.Origin
}

// nextReqID numbers requests; ids of requests still waiting are skipped
// after wrap-around (at most RequestsMax are waiting).
func (h *HTTPEntry) nextReqID() uint32 {
	for {
		h.reqNext++
		if _, used := h.calls[h.reqNext]; h.reqNext != 0 && !used {
			return h.reqNext
		}
	}
}

// exhausted answers requests that ran out of attempts before their deadline.
func (h *HTTPEntry) exhausted(env node.Env, ps []*entry.Pending) {
	for _, p := range ps {
		if c := h.calls[p.Req.ReqId]; c != nil {
			h.stats.RequestTimeouts++
			h.finish(env, c)
			h.replyError(env, c.conn, wire.ErrorCode_TIMEOUT, "logic did not answer")
		}
	}
}

// finish forgets a call (answered, timed out or canceled) and its place in the lane.
func (h *HTTPEntry) finish(env node.Env, c *call) {
	delete(h.calls, c.id)
	if c.conn != 0 {
		delete(h.callConns, c.conn)
	}
	env.Cancel(c.deadline)
	h.router.Answer(env, c.sess.lane, c.id)
}

func (h *HTTPEntry) onResponse(env node.Env, m *wire.ClientResponse) {
	o := m.GetOrigin()
	if o.GetEntryIncarnation() != uint64(env.Incarnation()) {
		h.stats.StaleDropped++
		return
	}
	c := h.calls[m.ReqId]
	if c == nil || c.origin != o.GetConn() {
		h.stats.DuplicatesDropped++
		return
	}
	h.finish(env, c)
	op := wire.Op(m.Op)
	if op == wire.OpLoginAck {
		c.sess.loggedIn = true
	}
	if c.conn != 0 {
		h.stats.Answered++
		h.replyFrame(env, c.conn, wire.Frame{Op: op, ReqID: m.ReqId, Body: m.Body})
	}
	if m.Close && h.sessions[c.sess.user] == c.sess {
		h.endSession(env, c.sess, wire.ErrorCode_UNAUTHENTICATED, "session closed by logic")
	}
}

// replyFrame turns logic's protobuf answer into JSON with the status its code implies.
func (h *HTTPEntry) replyFrame(env node.Env, conn node.ConnID, f wire.Frame) {
	m, err := wire.DecodeBody(f)
	if err != nil || !f.Op.IsApp() {
		env.Log().Error("httpentry: logic answered with a bad frame", "op", f.Op.String(), "err", err)
		h.replyError(env, conn, wire.ErrorCode_INTERNAL, "bad answer from logic")
		return
	}
	status := http.StatusOK
	if e, ok := m.(*wire.Error); ok {
		status = statusOf(e.Code)
	}
	h.reply(env, conn, status, m)
}

func (h *HTTPEntry) onCanceled(env node.Env, conn node.ConnID) {
	if s := h.polls[conn]; s != nil {
		h.stats.PollsCanceled++
		s.unpark(env, h)
		return
	}
	if id, ok := h.callConns[conn]; ok {
		// Nobody waits for the answer: stop resending; the client will resend.
		h.finish(env, h.calls[id])
	}
}

// settleAll moves sessions after a view (slot -1: every session with
// requests waiting) or after the link to slot went down.
func (h *HTTPEntry) settleAll(env node.Env, slot int) {
	for _, s := range h.sortedSessions() {
		if s.lane.Len() == 0 {
			continue
		}
		if slot >= 0 && !s.lane.Uses(slot) {
			continue
		}
		h.exhausted(env, h.router.Settle(env, s.lane))
	}
}

func (h *HTTPEntry) sortedSessions() []*session {
	users := make([]string, 0, len(h.sessions))
	for u := range h.sessions {
		users = append(users, u)
	}
	slices.Sort(users)
	out := make([]*session, len(users))
	for i, u := range users {
		out[i] = h.sessions[u]
	}
	return out
}

func (h *HTTPEntry) reply(env node.Env, conn node.ConnID, status int, m proto.Message) {
	if conn == 0 {
		return
	}
	b, err := wire.MarshalJSON(m)
	if err != nil {
		env.Log().Error("httpentry: marshal reply", "err", err)
		status, b = http.StatusInternalServerError, []byte(`{"code":"INTERNAL"}`)
	}
	env.HTTPReply(conn, status, contentJSON, b)
}

func (h *HTTPEntry) replyError(env node.Env, conn node.ConnID, code wire.ErrorCode, msg string) {
	// Messages may quote client input; JSON (protojson) needs valid UTF-8,
	// and a reply that cannot be encoded would turn a 4xx into a 500.
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	h.reply(env, conn, statusOf(code), &wire.Error{Code: code, Message: msg})
}

func (h *HTTPEntry) badRequest(env node.Env, conn node.ConnID, msg string) {
	h.stats.BadRequests++
	h.replyError(env, conn, wire.ErrorCode_BAD_REQUEST, msg)
}

func (h *HTTPEntry) overloaded(env node.Env, conn node.ConnID, msg string) {
	h.stats.Overloaded++
	h.replyError(env, conn, wire.ErrorCode_OVERLOADED, msg)
}

// statusOf maps error codes to HTTP statuses (docs/protocol.md "HTTP API").
func statusOf(code wire.ErrorCode) int {
	switch code {
	case wire.ErrorCode_BAD_REQUEST:
		return http.StatusBadRequest
	case wire.ErrorCode_UNAUTHENTICATED, wire.ErrorCode_KICKED:
		return http.StatusUnauthorized
	case wire.ErrorCode_FORBIDDEN:
		return http.StatusForbidden
	case wire.ErrorCode_OUT_OF_ORDER:
		return http.StatusConflict
	case wire.ErrorCode_TOO_LARGE:
		return http.StatusRequestEntityTooLarge
	case wire.ErrorCode_RATE_LIMITED:
		return http.StatusTooManyRequests
	case wire.ErrorCode_OVERLOADED, wire.ErrorCode_UNAVAILABLE:
		return http.StatusServiceUnavailable
	case wire.ErrorCode_TIMEOUT:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// unmarshalBody reads a JSON body; an empty body is an empty message.
func unmarshalBody(body []byte, m proto.Message) error {
	if len(body) == 0 {
		return nil
	}
	return jsonIn.Unmarshal(body, m)
}

func queryUint(q map[string]string, key string, bits int) (uint64, error) {
	v, ok := q[key]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("query %s: %w", key, err)
	}
	return n, nil
}

// mustMarshal encodes messages httpentry built or parsed itself; failing is a bug.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic("httpentry: marshal: " + err.Error())
	}
	return b
}
