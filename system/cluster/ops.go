package cluster

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check (dependency pings included).
const readyTimeout = 2 * time.Second

// OpsHandler serves /metrics (Prometheus text from reg), /healthz (the
// process is up: always 200 while it answers) and /readyz (200 when ready
// returns nil, else 503 with the reason).
func OpsHandler(reg *prometheus.Registry, ready func(ctx context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain")
		if err := ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// ReadyCheck combines the usual readiness conditions of a process: its
// nodes run, a registry view has arrived, and every ping answers.
func (l *Local) ReadyCheck(pings ...func(ctx context.Context) error) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := l.Running(); err != nil {
			return err
		}
		if !l.Viewed() {
			return errNoView
		}
		for _, ping := range pings {
			if err := ping(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

type constError string

func (e constError) Error() string { return string(e) }

const errNoView = constError("no registry view received yet")
