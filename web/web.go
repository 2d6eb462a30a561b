// Package web is zzim's mobile-web chat client: one page and its scripts,
// embedded in the binary and served on httpentry's listener next to the
// long-poll API it talks to (docs/protocol.md "HTTP API"). There is no
// build step: the files under static/ are what the browser runs.
//
// DevLogin hands out login tokens for any user id. It exists so that a
// person can try a development cluster (`zzim up`) from a phone without a
// token tool; a production httpentry must not serve it.
package web

import (
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"time"

	"github.com/zzim/zzim/system/wire"
)

//go:embed static/*
var static embed.FS

// DevLoginPath is where DevLogin is served.
const DevLoginPath = "/v1/dev/login"

// DevTokenTTL is how long a development token stays valid.
const DevTokenTTL = 24 * time.Hour

// devLoginBodyMax bounds a dev-login request body: it only names a user.
const devLoginBodyMax = 1 << 10

// files maps each served path to its embedded file: "/" is the page, every
// other file under static/ is served under its own name.
var files = func() map[string]string {
	entries, err := fs.ReadDir(static, "static")
	if err != nil {
		panic("web: embedded files: " + err.Error())
	}
	m := map[string]string{"/": "static/index.html"}
	for _, e := range entries {
		if e.Name() != "index.html" {
			m["/"+e.Name()] = "static/" + e.Name()
		}
	}
	return m
}()

// Paths lists the exact paths Handler serves, sorted. HTTPExtra of a
// live.NodeSpec matches exact paths, so a host registers each of them.
func Paths() []string {
	out := make([]string, 0, len(files))
	for p := range files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Handler serves the page at "/" and its scripts and style under their
// names; any other path is 404. Only GET and HEAD are allowed.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := static.ReadFile(name)
		if err != nil {
			http.Error(w, "missing embedded file", http.StatusInternalServerError)
			return
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		// The files change with the binary; a stale cached script talking to
		// a newer server is worse than a refetch.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}

// devLoginRequest and devLoginResponse are DevLogin's JSON bodies.
type devLoginRequest struct {
	UserID string `json:"user_id"`
}

type devLoginResponse struct {
	Token     string `json:"token"`
	UserID    string `json:"user_id"`
	ExpiresMs int64  `json:"expires_at_ms,string"`
}

// DevLogin answers POST {"user_id": "..."} with {"token": "..."}: a token
// for that user signed with secret, valid for DevTokenTTL. It checks no
// password: anyone who reaches it can be anyone.
func DevLogin(secret []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, wire.ErrorCode_BAD_REQUEST, "dev login: POST only")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, devLoginBodyMax))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, wire.ErrorCode_TOO_LARGE, "dev login: body too large")
				return
			}
			writeError(w, http.StatusBadRequest, wire.ErrorCode_BAD_REQUEST, "dev login: read body: "+err.Error())
			return
		}
		var req devLoginRequest
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, wire.ErrorCode_BAD_REQUEST, "dev login: want {\"user_id\": \"...\"}: "+err.Error())
			return
		}
		if err := wire.ValidUserID(req.UserID); err != nil {
			writeError(w, http.StatusBadRequest, wire.ErrorCode_BAD_REQUEST, "dev login: "+err.Error())
			return
		}
		exp := time.Now().Add(DevTokenTTL)
		writeJSON(w, http.StatusOK, devLoginResponse{
			Token: wire.SignToken(secret, req.UserID, exp), UserID: req.UserID, ExpiresMs: exp.UnixMilli(),
		})
	})
}

// Routes is the HTTPExtra of an httpentry that serves the web client: the
// page's paths, and DevLoginPath when devLogin is set.
func Routes(secret []byte, devLogin bool) map[string]http.Handler {
	h := Handler()
	m := map[string]http.Handler{}
	for _, p := range Paths() {
		m[p] = h
	}
	if devLogin {
		m[DevLoginPath] = DevLogin(secret)
	}
	return m
}

// writeError answers with a wire.Error-shaped body, as the API does.
func writeError(w http.ResponseWriter, status int, code wire.ErrorCode, msg string) {
	writeJSON(w, status, map[string]string{"code": code.String(), "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"INTERNAL"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
