package live

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// HTTP bounds. The server has no global WriteTimeout: a long-poll is held
// for up to its own timeout, so each request gets its own write deadline.
const (
	HTTPReadHeaderTimeout = 5 * time.Second
	HTTPMaxHeaderBytes    = 16 << 10
	HTTPIdleTimeout       = 120 * time.Second
	// HTTPBodySizeMax bounds a request body.
	HTTPBodySizeMax = wire.BodySizeMax
	// HTTPRequestDeadline bounds how long one request, long-polls included,
	// may take before its connection is cut.
	HTTPRequestDeadline = 40 * time.Second
	// HTTPBodyReadTimeout bounds reading one request body: without it a
	// client that sends its headers in time and then trickles the body
	// (slowloris) holds a handler forever, as the server has no global
	// ReadTimeout (it would cut parked long-polls). The deadline is lifted
	// once the body is read, so a parked poll still notices its client
	// going away.
	HTTPBodyReadTimeout = 10 * time.Second
)

type httpReply struct {
	status int
	ct     string
	body   []byte
}

type httpReplies struct {
	mu sync.Mutex
	m  map[node.ConnID]chan httpReply
}

func (hr *httpReplies) reply(id node.ConnID, status int, ct string, body []byte) {
	hr.mu.Lock()
	ch := hr.m[id]
	delete(hr.m, id)
	hr.mu.Unlock()
	if ch != nil {
		ch <- httpReply{status: status, ct: ct, body: body}
	}
}

// httpHandler turns HTTP requests into node.HTTPRequest events for host h.
// extra serves paths the node does not (the web client, health).
func (p *Process) httpHandler(h *Host, extra map[string]http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hd, ok := extra[r.URL.Path]; ok {
			hd.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(HTTPRequestDeadline))
		_ = rc.SetReadDeadline(time.Now().Add(HTTPBodyReadTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, HTTPBodySizeMax))
		if err != nil {
			// The read deadline stays: net/http reads what is left of the
			// body before answering, and a lifted deadline would let a
			// trickling client hold the answer (and the connection) forever.
			var tooBig *http.MaxBytesError
			code, status := wire.ErrorCode_BAD_REQUEST, http.StatusBadRequest
			if errors.As(err, &tooBig) {
				code, status = wire.ErrorCode_TOO_LARGE, http.StatusRequestEntityTooLarge
			}
			writeHTTPError(w, status, code, err.Error())
			return
		}
		_ = rc.SetReadDeadline(time.Time{})
		id := node.ConnID(p.connIDs.Add(1))
		ch := make(chan httpReply, 1)
		p.https.mu.Lock()
		p.https.m[id] = ch
		p.https.mu.Unlock()
		ev := node.HTTPRequest{Conn: id, Method: r.Method, Path: r.URL.Path, Query: map[string]string{}, Header: map[string]string{}, Body: body}
		for k, v := range r.URL.Query() {
			if len(v) > 0 {
				ev.Query[k] = v[0]
			}
		}
		for _, k := range []string{"Authorization", "X-Platform-Key", "Content-Type"} {
			if v := r.Header.Get(k); v != "" {
				ev.Header[k] = v
			}
		}
		p.metrics.httpRequest(r.URL.Path)
		if !h.post(ev) {
			writeHTTPError(w, http.StatusServiceUnavailable, wire.ErrorCode_UNAVAILABLE, "node stopped")
			return
		}
		select {
		case rep := <-ch:
			w.Header().Set("Content-Type", rep.ct)
			w.WriteHeader(rep.status)
			_, _ = w.Write(rep.body)
		case <-r.Context().Done():
			p.https.mu.Lock()
			delete(p.https.m, id)
			p.https.mu.Unlock()
			h.post(node.HTTPCanceled{Conn: id})
		case <-h.done:
			writeHTTPError(w, http.StatusServiceUnavailable, wire.ErrorCode_UNAVAILABLE, "node stopped")
		}
	})
}

func writeHTTPError(w http.ResponseWriter, status int, code wire.ErrorCode, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := jsonError(code, msg)
	_, _ = w.Write(b)
}

// newHTTPServer returns a server with zzim's timeouts and header bounds.
func newHTTPServer(handler http.Handler, base context.Context) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: HTTPReadHeaderTimeout,
		MaxHeaderBytes:    HTTPMaxHeaderBytes,
		IdleTimeout:       HTTPIdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
}
