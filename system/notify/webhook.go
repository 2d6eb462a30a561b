package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zzim/zzim/system/extlogic"
)

// Webhook defaults.
const (
	WebhookTimeoutDefault = 5 * time.Second
	// WebhookQueueMaxDefault bounds notifications waiting for a worker;
	// beyond it Notify drops and counts.
	WebhookQueueMaxDefault = 1024
	WebhookWorkersDefault  = 4
	// responseBodyMax bounds what is read (and discarded) of a response, so
	// the connection can be reused without trusting the server's size.
	responseBodyMax = 64 << 10
)

// ErrClosed is returned by Close when called twice.
var ErrClosed = errors.New("notify: webhook notifier closed")

// WebhookConfig configures a WebhookNotifier. Zero fields take defaults.
type WebhookConfig struct {
	URL      string
	Timeout  time.Duration // per POST
	QueueMax int
	Workers  int
	Client   *http.Client // nil: a client with no timeout of its own (Timeout applies per request)
	Log      *slog.Logger
}

// WebhookStats are the notifier's counters.
type WebhookStats struct {
	Sent    uint64 // answered 2xx
	Failed  uint64 // transport error, timeout or non-2xx
	Dropped uint64 // queue full or notifier closed
}

// WebhookNotifier POSTs each notification as JSON to a URL from a bounded
// worker pool.
type WebhookNotifier struct {
	cfg   WebhookConfig
	queue chan extlogic.Notification

	mu     sync.RWMutex // guards closed against Notify sending on a closed channel
	closed bool
	wg     sync.WaitGroup

	sent, failed, dropped atomic.Uint64
}

// WebhookBody is the JSON a webhook receives.
type WebhookBody struct {
	UserID   string           `json:"user_id"`
	Messages []WebhookMessage `json:"messages"`
	Omitted  int              `json:"omitted,omitempty"`
}

// WebhookMessage is one message of a WebhookBody (field names as in wire.ChatMessage).
type WebhookMessage struct {
	ConvID      string `json:"conv_id"`
	Seq         uint64 `json:"seq"`
	SenderID    string `json:"sender_id"`
	Body        string `json:"body"`
	CreatedAtMs int64  `json:"created_at_ms"`
}

// NewWebhookNotifier starts the workers. Call Close to stop them.
func NewWebhookNotifier(cfg WebhookConfig) *WebhookNotifier {
	if cfg.Timeout <= 0 {
		cfg.Timeout = WebhookTimeoutDefault
	}
	if cfg.QueueMax <= 0 {
		cfg.QueueMax = WebhookQueueMaxDefault
	}
	if cfg.Workers <= 0 {
		cfg.Workers = WebhookWorkersDefault
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	w := &WebhookNotifier{cfg: cfg, queue: make(chan extlogic.Notification, cfg.QueueMax)}
	w.wg.Add(cfg.Workers)
	for range cfg.Workers {
		go w.work()
	}
	return w
}

// Notify queues n without blocking; a full queue drops it (counted).
func (w *WebhookNotifier) Notify(n extlogic.Notification) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	select {
	case w.queue <- n:
	default:
		w.dropped.Add(1)
	}
}

// Stats returns the counters.
func (w *WebhookNotifier) Stats() WebhookStats {
	return WebhookStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Dropped: w.dropped.Load()}
}

// Close stops accepting notifications and waits for the queued ones to be
// sent, or for ctx to end.
func (w *WebhookNotifier) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	close(w.queue)
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: close: %w", ctx.Err())
	}
}

func (w *WebhookNotifier) work() {
	defer w.wg.Done()
	for n := range w.queue {
		if err := w.post(n); err != nil {
			w.failed.Add(1)
			w.cfg.Log.Warn("webhook notification failed", "user", n.User, "err", err)
			continue
		}
		w.sent.Add(1)
	}
}

func (w *WebhookNotifier) post(n extlogic.Notification) error {
	body, err := json.Marshal(webhookBody(n))
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseBodyMax))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post: status %d", resp.StatusCode)
	}
	return nil
}

func webhookBody(n extlogic.Notification) WebhookBody {
	b := WebhookBody{UserID: n.User, Omitted: n.Omitted, Messages: make([]WebhookMessage, 0, len(n.Messages))}
	for _, m := range n.Messages {
		b.Messages = append(b.Messages, WebhookMessage{
			ConvID: m.GetConvId(), Seq: m.GetSeq(), SenderID: m.GetSenderId(), Body: m.GetBody(), CreatedAtMs: m.GetCreatedAtMs(),
		})
	}
	return b
}
