package check

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/zzim/zzim/system/store"
)

// Check names.
const (
	CheckStructural      = "structural"
	CheckLinearizability = "linearizability"
)

// DefaultTimeout bounds porcupine's search on one conversation: a search
// that blows up is cut there and the conversation reported unknown.
//
// It used to bound the whole check (30 s): on a machine busy with other
// work, 2,607 of bench-standard's 3,001 conversations were never reached
// before the deadline and the run failed "unknown", though each needs
// milliseconds. A verdict must not depend on the neighbours' load.
const DefaultTimeout = 10 * time.Second

// DefaultTimeoutPerOp raises the default bound for a large conversation to
// this much per operation. broadcast-100k's b:all holds 2.6M operations:
// porcupine decides it in 0.3–0.7 s alone, but a sweep running two such
// runs with a third process beside them (22 of 23 GB in use) judged seed
// 33 unknown at 10 s while the same trace passes alone. 2.6M × 20 µs is
// 52 s, some 70 times the search's own cost. It applies only when no
// Timeout is given: an explicit one is exact.
const DefaultTimeoutPerOp = 20 * time.Microsecond

// DefaultTotalTimeout bounds the whole linearizability check of one
// history, in wall time: a backstop far above what a sound history needs
// (under 1 s for 100,000 operations) even on a starved machine.
const DefaultTotalTimeout = 10 * time.Minute

// Options of Check.
type Options struct {
	// Dump is the store's final contents; nil when there is none.
	Dump []store.Message
	// Faults annotate reports; the liveness bound counts from the last one's end.
	Faults []FaultWindow
	// LivenessBound enables promise 9 when positive.
	LivenessBound time.Duration
	// Checks to run; empty runs all of them.
	Checks []string
	// OutDir receives porcupine's visualizations; "" writes none.
	OutDir string
	// Timeout bounds porcupine's search per conversation; 0 means DefaultTimeout.
	Timeout time.Duration
	// TotalTimeout bounds the whole linearizability check; 0 means DefaultTotalTimeout.
	TotalTimeout time.Duration
}

// Counts say how much was checked.
type Counts struct {
	Conversations        int `json:"conversations"`
	Ops                  int `json:"ops"`
	UnknownSends         int `json:"unknown_sends"`
	PorcupineOK          int `json:"porcupine_ok"`
	PorcupineIllegal     int `json:"porcupine_illegal"`
	PorcupineUnknown     int `json:"porcupine_unknown"`
	StructuralViolations int `json:"structural_violations"`
}

// Verdict of one check. Pass only when every requested check ran to the
// end and found nothing; Unknown when porcupine could not decide some
// partition in time (which is never a pass).
type Verdict struct {
	Pass       bool              `json:"pass"`
	Unknown    bool              `json:"unknown"`
	Violations []Violation       `json:"violations,omitempty"`
	Counts     Counts            `json:"counts"`
	Partitions []PartitionResult `json:"partitions,omitempty"`
	Checks     []string          `json:"checks"`
}

// Summary is the one-line account of how much was checked.
func (v *Verdict) Summary() string {
	c := v.Counts
	return fmt.Sprintf("conversations=%d ops=%d unknown_sends=%d porcupine ok=%d illegal=%d unknown=%d structural_violations=%d",
		c.Conversations, c.Ops, c.UnknownSends, c.PorcupineOK, c.PorcupineIllegal, c.PorcupineUnknown, c.StructuralViolations)
}

// Word is pass, fail (a violation) or unknown (undecided, no violation).
func (v *Verdict) Word() string {
	switch {
	case v.Pass:
		return "pass"
	case len(v.Violations) > 0 || v.Counts.StructuralViolations > 0:
		return "fail"
	}
	return "unknown"
}

// Line is the verdict line: the word, the checks, then the summary.
func (v *Verdict) Line() string {
	return fmt.Sprintf("verdict=%s checks=%s %s", v.Word(), strings.Join(v.Checks, ","), v.Summary())
}

// unknownListedMax bounds the undecided partitions a report lists.
const unknownListedMax = 10

// Report writes the verdict line, then each violation.
func (v *Verdict) Report(w io.Writer) error {
	if _, err := fmt.Fprintln(w, v.Line()); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, vi := range v.Violations {
		if _, err := fmt.Fprintln(w, vi.String()); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	listed := 0
	for _, p := range v.Partitions {
		if p.Result != ResultUnknown {
			continue
		}
		if listed++; listed > unknownListedMax {
			break
		}
		if _, err := fmt.Fprintf(w, "unknown conv=%s ops=%d: %s\n", p.Conv, p.Ops, p.Note); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if n := v.Counts.StructuralViolations + v.Counts.PorcupineIllegal - len(v.Violations); n > 0 {
		if _, err := fmt.Fprintf(w, "(%d more violations not listed)\n", n); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

// ParseChecks splits a comma-separated list of check names.
func ParseChecks(list string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if c != CheckStructural && c != CheckLinearizability {
			return nil, fmt.Errorf("unknown check %q (want %s or %s)", c, CheckStructural, CheckLinearizability)
		}
		out = append(out, c)
	}
	return out, nil
}

func (o *Options) wants(name string) bool {
	if len(o.Checks) == 0 {
		return true
	}
	for _, c := range o.Checks {
		if c == name {
			return true
		}
	}
	return false
}

// Check runs the requested checks on h. The error is for bad options and
// failures to write visualizations; broken promises are in the verdict.
func Check(h *History, opts Options) (*Verdict, error) {
	if _, err := ParseChecks(strings.Join(opts.Checks, ",")); err != nil {
		return nil, err
	}
	v := &Verdict{Counts: countHistory(h, opts.Dump)}
	x := newIndex(h, opts.Dump) // shared by the passes
	if opts.wants(CheckStructural) {
		v.Checks = append(v.Checks, CheckStructural)
		s := runStructuralIndexed(x, h, opts.Dump, StructuralOptions{Faults: opts.Faults, LivenessBound: opts.LivenessBound})
		v.Violations = append(v.Violations, s.out...)
		v.Counts.StructuralViolations = s.Total()
	}
	if opts.wants(CheckLinearizability) {
		v.Checks = append(v.Checks, CheckLinearizability)
		parts, violations, err := linearizability(x, h, LinOptions{
			Dump: opts.Dump, Faults: opts.Faults, Timeout: opts.Timeout, TotalTimeout: opts.TotalTimeout, OutDir: opts.OutDir,
		})
		if err != nil {
			return nil, err
		}
		v.Partitions = parts
		v.Violations = append(v.Violations, violations...)
		for _, p := range parts {
			switch p.Result {
			case ResultOK:
				v.Counts.PorcupineOK++
			case ResultIllegal:
				v.Counts.PorcupineIllegal++
			default:
				v.Counts.PorcupineUnknown++
			}
		}
	}
	v.Unknown = v.Counts.PorcupineUnknown > 0
	v.Pass = !v.Unknown && v.Counts.StructuralViolations == 0 && v.Counts.PorcupineIllegal == 0 && len(v.Violations) == 0
	return v, nil
}

// countHistory counts conversations and unknown sends.
func countHistory(h *History, dump []store.Message) Counts {
	convs := map[string]bool{}
	c := Counts{Ops: len(h.Ops)}
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Conv != "" {
			convs[op.Conv] = true
		}
		if op.Kind == KindSend && op.Error == "" && !acked(op) {
			c.UnknownSends++
		}
	}
	for _, m := range dump {
		convs[m.ConvID] = true
	}
	c.Conversations = len(convs)
	return c
}
