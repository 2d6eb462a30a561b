package loadgen

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus serves the generator's per-second figures on /metrics.
type Prometheus struct {
	srv   *http.Server
	Addr  string
	gauge *prometheus.GaugeVec
	total *prometheus.CounterVec
}

// ServePrometheus listens on addr; feed it with OnSecond.
func ServePrometheus(addr string) (*Prometheus, error) {
	reg := prometheus.NewRegistry()
	p := &Prometheus{
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zzim_load_second",
			Help: "the last closed second: offered, achieved (acks), delivered per second; ack/deliver p50/p99 and schedule lag p99 in seconds; connections"}, []string{"figure"}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_load_total",
			Help: "totals over the run: offered, achieved, delivered, errors"}, []string{"figure"}),
	}
	reg.MustRegister(p.gauge, p.total)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("prometheus listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	p.Addr = ln.Addr().String()
	go func() {
		if err := p.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the run goes on without its endpoint
		}
	}()
	return p, nil
}

// OnSecond publishes one closed second.
func (p *Prometheus) OnSecond(r Row) {
	set := func(k string, v float64) { p.gauge.WithLabelValues(k).Set(v) }
	set("offered", float64(r.Offered))
	set("achieved", float64(r.Achieved))
	set("delivered", float64(r.Delivered))
	set("ack_p50_seconds", r.AckP50/1000)
	set("ack_p99_seconds", r.AckP99/1000)
	set("deliver_p50_seconds", r.DeliverP50/1000)
	set("deliver_p99_seconds", r.DeliverP99/1000)
	set("lag_p99_seconds", r.LagP99/1000)
	set("connections", float64(r.Connections))
	add := func(k string, v int64) { p.total.WithLabelValues(k).Add(float64(v)) }
	add("offered", r.Offered)
	add("achieved", r.Achieved)
	add("delivered", r.Delivered)
	add("errors", r.Errors)
}

// Close stops the endpoint.
func (p *Prometheus) Close() error { return p.srv.Close() }
