package loadgen

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: microseconds from 1 µs to one hour, 3 significant
// digits. A longer latency is recorded as the highest value.
const (
	histLowest  = 1
	histHighest = int64(time.Hour / time.Microsecond)
	histDigits  = 3
)

// Latency series, the names of the histograms and of summary fields.
const (
	SeriesAck        = "ack"         // send-to-ack from the intended time
	SeriesAckRaw     = "ack_raw"     // send-to-ack from the last write on the wire
	SeriesDeliver    = "deliver"     // send-to-deliver (at the receiver) from the intended time
	SeriesDeliverRaw = "deliver_raw" // send-to-deliver from the last write on the wire
	SeriesLag        = "lag"         // the generator's schedule lag: dispatch - intended
)

// Series lists the latency series in report order.
var Series = []string{SeriesAck, SeriesAckRaw, SeriesDeliver, SeriesDeliverRaw, SeriesLag}

// errKindsMax bounds the distinct error kinds counted; more fold into "other".
const errKindsMax = 64

// Metrics collects a run's measurements. Safe for concurrent use: client
// goroutines record acks and deliveries, the scheduler records lag.
type Metrics struct {
	start atomic.Int64 // ns: second 0 starts here (set when traffic starts)
	secs  int          // per-second slots: the run's seconds plus drain

	// series: each has its own lock, so the scheduler recording lag and
	// clients recording acks and deliveries do not contend.
	series map[string]*seriesHist

	mu   sync.Mutex // errs and rows
	errs map[string]int64
	rows []Row

	// Per-second counters: offered by intended second, the rest by the
	// second they were observed in.
	offered, achieved, delivered, errors []atomic.Int64

	Offered    atomic.Int64 // actions scheduled (sends, intended)
	Dropped    atomic.Int64 // actions the generator could not hand to a client (mailbox full)
	Accepted   atomic.Int64 // sends the client accepted
	Acked      atomic.Int64
	Failed     atomic.Int64 // sends failed definitively
	Delivered  atomic.Int64
	Errors     atomic.Int64  // every error counted in errs
	online     *atomic.Int64 // sessions up (clientrun counts)
	OnlinePeak atomic.Int64
	Untracked  atomic.Int64 // sends whose raw times were not kept (tracker full)
}

func newHist() *hdr.Histogram { return hdr.New(histLowest, histHighest, histDigits) }

// seriesHist is one latency series: the whole run, and (for the series
// shown per second) the window since the last tick.
type seriesHist struct {
	mu     sync.Mutex
	hist   *hdr.Histogram
	window *hdr.Histogram // nil: not shown per second
}

// windowQuantiles returns the window's p50 and p99 (ms), then resets it.
func (s *seriesHist) windowQuantiles() (p50, p99 float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p50, p99 = ms(s.window.ValueAtQuantile(50)), ms(s.window.ValueAtQuantile(99))
	s.window.Reset()
	return p50, p99
}

// NewMetrics prepares slots for seconds seconds from start; online is the
// count of sessions up (nil: none).
func NewMetrics(start time.Time, seconds int, online *atomic.Int64) *Metrics {
	if online == nil {
		online = &atomic.Int64{}
	}
	m := &Metrics{
		secs: seconds, online: online,
		series: map[string]*seriesHist{}, errs: map[string]int64{},
		offered: make([]atomic.Int64, seconds), achieved: make([]atomic.Int64, seconds),
		delivered: make([]atomic.Int64, seconds), errors: make([]atomic.Int64, seconds),
	}
	m.start.Store(start.UnixNano())
	for _, s := range Series {
		m.series[s] = &seriesHist{hist: newHist()}
	}
	for _, s := range []string{SeriesAck, SeriesDeliver, SeriesLag} {
		m.series[s].window = newHist()
	}
	return m
}

// sec is the slot of time t (clamped to the slots).
func (m *Metrics) sec(t time.Time) int {
	i := int(time.Duration(t.UnixNano()-m.start.Load()) / time.Second)
	return max(0, min(i, m.secs-1))
}

func micros(d time.Duration) int64 {
	return max(histLowest, min(int64(d/time.Microsecond), histHighest))
}

func (m *Metrics) record(series string, d time.Duration) {
	v := micros(d)
	s := m.series[series]
	s.mu.Lock()
	_ = s.hist.RecordValue(v)
	if s.window != nil {
		_ = s.window.RecordValue(v)
	}
	s.mu.Unlock()
}

// offer counts one scheduled action at its intended time and its lag.
func (m *Metrics) offer(intended time.Time, lag time.Duration) {
	m.Offered.Add(1)
	m.offered[m.sec(intended)].Add(1)
	m.record(SeriesLag, lag)
}

// ack records an acknowledged send; raw < 0 when unknown.
func (m *Metrics) ack(now time.Time, intended, raw time.Duration) {
	m.Acked.Add(1)
	m.achieved[m.sec(now)].Add(1)
	m.record(SeriesAck, intended)
	if raw >= 0 {
		m.record(SeriesAckRaw, raw)
	}
}

// deliver records a message handed to the receiving application.
func (m *Metrics) deliver(now time.Time, intended, raw time.Duration) {
	m.Delivered.Add(1)
	m.delivered[m.sec(now)].Add(1)
	m.record(SeriesDeliver, intended)
	if raw >= 0 {
		m.record(SeriesDeliverRaw, raw)
	}
}

// deliverRaw records the raw latency of a delivery deliver counted before
// its send was in the sender's log.
func (m *Metrics) deliverRaw(raw time.Duration) { m.record(SeriesDeliverRaw, raw) }

// error counts one error of kind at now.
func (m *Metrics) error(now time.Time, kind string) { m.errorN(now, kind, 1) }

func (m *Metrics) errorN(now time.Time, kind string, n int64) {
	m.Errors.Add(n)
	m.errors[m.sec(now)].Add(n)
	m.mu.Lock()
	if _, ok := m.errs[kind]; !ok && len(m.errs) >= errKindsMax {
		kind = "other"
	}
	m.errs[kind] += n
	m.mu.Unlock()
}

// setStart moves second 0 (when traffic starts, after the connect phase).
func (m *Metrics) setStart(t time.Time) { m.start.Store(t.UnixNano()) }

// Online is the number of sessions up now.
func (m *Metrics) Online() int64 { return m.online.Load() }

// ErrorKinds returns a copy of the error counts by kind.
func (m *Metrics) ErrorKinds() map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64, len(m.errs))
	for k, v := range m.errs {
		out[k] = v
	}
	return out
}

// Row is one second of a run.
type Row struct {
	T           int     `json:"t"` // seconds since traffic started (the row covers [t, t+1))
	Offered     int64   `json:"offered"`
	Achieved    int64   `json:"achieved"` // sends acknowledged
	Delivered   int64   `json:"delivered"`
	Errors      int64   `json:"errors"`
	AckP50      float64 `json:"ack_p50_ms"`
	AckP99      float64 `json:"ack_p99_ms"`
	DeliverP50  float64 `json:"deliver_p50_ms"`
	DeliverP99  float64 `json:"deliver_p99_ms"`
	LagP99      float64 `json:"lag_p99_ms"`
	Connections int64   `json:"connections"`
}

// tick closes second t: its counters and the window histograms' percentiles
// (latencies observed during the second), then resets the windows.
func (m *Metrics) tick(t int) Row {
	i := max(0, min(t, m.secs-1))
	r := Row{T: t, Offered: m.offered[i].Load(), Achieved: m.achieved[i].Load(),
		Delivered: m.delivered[i].Load(), Errors: m.errors[i].Load(), Connections: m.online.Load()}
	if r.Connections > m.OnlinePeak.Load() {
		m.OnlinePeak.Store(r.Connections)
	}
	r.AckP50, r.AckP99 = m.series[SeriesAck].windowQuantiles()
	r.DeliverP50, r.DeliverP99 = m.series[SeriesDeliver].windowQuantiles()
	_, r.LagP99 = m.series[SeriesLag].windowQuantiles()
	m.mu.Lock()
	m.rows = append(m.rows, r)
	m.mu.Unlock()
	return r
}

// Rows returns the closed seconds.
func (m *Metrics) Rows() []Row {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Row(nil), m.rows...)
}

// Hist returns a copy of a whole-run histogram.
func (m *Metrics) Hist(series string) *hdr.Histogram {
	s := m.series[series]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hist.Clone()
}

func ms(us int64) float64 { return float64(us) / 1000 }

// Percentiles of one series, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func percentiles(h *hdr.Histogram) Percentiles {
	return Percentiles{
		Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()),
	}
}

// sortedKeys of a count map, for stable output.
func sortedKeys(m map[string]int64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
