package httpentry

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// The platform API (the article's IMUI role) only publishes onto the
// platform subjects; extlogic does the work. The notice or broadcast id is
// the queue's msgID, so a platform service retrying a POST is stored once
// within the dedup window (and extlogic is idempotent beyond it).

func (h *HTTPEntry) platformNotice(env node.Env, r node.HTTPRequest) {
	var n wire.PlatformNotice
	h.platform(env, r, &n, func() error {
		if err := wire.ValidClientMsgID(n.NoticeId); err != nil {
			return fmt.Errorf("notice_id: %w", err)
		}
		if err := wire.ValidUserID(n.UserId); err != nil {
			return fmt.Errorf("user_id: %w", err)
		}
		return validNotice(n.Kind, n.Body)
	}, mq.PlatformNotice, func() string { return n.NoticeId })
}

func (h *HTTPEntry) platformBroadcast(env node.Env, r node.HTTPRequest) {
	var b wire.PlatformBroadcast
	h.platform(env, r, &b, func() error {
		if err := wire.ValidClientMsgID(b.BroadcastId); err != nil {
			return fmt.Errorf("broadcast_id: %w", err)
		}
		return validNotice(b.Kind, b.Body)
	}, mq.PlatformBroadcast, func() string { return b.BroadcastId })
}

func (h *HTTPEntry) platform(env node.Env, r node.HTTPRequest, m proto.Message, valid func() error, subject string, msgID func() string) {
	if !h.platformKeyOK(r) {
		h.stats.PlatformRejected++
		h.replyError(env, r.Conn, wire.ErrorCode_UNAUTHENTICATED, "missing or wrong X-Platform-Key")
		return
	}
	if err := unmarshalBody(r.Body, m); err != nil {
		h.stats.PlatformRejected++
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	if err := valid(); err != nil {
		h.stats.PlatformRejected++
		h.badRequest(env, r.Conn, err.Error())
		return
	}
	if len(h.publishes) >= h.cfg.PublishesMax {
		h.overloaded(env, r.Conn, "too many publishes in flight")
		return
	}
	req := env.Publish(subject, mustMarshal(m), msgID())
	h.publishes[req] = r.Conn
}

// platformKeyOK compares in constant time; an empty configured key disables the API.
func (h *HTTPEntry) platformKeyOK(r node.HTTPRequest) bool {
	got := r.Header["X-Platform-Key"]
	return h.cfg.PlatformKey != "" && subtle.ConstantTimeCompare([]byte(got), []byte(h.cfg.PlatformKey)) == 1
}

func validNotice(kind, body string) error {
	if kind == "" || len(kind) > KindSizeMax || !utf8.ValidString(kind) {
		return fmt.Errorf("kind: want 1..%d bytes of UTF-8", KindSizeMax)
	}
	if body == "" {
		return errors.New("body: empty")
	}
	if err := wire.ValidBody(body); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

// onCompletion answers a platform POST once its publish is definite:
// 202 when stored, 503 otherwise (an unknown outcome may have been stored;
// the platform service retries with the same id and dedup keeps one).
func (h *HTTPEntry) onCompletion(env node.Env, ev node.Completion) {
	conn, ok := h.publishes[ev.Req]
	if !ok {
		return // a registry completion: a failed heartbeat is retried by the next one
	}
	delete(h.publishes, ev.Req)
	if ev.Outcome != node.OK {
		h.stats.PlatformFailed++
		h.replyError(env, conn, wire.ErrorCode_UNAVAILABLE, fmt.Sprintf("publish %s: %v", ev.Outcome, ev.Err))
		return
	}
	h.stats.PlatformAccepted++
	env.HTTPReply(conn, http.StatusAccepted, contentJSON, []byte("{}"))
}
