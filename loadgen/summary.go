package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary is a run's account: summary.json in --out.
type Summary struct {
	Profile          string  `json:"profile"`
	Seed             uint64  `json:"seed"`
	DurationS        float64 `json:"duration_s"`
	Users            int     `json:"users"`
	TCPUsers         int     `json:"tcp_users"`
	LongPollUsers    int     `json:"long_poll_users"`
	StormUsers       int     `json:"storm_users"`
	Conversations    int     `json:"conversations"`
	ConnectedAtStart int     `json:"connected_at_start"`
	ConnectS         float64 `json:"connect_s"`
	Drained          bool    `json:"drained"` // every accepted send had an outcome before the drain ended

	Offered   int64 `json:"offered"`
	Accepted  int64 `json:"accepted"`
	Acked     int64 `json:"acked"`
	Failed    int64 `json:"failed"`
	Delivered int64 `json:"delivered"`
	Churns    int64 `json:"churns"`

	OfferedRate  float64 `json:"offered_rate"`  // per second over the traffic phase
	AchievedRate float64 `json:"achieved_rate"` // acks per second observed during the traffic phase
	DeliverRate  float64 `json:"deliver_rate"`

	Errors     map[string]int64 `json:"errors"`
	ErrorCount int64            `json:"error_count"`
	ErrorRate  float64          `json:"error_rate"` // errors / offered

	Latency map[string]Percentiles `json:"latency"` // ack, ack_raw, deliver, deliver_raw, lag

	Connections struct {
		Peak  int64 `json:"peak"`
		Final int64 `json:"final"`
	} `json:"connections"`
	Generator struct {
		LagP99MS  float64 `json:"lag_p99_ms"`
		LagMaxMS  float64 `json:"lag_max_ms"`
		Dropped   int64   `json:"dropped"`
		Untracked int64   `json:"untracked"`
	} `json:"generator"`

	Windows    []Window          `json:"windows"`
	Seconds    []Row             `json:"seconds"`
	Thresholds []ThresholdResult `json:"thresholds,omitempty"`
	Verify     *VerifySummary    `json:"verify,omitempty"`
}

// Window is a stretch of the run: the baseline, or one spike.
type Window struct {
	Name         string  `json:"name"`
	FromS        float64 `json:"from_s"`
	ToS          float64 `json:"to_s"`
	Multiplier   float64 `json:"multiplier,omitempty"`
	Seconds      int     `json:"seconds"` // whole seconds averaged
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	AckP99MS     float64 `json:"ack_p99_ms"`     // the worst second's p99
	DeliverP99MS float64 `json:"deliver_p99_ms"` // the worst second's p99
}

// VerifySummary is the checkers' verdict.
type VerifySummary struct {
	Pass bool   `json:"pass"`
	Word string `json:"word"`
	Line string `json:"line"`
}

// windowMargin: seconds after a spike ends that belong to neither the
// spike nor the baseline (the backlog drains there).
const windowMargin = 2

func (g *gen) summary(connected int, connectTime time.Duration, drained bool) *Summary {
	m := g.m
	p := g.prof
	s := &Summary{
		Profile: p.Name, Seed: g.cfg.Seed, DurationS: p.Duration.D().Seconds(),
		Users: len(g.users), TCPUsers: len(g.tcpUsers), LongPollUsers: len(g.users) - len(g.tcpUsers),
		StormUsers: len(g.allUsers()) - len(g.users), Conversations: len(g.convs),
		ConnectedAtStart: connected, ConnectS: connectTime.Seconds(), Drained: drained,
		Offered: m.Offered.Load(), Accepted: m.Accepted.Load(), Acked: m.Acked.Load(), Failed: m.Failed.Load(),
		Delivered: m.Delivered.Load(), Churns: g.churns.Load(),
		Errors: m.ErrorKinds(), ErrorCount: m.Errors.Load(), Latency: map[string]Percentiles{},
		Seconds: m.Rows(),
	}
	for _, name := range Series {
		s.Latency[name] = percentiles(m.Hist(name))
	}
	if s.Offered > 0 {
		s.ErrorRate = float64(s.ErrorCount) / float64(s.Offered)
	}
	dur := p.Duration.D().Seconds()
	var acked, delivered int64
	for _, r := range s.Seconds {
		if float64(r.T) < dur {
			acked += r.Achieved
			delivered += r.Delivered
		}
	}
	s.OfferedRate = float64(s.Offered) / dur
	s.AchievedRate = float64(acked) / dur
	s.DeliverRate = float64(delivered) / dur
	s.Connections.Peak = m.OnlinePeak.Load()
	s.Connections.Final = m.Online()
	s.Generator.LagP99MS = s.Latency[SeriesLag].P99
	s.Generator.LagMaxMS = s.Latency[SeriesLag].Max
	s.Generator.Dropped = m.Dropped.Load()
	s.Generator.Untracked = m.Untracked.Load()
	s.Windows = windows(&p.Workload, p.Duration.D(), s.Seconds)
	return s
}

// windows averages whole seconds: inside each spike, and the baseline (no
// spike, not the first second, not within windowMargin after a spike).
func windows(w *Workload, dur time.Duration, rows []Row) []Window {
	inSpike := func(t int) int {
		for i, sp := range w.Spikes {
			from, to := sp.At.D(), sp.At.D()+sp.For.D()
			st := time.Duration(t) * time.Second
			if st >= from && st+time.Second <= to {
				return i
			}
			if st+time.Second > from && st < to+windowMargin*time.Second {
				return -2 // partly in a spike, or its aftermath
			}
		}
		return -1
	}
	base := Window{Name: "baseline", ToS: dur.Seconds()}
	spikes := make([]Window, len(w.Spikes))
	for i, sp := range w.Spikes {
		spikes[i] = Window{Name: fmt.Sprintf("spike%d", i), FromS: sp.At.D().Seconds(),
			ToS: (sp.At.D() + sp.For.D()).Seconds(), Multiplier: sp.Multiplier}
	}
	add := func(win *Window, r Row) {
		win.Seconds++
		win.OfferedRate += float64(r.Offered)
		win.AchievedRate += float64(r.Achieved)
		win.AckP99MS = max(win.AckP99MS, r.AckP99)
		win.DeliverP99MS = max(win.DeliverP99MS, r.DeliverP99)
	}
	for _, r := range rows {
		if r.T < 1 || time.Duration(r.T+1)*time.Second > dur {
			continue
		}
		switch i := inSpike(r.T); {
		case i >= 0:
			add(&spikes[i], r)
		case i == -1:
			add(&base, r)
		}
	}
	out := append([]Window{base}, spikes...)
	for i := range out {
		if n := float64(out[i].Seconds); n > 0 {
			out[i].OfferedRate /= n
			out[i].AchievedRate /= n
		}
	}
	return out
}

// WriteTable prints the final summary table.
func (s *Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "profile\t%s\tseed %d\tduration %.0fs\n", s.Profile, s.Seed, s.DurationS)
	fmt.Fprintf(tw, "users\t%d (tcp %d, long-poll %d, storm %d)\tconversations %d\tconnected at start %d in %.1fs\n",
		s.Users, s.TCPUsers, s.LongPollUsers, s.StormUsers, s.Conversations, s.ConnectedAtStart, s.ConnectS)
	fmt.Fprintf(tw, "sends\toffered %d (%.1f/s)\tacked %d (%.1f/s)\tdelivered %d (%.1f/s)\tfailed %d\n",
		s.Offered, s.OfferedRate, s.Acked, s.AchievedRate, s.Delivered, s.DeliverRate, s.Failed)
	fmt.Fprintf(tw, "latency (ms)\tcount\tmean\tp50\tp90\tp99\tp99.9\tmax\n")
	for _, name := range Series {
		l := s.Latency[name]
		fmt.Fprintf(tw, "  %s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", name, l.Count, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	for _, win := range s.Windows {
		fmt.Fprintf(tw, "window %s\t[%.0fs,%.0fs)\toffered %.1f/s\tachieved %.1f/s\tworst p99 ack %.1fms deliver %.1fms\n",
			win.Name, win.FromS, win.ToS, win.OfferedRate, win.AchievedRate, win.AckP99MS, win.DeliverP99MS)
	}
	var errs []string
	for _, k := range sortedKeys(s.Errors) {
		errs = append(errs, fmt.Sprintf("%s=%d", k, s.Errors[k]))
	}
	fmt.Fprintf(tw, "errors\t%d (%.3f%%)\t%s\n", s.ErrorCount, 100*s.ErrorRate, strings.Join(errs, " "))
	fmt.Fprintf(tw, "connections\tpeak %d\tfinal %d\tchurns %d\n", s.Connections.Peak, s.Connections.Final, s.Churns)
	fmt.Fprintf(tw, "generator\tlag p99 %.2fms max %.2fms\tdropped %d\tuntracked %d\tdrained %v\n",
		s.Generator.LagP99MS, s.Generator.LagMaxMS, s.Generator.Dropped, s.Generator.Untracked, s.Drained)
	for _, t := range s.Thresholds {
		word := "ok"
		if !t.Pass {
			word = "BROKEN"
		}
		fmt.Fprintf(tw, "threshold\t%s\t%s\tvalue %s\n", t.Expr, word, t.Value)
	}
	if s.Verify != nil {
		fmt.Fprintf(tw, "verify\t%s\n", s.Verify.Line)
	}
	return tw.Flush()
}

// WriteOut writes summary.json, the HDR histograms (percentile
// distributions, values in ms), the plot and, in verify mode, the history.
func (r *Result) WriteOut(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("out: %w", err)
	}
	b, err := json.MarshalIndent(r.Summary, "", "  ")
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	for _, name := range Series {
		if err := writeHist(filepath.Join(dir, name+".hgrm"), r.Metrics, name); err != nil {
			return err
		}
	}
	if err := writePlot(filepath.Join(dir, "plot.png"), r.Summary); err != nil {
		return err
	}
	if r.History != nil {
		if err := writeHistory(filepath.Join(dir, "history.jsonl"), r); err != nil {
			return err
		}
	}
	return nil
}

func writeHist(path string, m *Metrics, name string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("histogram %s: %w", name, err)
	}
	h := m.Hist(name)
	fmt.Fprintf(f, "# %s latency, values in ms (HdrHistogram percentile distribution)\n", name)
	if _, err := h.PercentilesPrint(f, 5, 1000); err != nil {
		f.Close()
		return fmt.Errorf("histogram %s: %w", name, err)
	}
	return f.Close()
}
