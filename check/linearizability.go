package check

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/zzim/zzim/system/store"
)

// Linearizability results per partition.
const (
	ResultOK      = "ok"
	ResultIllegal = "illegal"
	ResultUnknown = "unknown"
)

// Bounds of the linearizability report.
const (
	// VisualizationsMax bounds the HTML files written for one check.
	VisualizationsMax = 20
	// involvedOpsMax bounds the ops a linearizability violation lists.
	involvedOpsMax = 8
	// verboseTimeoutMin is the least time the rerun that explains an
	// illegal partition gets, even when the overall timeout has passed.
	verboseTimeoutMin = time.Second
)

// neverReturned stands for +infinity: the return of a send whose outcome
// is unknown, so it may take effect at any point after its call.
const neverReturned = math.MaxInt64

// PartitionResult is porcupine's verdict on one conversation.
type PartitionResult struct {
	Conv   string `json:"conv"`
	Ops    int    `json:"ops"`
	Result string `json:"result"` // ok | illegal | unknown
	Note   string `json:"note,omitempty"`
}

// LinOptions tune the linearizability check.
type LinOptions struct {
	Dump    []store.Message // resolves sends with unknown outcome; nil: none
	Faults  []FaultWindow   // annotate the visualizations
	Timeout time.Duration   // per conversation; 0 means DefaultTimeout
	// TotalTimeout bounds the whole check; 0 means DefaultTotalTimeout.
	TotalTimeout time.Duration
	OutDir       string // where visualizations go; "" writes none
}

// partition is one conversation's operations and model.
type partition struct {
	model       *convModel
	ops         []porcupine.Operation
	undecidable string // non-empty: reported unknown without running porcupine
}

// Linearizability checks each conversation's sends and syncs against the
// log model with porcupine. Partitions run in parallel, each bounded by
// Timeout, all by TotalTimeout; a partition porcupine could not decide in
// time is "unknown".
// The model is partitioned here, not through porcupine's Model.Partition,
// because porcupine merges the partitions' verdicts and the report needs
// each one.
func Linearizability(h *History, opts LinOptions) ([]PartitionResult, []Violation, error) {
	return linearizability(nil, h, opts)
}

// linearizability is Linearizability on h's index, built here when nil.
func linearizability(x *index, h *History, opts LinOptions) ([]PartitionResult, []Violation, error) {
	if x == nil {
		x = newIndex(h, opts.Dump)
	}
	b := budget{each: opts.Timeout}
	if b.each <= 0 {
		b.each, b.perOp = DefaultTimeout, DefaultTimeoutPerOp
	}
	total := opts.TotalTimeout
	if total <= 0 {
		total = DefaultTotalTimeout
	}
	b.deadline = time.Now().Add(total)
	parts := buildPartitionsIndexed(x, h, opts.Dump)
	results := runPartitions(parts, b)
	out := make([]PartitionResult, len(parts))
	var violations []Violation
	written := 0
	for i, p := range parts {
		out[i] = PartitionResult{Conv: p.model.conv, Ops: len(p.ops), Result: results[i], Note: p.undecidable}
		if results[i] == ResultUnknown && p.undecidable == "" {
			out[i].Note = "porcupine did not decide within the timeout"
		}
		if results[i] != ResultIllegal {
			continue
		}
		v := Violation{
			Promise: PromiseLinearizableSync, Name: PromiseName(PromiseLinearizableSync), Conv: p.model.conv,
			Message: fmt.Sprintf("porcupine: %d operations of the conversation are not linearizable", len(p.ops)),
		}
		if written < VisualizationsMax {
			written++
			if err := explain(h, p, &v, b, opts); err != nil {
				return out, violations, err
			}
		}
		violations = append(violations, v)
	}
	return out, violations, nil
}

// budget is the time porcupine may take: each per partition, and all of
// them until deadline.
type budget struct {
	each     time.Duration
	perOp    time.Duration // if more, each is raised to this per operation
	deadline time.Time
}

// left is what the search of a partition of n operations may take now.
func (b budget) left(n int) time.Duration {
	return min(max(b.each, time.Duration(n)*b.perOp), time.Until(b.deadline))
}

// runPartitions checks every partition, largest first, on GOMAXPROCS workers.
func runPartitions(parts []*partition, b budget) []string {
	results := make([]string, len(parts))
	order := make([]int, len(parts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(parts[order[a]].ops) > len(parts[order[b]].ops) })
	jobs := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if parts[i].undecidable != "" {
					results[i] = ResultUnknown
					continue
				}
				results[i] = checkPartition(parts[i].model.porcupineModel(), parts[i].ops, b)
			}
		}()
	}
	for _, i := range order {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return results
}

// checkPartition maps porcupine's answer; a partition reached after the
// total deadline is unknown, never ok.
func checkPartition(model porcupine.Model, ops []porcupine.Operation, b budget) string {
	remaining := b.left(len(ops))
	if remaining <= 0 {
		return ResultUnknown
	}
	return resultName(porcupine.CheckOperationsTimeout(model, ops, remaining))
}

func resultName(r porcupine.CheckResult) string {
	switch r {
	case porcupine.Ok:
		return ResultOK
	case porcupine.Illegal:
		return ResultIllegal
	}
	return ResultUnknown
}

// explain reruns an illegal partition verbosely to name the operations
// porcupine could not linearize and, with OutDir, to draw it.
func explain(h *History, p *partition, v *Violation, b budget, opts LinOptions) error {
	model := p.model.porcupineModel()
	res, info := porcupine.CheckOperationsVerbose(model, p.ops, max(b.left(len(p.ops)), verboseTimeoutMin))
	if res != porcupine.Illegal {
		v.Message += fmt.Sprintf(" (the explaining rerun ended %s)", resultName(res))
		return nil
	}
	for _, i := range stuckOps(p, info) {
		if m := p.ops[i].Metadata.(opMeta); m.index >= 0 {
			v.Ops = append(v.Ops, opLine(h, m.index))
			v.Index = append(v.Index, m.index)
		}
	}
	if opts.OutDir == "" {
		return nil
	}
	var notes []porcupine.Annotation
	for _, f := range opts.Faults {
		notes = append(notes, porcupine.Annotation{
			Tag: "faults", Start: f.Start, End: f.End, Description: f.What, BackgroundColor: "#ffd6d6",
		})
	}
	info.AddAnnotations(notes)
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return fmt.Errorf("visualization: %w", err)
	}
	path := filepath.Join(opts.OutDir, "lin-"+fileSafe(p.model.conv)+".html")
	if err := porcupine.VisualizePath(model, info, path); err != nil {
		return fmt.Errorf("visualization %s: %w", path, err)
	}
	v.Visualization = path
	return nil
}

// stuckOps returns the operations outside porcupine's longest partial
// linearization, earliest call first: where the search got stuck.
func stuckOps(p *partition, info porcupine.LinearizationInfo) []int {
	var longest []int
	if parts := info.PartialLinearizations(); len(parts) > 0 {
		for _, l := range parts[0] {
			if len(l) > len(longest) {
				longest = l
			}
		}
	}
	in := make([]bool, len(p.ops))
	for _, i := range longest {
		if i >= 0 && i < len(in) {
			in[i] = true
		}
	}
	var out []int
	for i := range p.ops {
		if !in[i] {
			out = append(out, i)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return p.ops[out[a]].Call < p.ops[out[b]].Call })
	if len(out) > involvedOpsMax {
		out = out[:involvedOpsMax]
	}
	return out
}

func fileSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
