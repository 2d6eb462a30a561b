package loadgen

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
)

// Threshold is one --threshold EXPR: metric op value, e.g. p99_deliver<50ms,
// errors<0.1%, achieved_rate>900.
//
// Metrics: pNN_SERIES and max_SERIES and mean_SERIES for the series ack,
// ack_raw, deliver, deliver_raw and lag (NN: 50, 90, 99, 999 for 99.9);
// errors (a percentage of offered with %, else a count); dropped;
// offered_rate, achieved_rate, deliver_rate (per second). Latencies take a
// duration ("50ms") or a number of milliseconds.
type Threshold struct {
	Expr   string
	Metric string
	Op     string
	Value  float64 // ms for latencies, a fraction for errors%, else a count or rate
	Pct    bool
}

// ThresholdResult is one threshold judged.
type ThresholdResult struct {
	Expr  string `json:"expr"`
	Pass  bool   `json:"pass"`
	Value string `json:"value"`
}

// ErrThreshold marks a malformed threshold expression (a usage error).
var ErrThreshold = errors.New("threshold")

var thresholdOps = []string{"<=", ">=", "<", ">"}

// ParseThreshold reads one expression.
func ParseThreshold(expr string) (Threshold, error) {
	e := strings.ReplaceAll(expr, " ", "")
	for _, op := range thresholdOps {
		i := strings.Index(e, op)
		if i <= 0 {
			continue
		}
		t := Threshold{Expr: expr, Metric: e[:i], Op: op}
		val := e[i+len(op):]
		if err := t.parseValue(val); err != nil {
			return Threshold{}, fmt.Errorf("%w %q: %w", ErrThreshold, expr, err)
		}
		if _, err := t.metricKind(); err != nil {
			return Threshold{}, fmt.Errorf("%w %q: %w", ErrThreshold, expr, err)
		}
		return t, nil
	}
	return Threshold{}, fmt.Errorf("%w %q: want METRIC<VALUE, METRIC>VALUE, <= or >=", ErrThreshold, expr)
}

type metricKind int

const (
	kindLatency metricKind = iota
	kindErrors
	kindCount
)

func (t *Threshold) metricKind() (metricKind, error) {
	switch t.Metric {
	case "errors":
		return kindErrors, nil
	case "dropped", "offered_rate", "achieved_rate", "deliver_rate":
		if t.Pct {
			return 0, fmt.Errorf("%s takes no percentage", t.Metric)
		}
		return kindCount, nil
	}
	stat, series, ok := strings.Cut(t.Metric, "_")
	if !ok || !knownSeries(series) || !knownStat(stat) {
		return 0, fmt.Errorf("unknown metric %q (pNN_SERIES, max_SERIES, mean_SERIES with SERIES in %s; errors, dropped, offered_rate, achieved_rate, deliver_rate)",
			t.Metric, strings.Join(Series, ", "))
	}
	if t.Pct {
		return 0, fmt.Errorf("a latency takes a duration, not a percentage")
	}
	return kindLatency, nil
}

func knownSeries(s string) bool {
	for _, x := range Series {
		if x == s {
			return true
		}
	}
	return false
}

func knownStat(s string) bool {
	switch s {
	case "p50", "p90", "p99", "p999", "max", "mean":
		return true
	}
	return false
}

func (t *Threshold) parseValue(v string) error {
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("bad percentage %q", v)
		}
		t.Value, t.Pct = f/100, true
		return nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		t.Value = f
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("bad value %q: want a number, a duration or a percentage", v)
	}
	t.Value = float64(d) / float64(time.Millisecond)
	return nil
}

// observed is the metric's value in s (ms for latencies).
func (t *Threshold) observed(s *Summary) (float64, string) {
	switch t.Metric {
	case "errors":
		if t.Pct {
			return s.ErrorRate, fmt.Sprintf("%.4f%%", 100*s.ErrorRate)
		}
		return float64(s.ErrorCount), strconv.FormatInt(s.ErrorCount, 10)
	case "dropped":
		return float64(s.Generator.Dropped), strconv.FormatInt(s.Generator.Dropped, 10)
	case "offered_rate":
		return s.OfferedRate, fmt.Sprintf("%.1f/s", s.OfferedRate)
	case "achieved_rate":
		return s.AchievedRate, fmt.Sprintf("%.1f/s", s.AchievedRate)
	case "deliver_rate":
		return s.DeliverRate, fmt.Sprintf("%.1f/s", s.DeliverRate)
	}
	stat, series, _ := strings.Cut(t.Metric, "_")
	l := s.Latency[series]
	v := map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99, "p999": l.P999, "max": l.Max, "mean": l.Mean}[stat]
	return v, fmt.Sprintf("%.3fms", v)
}

// Judge evaluates t on s.
func (t *Threshold) Judge(s *Summary) ThresholdResult {
	v, shown := t.observed(s)
	var pass bool
	switch t.Op {
	case "<":
		pass = v < t.Value
	case "<=":
		pass = v <= t.Value
	case ">":
		pass = v > t.Value
	case ">=":
		pass = v >= t.Value
	}
	return ThresholdResult{Expr: t.Expr, Pass: pass, Value: shown}
}

// JudgeAll records every threshold's result in s and reports whether all held.
func JudgeAll(ts []Threshold, s *Summary) bool {
	ok := true
	s.Thresholds = nil
	for i := range ts {
		r := ts[i].Judge(s)
		s.Thresholds = append(s.Thresholds, r)
		ok = ok && r.Pass
	}
	return ok
}

func writeHistory(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := check.WriteHistory(f, r.History); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if r.Verdict == nil {
		return nil
	}
	vf, err := os.Create(path[:len(path)-len("history.jsonl")] + "verdict.txt")
	if err != nil {
		return fmt.Errorf("verdict: %w", err)
	}
	if err := r.Verdict.Report(vf); err != nil {
		vf.Close()
		return err
	}
	return vf.Close()
}
