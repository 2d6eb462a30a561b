package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ready\n"))
		case "/slow":
			time.Sleep(400 * time.Millisecond)
		default:
			http.Error(w, "not ready: no registry view received yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name     string
		url      string
		wantCode int // 0: no error
	}{
		{"200 is healthy", srv.URL + "/readyz", 0},
		{"503 is unhealthy", srv.URL + "/notready", 1},
		{"no listener is unhealthy", closedURL + "/readyz", 1},
		{"timeout is unhealthy", srv.URL + "/slow", 1},
		{"bad URL is a usage error", "://nope", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			err := probe(ctx, tt.url)
			code := 0
			if err != nil {
				var ee *exitError
				if !errors.As(err, &ee) {
					t.Fatalf("got error %v without an exit code", err)
				}
				code = ee.code
			}
			if code != tt.wantCode {
				t.Fatalf("got exit code %d (%v), want %d", code, err, tt.wantCode)
			}
		})
	}
}
