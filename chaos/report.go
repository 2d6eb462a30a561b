package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// violationsShownMax bounds the violations the text report lists.
const violationsShownMax = 10

// Report is the outcome of one chaos run.
type Report struct {
	Scenario string  `json:"scenario"`
	Run      string  `json:"run"` // the run id: container names and labels
	Seed     uint64  `json:"seed"`
	Bugs     string  `json:"bugs"`
	Scale    float64 `json:"scale"`
	Expect   string  `json:"expect,omitempty"`
	// Word is pass, fail or skipped (every fault only the simulator can do).
	// An expect: fail scenario that failed as it expects passes.
	Word    string   `json:"verdict"`
	Reasons []string `json:"reasons,omitempty"`
	// AsExpected: the run failed, exactly as its scenario expects; Expected
	// are those failures.
	AsExpected bool              `json:"failed_as_expected,omitempty"`
	Expected   []string          `json:"expected_failures,omitempty"`
	Verdict    *check.Verdict    `json:"check,omitempty"`
	Faults     []*FaultRecord    `json:"faults"`
	Exercised  map[string]uint64 `json:"exercised,omitempty"`
	Required   []string          `json:"required,omitempty"`
	Missing    []string          `json:"missing,omitempty"`
	Messages   MessageCounts     `json:"messages"`
	Latency    Latency           `json:"send_to_ack"`
	// LatencyBeforeFaults covers the sends called before the first fault
	// started: the topology's own cost (a semi-synchronous commit waits
	// for the replica).
	LatencyBeforeFaults Latency `json:"send_to_ack_before_faults"`
	// Outage is what clients saw of the faults (sends that failed).
	Outage Outage `json:"client_outage"`
	// Replication is the primary's semi-sync state checked before the run
	// (a replicated database only).
	Replication *SemiSync `json:"replication,omitempty"`
	// Dependencies is what the dependency faults did.
	Dependencies *DepCounters `json:"dependencies,omitempty"`
	// Lost are acknowledged sends the store does not hold after the run
	// (the promoted primary's, after a failover); LostCount counts them all.
	Lost      []LostMessage `json:"lost_acknowledged,omitempty"`
	LostCount int           `json:"lost_acknowledged_count"`
	Notes     []string      `json:"notes,omitempty"`
	// Metrics are the services' zzim_* counters summed over services and
	// incarnations at the end of the run.
	Metrics map[string]uint64 `json:"metrics,omitempty"`
	// Events is the number of history operations recorded.
	Events int `json:"events"`
	// Phase durations (s): containers up, traffic with faults, settle
	// (acks, final sync) and the whole run including teardown.
	SetupSeconds    float64 `json:"setup_seconds"`
	TrafficSeconds  float64 `json:"traffic_seconds"`
	SettleSeconds   float64 `json:"settle_seconds"`
	LoginSeconds    float64 `json:"login_seconds"`
	CheckSeconds    float64 `json:"check_seconds"`
	TeardownSeconds float64 `json:"teardown_seconds"`
	// Teardown counts what the run removed and what was left (checked
	// by listing the run's label again after removal).
	Teardown    Teardown `json:"teardown"`
	WallSeconds float64  `json:"wall_seconds"`
}

// MessageCounts say how much traffic the run carried.
type MessageCounts struct {
	Sends         int64 `json:"sends"`          // accepted by a client
	Refused       int64 `json:"refused"`        // a client's queue was full
	Acked         int64 `json:"acked"`          // definite success
	Failed        int64 `json:"failed"`         // definite failure (e.g. OVERLOADED)
	UnackedAtEnd  int   `json:"unacked_at_end"` // outcome still unknown to the client after the settle wait
	Stored        int   `json:"stored"`         // messages in the store dump
	DeliverPush   int   `json:"deliver_push"`
	DeliverSync   int   `json:"deliver_sync"`
	MissingAtEnd  int   `json:"missing_at_end"` // (client, stored message) pairs not held after the final sync
	NoticesSent   int64 `json:"notices_sent"`
	NoticesFailed int64 `json:"notices_failed"`
}

// Latency of acknowledged sends, call to return on the history clock.
type Latency struct {
	N   int           `json:"n"`
	P50 time.Duration `json:"p50"`
	P90 time.Duration `json:"p90"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Pass reports whether the run passed.
func (r *Report) Pass() bool { return r.Word == "pass" }

// Line is the final line, the same shape as `zzim sim run`'s:
//
//	verdict=pass|fail|skipped seed=N trace=- events=E sim_seconds=S wall_seconds=W
//
// A real run has no trace hash (trace=-); events are the history's
// operations; sim_seconds is the real time the run was under test
// (traffic with faults, then settle), wall_seconds the whole run with
// container start and teardown.
func (r *Report) Line() string {
	return fmt.Sprintf("verdict=%s seed=%d trace=- events=%d sim_seconds=%.1f wall_seconds=%.2f",
		r.Word, r.Seed, r.Events, r.TrafficSeconds+r.SettleSeconds, r.WallSeconds)
}

// Summary is one line of what a dependency scenario is about: acknowledged
// messages lost, duplicated and reordered, the outage clients saw, and
// what the harness did to the dependencies.
//
//	summary: acked=A lost=L duplicated=D reordered=R client_outage=Xs failed_sends=F ack_gap_max=Ys [db_failovers=1 ...]
//
// lost: acknowledged sends not in the store; duplicated: violations of
// promises 3 and 6; reordered: of promises 1 and 4.
func (r *Report) Summary() string {
	dup, reord := 0, 0
	if r.Verdict != nil {
		for _, v := range r.Verdict.Violations {
			switch v.Promise {
			case check.PromiseIdempotent, check.PromiseNoDuplicates:
				dup++
			case check.PromiseTotalOrder, check.PromiseFIFO:
				reord++
			}
		}
	}
	line := fmt.Sprintf("summary: acked=%d lost=%d duplicated=%d reordered=%d client_outage=%.2fs failed_sends=%d ack_gap_max=%.2fs",
		r.Messages.Acked, r.LostCount, dup, reord, r.Outage.Duration.Seconds(), r.Outage.FailedSends, r.Outage.AckGapMax.Seconds())
	if d := r.Dependencies; d != nil {
		line += fmt.Sprintf(" db_crash_recoveries=%d db_failovers=%d nats_node_restarts=%d nats_leader_changes=%d presence_lost=%d",
			d.DBCrashRecoveries, d.DBFailovers, d.NATSNodeRestarts, d.NATSLeaderChanges, d.PresenceLost)
	}
	return line
}

// judge fills the report from the checkers' verdict and the counters, and
// decides it as the simulator does (scenarios.Judge): an expect: fail
// scenario passes only when it breaks what it names.
func (r *Report) judge(sc *scenarios.Scenario, v *check.Verdict, ops []check.Op, dump []store.Message, w *workload, scr *scraper,
	plan *faultPlan) {
	r.Verdict = v
	r.Events = len(ops)
	overloaded := 0
	for i := range ops {
		op := &ops[i]
		switch op.Kind {
		case check.KindDeliver:
			if op.In.Via == "push" {
				r.Messages.DeliverPush++
			} else {
				r.Messages.DeliverSync++
			}
		case check.KindSend:
			if op.Error == wire.ErrorCode_OVERLOADED.String() {
				overloaded++
			}
		}
	}
	r.Latency = sendLatency(ops)
	if first := plan.firstStart(); first > 0 {
		var before []check.Op
		for i := range ops {
			if ops[i].Call < first {
				before = append(before, ops[i])
			}
		}
		r.LatencyBeforeFaults = sendLatency(before)
	}
	r.Outage = clientOutage(ops)
	acksResumed(plan.records, ops)
	lost := lostAcknowledged(ops, dump)
	r.LostCount = len(lost)
	r.Lost = lost[:min(len(lost), lostShownMax)]
	if plan.hasDepFaults() {
		dc := plan.dep.snapshot()
		r.Dependencies = &dc
	}
	m := &r.Messages
	m.Sends, m.Refused, m.Acked, m.Failed = w.sends.Load(), w.refused.Load(), w.acked.Load(), w.failed.Load()
	m.Stored = len(dump)
	m.NoticesSent, m.NoticesFailed = w.noticesSent.Load(), w.noticesFailed.Load()
	r.Exercised = scr.exercised(overloaded, w)
	for k, v := range depExercised(r.Dependencies, len(lost)) {
		r.Exercised[k] = v
	}
	r.decide(sc.Judge(r.failures(v, plan)))
}

// decide sets the verdict from the scenario's judgement of the failures.
func (r *Report) decide(j scenarios.Judgement) {
	r.Word, r.AsExpected = "fail", j.AsExpected
	switch {
	case j.AsExpected:
		r.Word, r.Expected = "pass", j.Reasons
	case j.Pass:
		r.Word = "pass"
	default:
		r.Reasons = append(r.Reasons, j.Reasons...)
	}
}

// failures are what went wrong in the run, each with the promise it breaks
// (scenarios.Failure): the checkers' violations, one per promise with
// their count, and as 0 (no promise) an undecided checker, a fault that
// failed and a required exercised counter that stayed zero. An acknowledged
// message missing from the store is the checkers' promise 2 (store against
// acks), not a failure of its own.
func (r *Report) failures(v *check.Verdict, plan *faultPlan) []scenarios.Failure {
	var out []scenarios.Failure
	perPromise := map[int]int{}
	var promises []int
	for _, vi := range v.Violations {
		if perPromise[vi.Promise] == 0 {
			promises = append(promises, vi.Promise)
		}
		perPromise[vi.Promise]++
	}
	sort.Ints(promises)
	for _, p := range promises {
		out = append(out, scenarios.Failure{Promise: p,
			Reason: fmt.Sprintf("promise %d (%s) broken: %d violations", p, check.PromiseName(p), perPromise[p])})
	}
	if !v.Pass && len(v.Violations) == 0 {
		out = append(out, scenarios.Failure{Reason: "checkers: " + v.Word() + ": " + v.Summary()})
	}
	for _, f := range plan.records {
		if f.Status == StatusFailed {
			out = append(out, scenarios.Failure{Reason: fmt.Sprintf("fault %s %s failed: %s", f.What, f.Target, f.Err)})
		}
	}
	for _, name := range r.Required {
		n, known := r.Exercised[name]
		switch {
		case !known:
			out = append(out, scenarios.Failure{Reason: "required exercised counter " + name + " is not measured by the chaos harness"})
			r.Missing = append(r.Missing, name)
		case n == 0:
			out = append(out, scenarios.Failure{Reason: "required exercised counter " + name + " stayed zero"})
			r.Missing = append(r.Missing, name)
		}
	}
	return out
}

// sendLatency summarises the acknowledged sends' call-to-return times.
func sendLatency(ops []check.Op) Latency {
	var lat []int64
	for i := range ops {
		op := &ops[i]
		if op.Kind == check.KindSend && op.Returned() && !op.Unknown && op.Error == "" && op.Out.Seq > 0 {
			lat = append(lat, *op.Return-op.Call)
		}
	}
	if len(lat) == 0 {
		return Latency{}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) time.Duration { return time.Duration(lat[int(q*float64(len(lat)-1))]) }
	return Latency{N: len(lat), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: time.Duration(lat[len(lat)-1])}
}

// WriteText writes the human report; the verdict line ends it.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("chaos %s run=%s seed=%d bugs=%s scale=%.2f expect=%s\n", r.Scenario, r.Run, r.Seed, orDash(r.Bugs), r.Scale, orDash(r.Expect))
	for _, n := range r.Notes {
		ew.printf("note: %s\n", n)
	}
	ew.printf("faults:\n")
	for _, f := range r.Faults {
		ew.printf("  at=%-7s for=%-7s %-10s %-22s %-12s %s%s\n", f.At.Round(time.Millisecond), f.For.Round(time.Millisecond),
			f.What, f.Target, f.Status, f.Note, errSuffix(f.Err))
		if f.AcksResumed > 0 {
			ew.printf("    the first ack after the fault ended (healed, restarted or promoted) came %v later\n", f.AcksResumed.Round(time.Millisecond))
		}
	}
	ew.printf("phases: setup=%.1fs login=%.1fs traffic=%.1fs settle=%.1fs check=%.1fs teardown=%.1fs wall=%.1fs\n", r.SetupSeconds,
		r.LoginSeconds, r.TrafficSeconds, r.SettleSeconds, r.CheckSeconds, r.TeardownSeconds, r.WallSeconds)
	if t := r.Teardown; t.Containers+t.Networks > 0 {
		ew.printf("teardown: removed %d containers and %d networks; left %d containers and %d networks\n", t.Containers,
			t.Networks, t.LeftContainers, t.LeftNetworks)
	}
	m := r.Messages
	ew.printf("messages: sends=%d acked=%d failed=%d refused=%d unacked_at_end=%d stored=%d deliver_push=%d deliver_sync=%d missing_at_end=%d notices=%d/%d\n",
		m.Sends, m.Acked, m.Failed, m.Refused, m.UnackedAtEnd, m.Stored, m.DeliverPush, m.DeliverSync, m.MissingAtEnd,
		m.NoticesSent, m.NoticesSent+m.NoticesFailed)
	l := r.Latency
	ew.printf("send-to-ack: n=%d p50=%v p90=%v p99=%v max=%v\n", l.N, l.P50.Round(time.Microsecond), l.P90.Round(time.Microsecond),
		l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
	if l := r.LatencyBeforeFaults; l.N > 0 {
		ew.printf("send-to-ack before the first fault: n=%d p50=%v p90=%v p99=%v max=%v\n", l.N, l.P50.Round(time.Microsecond),
			l.P90.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
	}
	o := r.Outage
	switch {
	case o.FailedSends == 0:
		ew.printf("client outage: none (no send failed); longest gap between acks %v\n", o.AckGapMax.Round(time.Millisecond))
	case !o.Recovered:
		ew.printf("client outage: %d sends failed, no send succeeded after the first failure; longest gap between acks %v\n",
			o.FailedSends, o.AckGapMax.Round(time.Millisecond))
	default:
		ew.printf("client outage: %v from the first failed send to the first successful send after it (%d sends failed); longest gap between acks %v\n",
			o.Duration.Round(time.Millisecond), o.FailedSends, o.AckGapMax.Round(time.Millisecond))
	}
	if rs := r.Replication; rs != nil {
		ew.printf("replication before the run: semi-sync enabled=%v status=%v clients=%d\n", rs.Enabled, rs.Status, rs.Clients)
	}
	if d := r.Dependencies; d != nil {
		for _, p := range d.Promotions {
			ew.printf("failover: %v in all: the replica applied its relay log in %v, STOP/RESET SLAVE and read_only off in %v, das re-pointed in %v; gtid %s\n",
				p.Total.Round(time.Millisecond), p.AppliedWait.Round(time.Millisecond), p.Stop.Round(time.Millisecond),
				p.Repoint.Round(time.Millisecond), p.GTID)
		}
		for _, l := range d.Leaders {
			ew.printf("nats: took %s; meta leader %s before, %s while it was away, %s after\n", l.Target, l.Before, l.During, l.After)
		}
	}
	if r.LostCount > 0 {
		ew.printf("lost acknowledged messages: %d (not in the store after the run)\n", r.LostCount)
		for _, l := range r.Lost {
			now := ""
			if l.Replaced != "" {
				now = " (the seq now holds " + l.Replaced + ")"
			}
			ew.printf("  conv=%s seq=%d sender=%s client_msg_id=%s%s\n", l.Conv, l.Seq, l.Sender, l.ClientMsgID, now)
		}
		if r.LostCount > len(r.Lost) {
			ew.printf("  (%d more in report.json's count; listed: the first %d)\n", r.LostCount-len(r.Lost), len(r.Lost))
		}
	}
	if r.Verdict != nil {
		ew.printf("check: %s\n", r.Verdict.Line())
	}
	if r.Exercised != nil {
		ew.printf("exercised (* required):\n")
		for _, c := range ExercisedCounters {
			mark := " "
			for _, req := range r.Required {
				if req == c.Name {
					mark = "*"
				}
			}
			ew.printf("  %s %-26s %d\n", mark, c.Name, r.Exercised[c.Name])
		}
	}
	if r.Verdict != nil {
		for i, vi := range r.Verdict.Violations {
			if i == violationsShownMax {
				ew.printf("(%d more violations: see report.txt with --out)\n", len(r.Verdict.Violations)-i)
				break
			}
			ew.printf("%s\n", vi.String())
		}
	}
	for _, reason := range r.Reasons {
		ew.printf("reason: %s\n", reason)
	}
	if r.AsExpected {
		ew.printf("judgement: failed as expected: %s\n", strings.Join(r.Expected, "; "))
	}
	ew.printf("%s\n", r.Summary())
	ew.printf("%s\n", r.Line())
	return ew.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return " error: " + e
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// writeArtifacts saves what a later `zzim check` needs and the reports.
func writeArtifacts(dir string, r *Report, ops []check.Op, dump []store.Message, windows []check.FaultWindow) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("chaos: out dir: %w", err)
	}
	steps := []struct {
		name string
		fn   func(io.Writer) error
	}{
		{"history.jsonl", func(w io.Writer) error { return check.WriteHistory(w, ops) }},
		{"store.jsonl", func(w io.Writer) error { return check.WriteStoreDump(w, dump) }},
		{"faults.jsonl", func(w io.Writer) error { return check.WriteFaultWindows(w, windows) }},
	}
	for _, s := range steps {
		if err := writeFile(dir, s.name, s.fn); err != nil {
			return err
		}
	}
	return writeReports(dir, r)
}

// writeReports writes report.txt and report.json.
func writeReports(dir string, r *Report) error {
	steps := []struct {
		name string
		fn   func(io.Writer) error
	}{
		{"report.txt", func(w io.Writer) error {
			if err := r.WriteText(w); err != nil {
				return err
			}
			if r.Verdict != nil {
				return r.Verdict.Report(w)
			}
			return nil
		}},
		{"report.json", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(r)
		}},
	}
	for _, s := range steps {
		if err := writeFile(dir, s.name, s.fn); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, name string, fn func(io.Writer) error) error {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	if err := fn(f); err != nil {
		f.Close()
		return fmt.Errorf("chaos: write %s: %w", name, err)
	}
	return f.Close()
}

// LoadScenario reads a scenario file, or an embedded scenario by name.
func LoadScenario(arg string) (*scenarios.Scenario, error) {
	if strings.HasSuffix(arg, ".yaml") || strings.ContainsRune(arg, os.PathSeparator) {
		if data, err := os.ReadFile(arg); err == nil {
			return scenarios.Parse(filepath.Base(arg), data)
		} else if strings.ContainsRune(arg, os.PathSeparator) {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	return scenarios.Load(arg)
}
