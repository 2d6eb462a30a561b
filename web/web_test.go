package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

func TestHandlerServesEmbeddedFiles(t *testing.T) {
	h := Handler()
	tests := []struct {
		path       string
		wantStatus int
		wantType   string
		wantText   string
	}{
		{"/", http.StatusOK, "text/html", `name="viewport"`},
		{"/app.js", http.StatusOK, "javascript", "ChatClient"},
		{"/client.js", http.StatusOK, "javascript", "ack_floor"},
		{"/app.css", http.StatusOK, "text/css", "#messages"},
		{"/index.html", http.StatusNotFound, "", ""}, // the page lives at "/" only
		{"/nope.js", http.StatusNotFound, "", ""},
		{"/static/app.js", http.StatusNotFound, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("GET %s: got status %d, want %d", tt.path, rec.Code, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				return
			}
			if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("GET %s: got Content-Type %q, want it to contain %q", tt.path, ct, tt.wantType)
			}
			if !strings.Contains(rec.Body.String(), tt.wantText) {
				t.Errorf("GET %s: body does not contain %q", tt.path, tt.wantText)
			}
		})
	}
}

func TestHandlerMethods(t *testing.T) {
	h := Handler()
	for _, tt := range []struct {
		method     string
		wantStatus int
		wantBody   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, true},
	} {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/app.js", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Body.Len() > 0; got != tt.wantBody {
				t.Errorf("got body %v, want body %v", got, tt.wantBody)
			}
		})
	}
}

// TestPathsMatchHTMLReferences: every file the page loads is served (the
// host registers exact paths), and every served path is listed.
func TestPathsMatchHTMLReferences(t *testing.T) {
	paths := map[string]bool{}
	for _, p := range Paths() {
		paths[p] = true
	}
	for _, want := range []string{"/", "/app.js", "/app.css", "/client.js"} {
		if !paths[want] {
			t.Errorf("Paths() = %v: missing %s", Paths(), want)
		}
	}
	page, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{`href="/app.css"`, `src="/app.js"`} {
		if !strings.Contains(string(page), ref) {
			t.Errorf("index.html does not reference %s", ref)
		}
	}
	app, err := static.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(app), "from './client.js'") {
		t.Errorf("app.js does not import ./client.js")
	}
}

func TestRoutes(t *testing.T) {
	secret := []byte("s")
	with, without := Routes(secret, true), Routes(secret, false)
	if with[DevLoginPath] == nil {
		t.Errorf("Routes(devLogin=true): no %s", DevLoginPath)
	}
	if without[DevLoginPath] != nil {
		t.Errorf("Routes(devLogin=false): %s is served, want it off", DevLoginPath)
	}
	for _, p := range Paths() {
		if with[p] == nil || without[p] == nil {
			t.Errorf("Routes: %s missing", p)
		}
	}
	if got, want := len(without), len(Paths()); got != want {
		t.Errorf("Routes(devLogin=false) has %d paths, want %d", got, want)
	}
}

func TestDevLogin(t *testing.T) {
	secret := []byte("dev-secret")
	h := DevLogin(secret)
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"ok", http.MethodPost, `{"user_id":"alice"}`, http.StatusOK, ""},
		{"get", http.MethodGet, "", http.StatusMethodNotAllowed, "BAD_REQUEST"},
		{"empty user", http.MethodPost, `{"user_id":""}`, http.StatusBadRequest, "BAD_REQUEST"},
		{"bad user", http.MethodPost, `{"user_id":"a:b"}`, http.StatusBadRequest, "BAD_REQUEST"},
		{"long user", http.MethodPost, `{"user_id":"` + strings.Repeat("a", 65) + `"}`, http.StatusBadRequest, "BAD_REQUEST"},
		{"not json", http.MethodPost, `alice`, http.StatusBadRequest, "BAD_REQUEST"},
		{"too large", http.MethodPost, `{"user_id":"` + strings.Repeat("a", devLoginBodyMax) + `"}`, http.StatusRequestEntityTooLarge, "TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, DevLoginPath, strings.NewReader(tt.body)))
			if rec.Code != tt.wantStatus {
				t.Fatalf("got status %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			var got map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if tt.wantStatus != http.StatusOK {
				if got["code"] != tt.wantCode {
					t.Errorf("got code %q, want %q", got["code"], tt.wantCode)
				}
				return
			}
			user, err := wire.VerifyToken(secret, got["token"], time.Now())
			if err != nil || user != "alice" {
				t.Fatalf("token %q: got user %q, err %v; want alice", got["token"], user, err)
			}
			if _, err := wire.VerifyToken(secret, got["token"], time.Now().Add(DevTokenTTL+time.Minute)); err == nil {
				t.Errorf("token still valid after DevTokenTTL")
			}
			if _, err := wire.VerifyToken([]byte("other"), got["token"], time.Now()); err == nil {
				t.Errorf("token verifies under another secret")
			}
		})
	}
}
