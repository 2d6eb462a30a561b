package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zzim/zzim/system/extlogic"
	"github.com/zzim/zzim/system/wire"
)

func note(user string, seq uint64) extlogic.Notification {
	return extlogic.Notification{User: user, Messages: []*wire.ChatMessage{{ConvId: "p:a:b:l", Seq: seq, SenderId: "b", Body: "hi", CreatedAtMs: 5}}}
}

func TestLogNotifier(t *testing.T) {
	var buf bytes.Buffer
	LogNotifier{Log: slog.New(slog.NewTextHandler(&buf, nil))}.Notify(note("alice", 9))
	for _, want := range []string{"user=alice", "messages=1", "last_seq=9"} {
		if !strings.Contains(buf.String(), want) {
			t.Fatalf("got log %q, want it to contain %q", buf.String(), want)
		}
	}
}

func TestWebhookPostsJSON(t *testing.T) {
	var mu sync.Mutex
	var got []WebhookBody
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s with content type %q, want POST application/json", r.Method, r.Header.Get("Content-Type"))
		}
		var b WebhookBody
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			t.Errorf("decode: %v", err)
		}
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
	}))
	defer srv.Close()
	w := NewWebhookNotifier(WebhookConfig{URL: srv.URL, Workers: 1, Log: quiet()})
	for seq := uint64(1); seq <= 3; seq++ {
		w.Notify(note("alice", seq))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if len(got) != 3 || got[2].UserID != "alice" || got[2].Messages[0].Seq != 3 || got[2].Messages[0].ConvID != "p:a:b:l" {
		t.Fatalf("got bodies %+v, want 3 for alice ending with seq 3", got)
	}
	if st := w.Stats(); st.Sent != 3 || st.Failed != 0 || st.Dropped != 0 {
		t.Fatalf("got stats %+v, want 3 sent", st)
	}
	w.Notify(note("alice", 4))
	if st := w.Stats(); st.Dropped != 1 {
		t.Fatalf("got %d dropped after close, want 1", st.Dropped)
	}
	if err := w.Close(context.Background()); err != ErrClosed {
		t.Fatalf("got %v from a second close, want ErrClosed", err)
	}
}

func TestWebhookDropsWhenQueueFull(t *testing.T) {
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	defer srv.Close()
	w := NewWebhookNotifier(WebhookConfig{URL: srv.URL, Workers: 1, QueueMax: 2, Log: quiet()})
	w.Notify(note("alice", 1))
	<-arrived // the only worker is now busy
	start := time.Now()
	for seq := uint64(2); seq <= 5; seq++ {
		w.Notify(note("alice", seq))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Notify blocked for %v, want it never to block", d)
	}
	if st := w.Stats(); st.Dropped != 2 {
		t.Fatalf("got %d dropped, want 2 (1 in flight, 2 queued)", st.Dropped)
	}
	close(release)
	if err := w.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if st := w.Stats(); st.Sent != 3 {
		t.Fatalf("got %d sent, want 3", st.Sent)
	}
}

func TestWebhookFailures(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"status 500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(time.Second): // bounded: the server's Close waits for it
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			defer srv.CloseClientConnections()
			w := NewWebhookNotifier(WebhookConfig{URL: srv.URL, Workers: 1, Timeout: 100 * time.Millisecond, Log: quiet()})
			w.Notify(note("alice", 1))
			if err := w.Close(context.Background()); err != nil {
				t.Fatalf("close: %v", err)
			}
			if st := w.Stats(); st.Failed != 1 || st.Sent != 0 {
				t.Fatalf("got stats %+v, want 1 failed", st)
			}
		})
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
