package live

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// metrics are the runtime's own Prometheus metrics; services' counters are
// exported by statsCollector from their Stats() structs.
type metrics struct {
	conns       prometheus.Gauge
	framesIn    *prometheus.CounterVec
	framesOut   *prometheus.CounterVec
	slow        prometheus.Counter
	internalTx  *prometheus.CounterVec
	internalRx  *prometheus.CounterVec
	depSeconds  *prometheus.HistogramVec
	depErrors   *prometheus.CounterVec
	httpReqs    *prometheus.CounterVec
	viewsAlive  *prometheus.GaugeVec
	frameOpName [256]string

	framesInC, framesOutC    opCounters
	internalTxC, internalRxC labelCounters
	depObs                   sync.Map // kind → prometheus.Observer
}

func newMetrics(reg *prometheus.Registry, p *Process) *metrics {
	m := &metrics{
		conns:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "zzim_connections", Help: "Open app TCP connections."}),
		framesIn:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_frames_in_total", Help: "App frames received, by op."}, []string{"op"}),
		framesOut:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_frames_out_total", Help: "App frames written, by op."}, []string{"op"}),
		slow:       prometheus.NewCounter(prometheus.CounterOpts{Name: "zzim_slow_consumer_disconnects_total", Help: "Connections closed because their write queue was full."}),
		internalTx: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_internal_messages_out_total", Help: "Internal messages sent, by target role and path."}, []string{"role", "path"}),
		internalRx: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_internal_messages_in_total", Help: "Internal messages received over TCP, by receiving role."}, []string{"role"}),
		depSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "zzim_dependency_seconds", Help: "Dependency request latency.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"dep"}),
		depErrors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_dependency_errors_total", Help: "Dependency requests that failed or timed out."}, []string{"dep"}),
		httpReqs:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zzim_http_requests_total", Help: "HTTP requests, by path."}, []string{"path"}),
		viewsAlive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "zzim_registry_alive_slots", Help: "Slots the registry reports alive, by role."}, []string{"role"}),
	}
	for i := range m.frameOpName {
		m.frameOpName[i] = wire.Op(i).String()
	}
	m.framesInC = opCounters{vec: m.framesIn, names: &m.frameOpName}
	m.framesOutC = opCounters{vec: m.framesOut, names: &m.frameOpName}
	m.internalTxC.vec, m.internalRxC.vec = m.internalTx, m.internalRx
	reg.MustRegister(m.conns, m.framesIn, m.framesOut, m.slow, m.internalTx, m.internalRx, m.depSeconds, m.depErrors, m.httpReqs, m.viewsAlive,
		&statsCollector{p: p}, &mailboxCollector{p: p})
	return m
}

// Counters touched several times per message keep their children: a
// WithLabelValues hashes the labels and takes the vector's lock on every
// call. A child is created on first use, so series appear as before: only
// once something was counted.

// opCounters are a CounterVec's children by frame op.
type opCounters struct {
	vec   *prometheus.CounterVec
	names *[256]string
	c     [256]atomic.Pointer[prometheus.Counter]
}

func (o *opCounters) inc(op wire.Op) {
	if c := o.c[op].Load(); c != nil {
		(*c).Inc()
		return
	}
	c := o.vec.WithLabelValues(o.names[op]) // the same child if two goroutines race here
	o.c[op].Store(&c)
	c.Inc()
}

// labelCounters are a CounterVec's children by label values.
type labelCounters struct {
	vec *prometheus.CounterVec
	m   sync.Map // [2]string → prometheus.Counter
}

func (l *labelCounters) inc(a, b string) {
	k := [2]string{a, b}
	if c, ok := l.m.Load(k); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	var c prometheus.Counter
	if b == "" {
		c = l.vec.WithLabelValues(a)
	} else {
		c = l.vec.WithLabelValues(a, b)
	}
	l.m.Store(k, c)
	c.Inc()
}

func (m *metrics) connections(d int)   { m.conns.Add(float64(d)) }
func (m *metrics) frameIn(op wire.Op)  { m.framesInC.inc(op) }
func (m *metrics) frameOut(op wire.Op) { m.framesOutC.inc(op) }
func (m *metrics) slowConsumer()       { m.slow.Inc() }
func (m *metrics) internalOut(r node.Role, path string) {
	m.internalTxC.inc(string(r), path)
}
func (m *metrics) internalIn(r node.Role) { m.internalRxC.inc(string(r), "") }
func (m *metrics) httpRequest(path string) {
	if !strings.HasPrefix(path, "/v1/") {
		path = "other"
	}
	m.httpReqs.WithLabelValues(path).Inc()
}
func (m *metrics) depLatency(kind string, d time.Duration, err error) {
	o, ok := m.depObs.Load(kind)
	if !ok {
		o = m.depSeconds.WithLabelValues(kind)
		m.depObs.Store(kind, o)
	}
	o.(prometheus.Observer).Observe(d.Seconds())
	if err != nil {
		m.depErrors.WithLabelValues(kind).Inc()
	}
}
func (m *metrics) view(v node.View) {
	n := 0
	for _, a := range v.Alive {
		if a {
			n++
		}
	}
	m.viewsAlive.WithLabelValues(string(v.Role)).Set(float64(n))
}

// statsCollector exports every numeric field of each service's Stats()
// struct as zzim_<role>_<field> with a node label: services keep plain
// counters (no Prometheus inside the state machines), the runtime publishes
// them. Counters are read on the node goroutine (Host.Inspect).
type statsCollector struct{ p *Process }

func (c *statsCollector) Describe(chan<- *prometheus.Desc) {} // unchecked collector: fields vary by service

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.p.Hosts() {
		var stats reflect.Value
		h.Inspect(func(n node.Node) {
			m := reflect.ValueOf(n).MethodByName("Stats")
			if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
				return
			}
			stats = m.Call(nil)[0]
		})
		for stats.IsValid() && stats.Kind() == reflect.Pointer {
			stats = stats.Elem()
		}
		if !stats.IsValid() || stats.Kind() != reflect.Struct {
			continue
		}
		emitStruct(ch, string(h.addr.Role), h.addr.String(), "", stats)
	}
}

func emitStruct(ch chan<- prometheus.Metric, role, addr, prefix string, v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := prefix + snake(f.Name)
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.Struct:
			emitStruct(ch, role, addr, name+"_", fv)
			continue
		case reflect.Array:
			emitIndexed(ch, role, addr, name, f, fv)
			continue
		}
		val, ok := numeric(fv)
		if !ok {
			continue
		}
		desc := prometheus.NewDesc("zzim_"+role+"_"+name, "Service counter "+f.Name+" of "+role+".", []string{"node"}, nil)
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, val, addr)
	}
}

// numeric is v as a float64, if v is a number.
func numeric(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	}
	return 0, false
}

// emitIndexed exports a numeric array field as one series per element.
// A field tagged `metric:"business"` is indexed by wire.Business, and its
// elements are labelled business="message", "contact", ... (das keeps its
// queue depths and rejections that way: one bounded queue per business);
// any other array is labelled index="0", "1", ...
func emitIndexed(ch chan<- prometheus.Metric, role, addr, name string, f reflect.StructField, v reflect.Value) {
	label := "index"
	if f.Tag.Get("metric") == "business" {
		label = "business"
	}
	desc := prometheus.NewDesc("zzim_"+role+"_"+name, "Service counter "+f.Name+" of "+role+", by "+label+".", []string{"node", label}, nil)
	for i := 0; i < v.Len(); i++ {
		val, ok := numeric(v.Index(i))
		if !ok {
			return
		}
		key := strconv.Itoa(i)
		if label == "business" {
			key = businessLabel(wire.Business(i))
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.UntypedValue, val, addr, key)
	}
}

// businessLabel is "message" for BUSINESS_MESSAGE and so on.
func businessLabel(b wire.Business) string {
	return strings.ToLower(strings.TrimPrefix(b.String(), "BUSINESS_"))
}

func snake(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

type mailboxCollector struct{ p *Process }

var mailboxDesc = prometheus.NewDesc("zzim_mailbox_depth", "Events waiting for a node.", []string{"node"}, nil)
var handledDesc = prometheus.NewDesc("zzim_events_handled_total", "Events a node has handled.", []string{"node"}, nil)

func (c *mailboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- mailboxDesc; ch <- handledDesc }
func (c *mailboxCollector) Collect(ch chan<- prometheus.Metric) {
	for _, h := range c.p.Hosts() {
		ch <- prometheus.MustNewConstMetric(mailboxDesc, prometheus.GaugeValue, float64(len(h.mailbox)), h.addr.String())
		ch <- prometheus.MustNewConstMetric(handledDesc, prometheus.CounterValue, float64(h.Handled()), h.addr.String())
	}
}
