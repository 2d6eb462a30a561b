package httpentry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/wire"
)

// fuzzStatuses are the statuses an HTTP request may end with
// (docs/protocol.md "HTTP API"). 500 INTERNAL is not among them: it means a
// bug, and no input a client can send may cause one.
var fuzzStatuses = map[int]bool{
	http.StatusOK: true, http.StatusAccepted: true, http.StatusBadRequest: true,
	http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusNotFound: true,
	http.StatusConflict: true, http.StatusRequestEntityTooLarge: true, http.StatusTooManyRequests: true,
	http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true,
}

var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "", "get"}

// fuzzHorizon is how long the fuzz target lets time pass after the request:
// past RequestTimeoutDefault and PollTimeoutMax, so every request must have
// been answered by then.
const fuzzHorizon = PollTimeoutMax + 5*time.Second

// FuzzHandle drives httpentry's Handle with one hostile HTTP request from a
// client whose session exists ("alice"), then lets time pass: it must never
// panic, and the request gets exactly one HTTPReply with a documented
// status and a JSON body. auth picks the credentials (bits 0-2: none, alice,
// bob without a session, expired, forged, garbage; bit 3: the platform key;
// bit 4: logic answers forwarded requests with RATE_LIMITED).
func FuzzHandle(f *testing.F) {
	seeds := []struct {
		method uint8
		path   string
		query  string
		auth   uint8
		body   string
	}{
		{1, "/v1/send", "", 1, `{"conv_id":"p:alice:bob:l1","client_msg_id":"alice-web1-1","cseq":"1","body":"hi"}`},
		{1, "/v1/send", "", 17, `{"conv_id":"p:alice:bob:l1","client_msg_id":"a-1","cseq":"1","body":"x'); DROP TABLE messages; --"}`},
		{1, "/v1/send", "", 1, `{"conv_id":"p:alice:bob:l1","body":"\ud800"}`},
		{1, "/v1/send", "", 1, "{\"body\":\"\xc3\x28\"}"},
		{1, "/v1/send", "", 1, `{"cseq":"-1"}`},
		{1, "/v1/send", "", 1, `{"cseq":18446744073709551616}`},
		{1, "/v1/send", "", 1, `[[[[[[[[[[[[[[[[[[[[`},
		{1, "/v1/login", "", 1, `{"device_id":"web1"}`},
		{1, "/v1/login", "", 1, `{"device_id":"a|b"}`},
		{1, "/v1/login", "", 3, `{}`},
		{1, "/v1/login", "", 4, `{}`},
		{1, "/v1/login", "", 5, `{}`},
		{0, "/v1/sync", "conv_id=p:alice:bob:l1&after_seq=0&limit=50", 1, ""},
		{0, "/v1/sync", "conv_id=p:alice:bob:l1&after_seq=-1&limit=99999999999", 1, ""},
		{0, "/v1/convs", "limit=abc", 1, ""},
		{0, "/v1/poll", "timeout_ms=999999999999&ack=7", 1, ""},
		{0, "/v1/poll", "timeout_ms=0", 2, ""},
		{1, "/v1/read", "", 1, `{"conv_id":"p:alice:bob:l1","seq":"3"}`},
		{1, "/v1/platform/notice", "", 8, `{"notice_id":"n1","user_id":"bob","kind":"order","body":"paid"}`},
		{1, "/v1/platform/notice", "", 0, `{"notice_id":"n1","user_id":"bob","kind":"order","body":"paid"}`},
		{1, "/v1/platform/broadcast", "", 8, `{"broadcast_id":"b1","kind":"` + "\xff" + `","body":"sale"}`},
		{2, "/v1/../v1/send", "", 1, ""},
		{0, "/", "%zz", 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.auth, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method uint8, path, rawQuery string, auth uint8, body []byte) {
		x := newHarness(t, nil)
		x.login("alice")
		query := map[string]string{}
		if q, err := url.ParseQuery(rawQuery); err == nil {
			for k, v := range q {
				query[k] = v[0]
			}
		}
		hdr := map[string]string{}
		now := x.env.Now()
		switch auth % 8 {
		case 1:
			hdr["Authorization"] = "Bearer " + wire.SignToken(secret, "alice", now.Add(time.Hour))
		case 2:
			hdr["Authorization"] = "Bearer " + wire.SignToken(secret, "bob", now.Add(time.Hour))
		case 3:
			hdr["Authorization"] = "Bearer " + wire.SignToken(secret, "alice", now.Add(-time.Second))
		case 4:
			hdr["Authorization"] = "Bearer " + wire.SignToken([]byte("forged"), "alice", now.Add(time.Hour))
		case 5:
			hdr["Authorization"] = "Bearer " + rawQuery
		}
		if auth&8 != 0 {
			hdr["X-Platform-Key"] = platformKey
		}
		x.conn++
		conn := x.conn
		eff := x.handle(node.HTTPRequest{Conn: conn, Method: fuzzMethods[int(method)%len(fuzzMethods)],
			Path: path, Query: query, Header: hdr, Body: body})
		all := x.settle(eff, auth&16 != 0)
		for elapsed := time.Duration(0); elapsed < fuzzHorizon; elapsed += time.Second {
			all = append(all, x.settle(x.advance(time.Second), auth&16 != 0)...)
		}
		rs := replies(all, conn)
		if len(rs) != 1 {
			t.Fatalf("got %d replies to the request, want exactly 1:\n%s", len(rs), nodetest.Describe(all))
		}
		if !fuzzStatuses[rs[0].Status] {
			t.Fatalf("got status %d (%s), want a documented one", rs[0].Status, rs[0].Body)
		}
		if !json.Valid(rs[0].Body) {
			t.Fatalf("got reply body %q, want JSON", rs[0].Body)
		}
	})
}

// settle plays the dependencies around httpentry: publishes complete OK, and
// (if answer) logic answers forwarded requests with RATE_LIMITED. It returns
// eff with every effect that caused.
func (x *harness) settle(eff []any, answer bool) []any {
	out := eff
	for i := 0; i < len(out); i++ {
		switch e := out[i].(type) {
		case nodetest.PublishReq:
			out = append(out, x.handle(node.Completion{Req: e.Req, Outcome: node.OK})...)
		case nodetest.Sent:
			if r, ok := e.Msg.(*wire.ClientRequest); ok && answer {
				out = append(out, x.respond(forwardedReq{to: e.To, req: r}, wire.OpError,
					&wire.Error{Code: wire.ErrorCode_RATE_LIMITED, Op: r.Op})...)
			}
		}
	}
	return out
}
