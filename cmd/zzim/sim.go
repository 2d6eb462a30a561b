package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/sim"
	"github.com/zzim/zzim/system/bugs"
)

func init() { subcommands = append(subcommands, simCmd) }

// simSubcommands lets other files add "zzim sim X" commands from their init
// (e.g. shrink): append a constructor.
var simSubcommands []func() *cobra.Command

func simCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "run scenarios in the deterministic simulator",
		Long: `sim runs zzim's services, unchanged, in a deterministic simulator: one
goroutine, virtual time, simulated network, database, presence, queue and
registry, and a fault schedule. A seed decides everything: the same scenario
and seed replay the same run (same trace hash).`,
		// Simulator runs are batch work: trade heap for less GC (sim.TuneGC).
		PersistentPreRun: func(*cobra.Command, []string) { sim.TuneGC() },
	}
	cmd.AddCommand(simRunCmd(), simSweepCmd())
	for _, add := range simSubcommands {
		cmd.AddCommand(add())
	}
	return cmd
}

// planFlags are the flags run and sweep share.
type planFlags struct {
	bug, checks string
	swarm       bool
	verbose     bool
}

func (f *planFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.bug, "bug", "", "bug switches to enable, comma-separated (known: "+strings.Join(bugs.Names(), ", ")+")")
	fl.StringVar(&f.checks, "checks", "", "checks to run, comma-separated: structural, linearizability, unread, liveness (default: the scenario's)")
	fl.BoolVar(&f.swarm, "swarm", false, "draw a fault mix from the seed on top of the scenario's schedule (swarm mode)")
}

// options turns the flags into sim.PlanOptions, or a usage error.
func (f *planFlags) options(seed uint64) (sim.PlanOptions, error) {
	set, err := bugs.Parse(f.bug)
	if err != nil {
		return sim.PlanOptions{}, usageErr("--bug: %w", err)
	}
	checks, err := sim.ParseChecks(f.checks)
	if err != nil {
		return sim.PlanOptions{}, usageErr("--checks: %w", err)
	}
	return sim.PlanOptions{Seed: seed, Bugs: set, Checks: checks, Swarm: f.swarm, Verbose: f.verbose}, nil
}

// simRunCmd: zzim sim run SCENARIO|FILE [--seed N] [--bug NAME]
// [--checks LIST] [--out DIR] [--json] [--swarm] [-v].
func simRunCmd() *cobra.Command {
	var (
		pf      planFlags
		seed    uint64
		out     string
		asJSON  bool
		timeout time.Duration
		cpuProf string
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO|FILE",
		Short: "run one scenario (embedded name or YAML file) and check it",
		Long: `run runs one scenario and judges it: the checkers (structural pass,
linearizability), the simulator's counting check (every acknowledged message
delivered to each recipient exactly once) and the scenario's exercised
counters (a required one at zero fails the run). The output ends with one line:

  verdict=pass|fail seed=N trace=HASH events=E sim_seconds=S wall_seconds=W

Exit status: 0 pass, 1 fail, 2 usage or setup error. --seed N replays a run.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := openScenario(args[0])
			if err != nil {
				return usageErr("%w", err)
			}
			opts, err := pf.options(seed)
			if err != nil {
				return err
			}
			plan, err := sim.FromScenario(sc, opts)
			if err != nil {
				return usageErr("%w", err)
			}
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return usageErr("--out: %w", err)
				}
			}
			if cpuProf != "" {
				stop, err := startCPUProfile(cpuProf)
				if err != nil {
					return usageErr("--cpuprofile: %w", err)
				}
				defer stop()
			}
			res, err := plan.Run()
			if err != nil {
				return usageErr("%w", err)
			}
			o, err := plan.Judge(res, sim.JudgeOptions{OutDir: out, Timeout: timeout})
			if err != nil {
				return usageErr("%w", err)
			}
			w := cmd.OutOrStdout()
			if asJSON {
				err = writeJSONSummary(w, plan, res, o)
			} else {
				err = writeSummary(w, plan, res, o)
			}
			if err != nil {
				return usageErr("%w", err)
			}
			if out != "" {
				if err := writeArtifacts(out, plan, res, o); err != nil {
					return usageErr("--out: %w", err)
				}
			}
			fmt.Fprintln(w, finalLine(o.Word, res))
			if !o.Pass() {
				return &exitError{code: 1, err: fmt.Errorf("%s seed %d: %s", plan.Name, res.Seed, strings.Join(o.Reasons, "; "))}
			}
			return nil
		},
	}
	pf.register(cmd)
	f := cmd.Flags()
	f.Uint64Var(&seed, "seed", 0, "seed (default: the scenario's)")
	f.StringVar(&out, "out", "", "directory for history.jsonl, store.jsonl, faults.jsonl, trace, scenario.yaml and, on failure, report.txt and porcupine's HTML")
	f.BoolVar(&asJSON, "json", false, "print the summary as one JSON object (the verdict line still ends the output)")
	f.BoolVarP(&pf.verbose, "verbose", "v", false, "log every service's output to stderr")
	f.DurationVar(&timeout, "timeout", 0, "bound on porcupine's search per conversation (one not decided in time is unknown, which fails the run); default 10s, or 20µs per operation where that is more")
	f.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the run and its checks to this file (go tool pprof reads it)")
	return cmd
}

// startCPUProfile profiles the process into path until the returned stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// finalLine is the last line of a run.
func finalLine(word string, r *sim.Result) string {
	return fmt.Sprintf("verdict=%s seed=%d trace=%016x events=%d sim_seconds=%.1f wall_seconds=%.2f",
		word, r.Seed, r.TraceHash, r.Counters.Events, r.Counters.SimSeconds, r.Counters.WallSeconds)
}

func writeSummary(w io.Writer, p *sim.Plan, r *sim.Result, o *sim.Outcome) error {
	ew := &errWriter{w: w}
	cfg := p.Config
	ew.printf("scenario %s seed=%d bugs=%s checks=%s liveness_bound=%v\n", p.Name, r.Seed, bugList(cfg.Bugs),
		strings.Join(p.Checks, ","), p.LivenessBound)
	for _, n := range p.Notes {
		ew.printf("note: %s\n", n)
	}
	if p.Swarm != "" {
		ew.printf("seed=%d swarm: %s\n", r.Seed, p.Swarm)
	}
	ew.printf("faults:%s\n", faultTimeline(r.Faults))
	c := r.Counters
	ew.printf("run: clients=%d ops=%d events=%d sim_seconds=%.1f wall_seconds=%.2f events/s=%.0f speedup=%.0fx\n",
		c.Clients, c.Ops, c.Events, c.SimSeconds, c.WallSeconds, c.EventsPerSecond, c.Speedup)
	d := r.Delivery
	ew.printf("delivery: acked=%d recipient_pairs=%d missing=%d duplicated=%d\n", d.Acked, d.Recipients, d.Missing, d.Duplicated)
	p50, p99, n := sim.SendAckLatency(r.History)
	ew.printf("send-to-ack: n=%d p50=%v p99=%v\n", n, p50.Round(time.Microsecond), p99.Round(time.Microsecond))
	if v := o.Verdict; v != nil {
		ew.printf("check: %s\n", v.Line())
	}
	ew.printf("exercised (* required):\n")
	for _, name := range sim.ExercisedNamesAll() {
		mark := " "
		for _, req := range p.Required {
			if req == name {
				mark = "*"
			}
		}
		ew.printf("  %s %-26s %d\n", mark, name, o.Exercised[name])
		if name == "db_lost_acknowledged" {
			for _, l := range o.LostAcknowledged {
				ew.printf("      lost (conv, seq, client_msg_id) %s\n", l)
			}
		}
	}
	if o.Verdict != nil {
		for i, vi := range o.Verdict.Violations {
			if i == violationsShownMax {
				ew.printf("(%d more violations: see report.txt with --out)\n", len(o.Verdict.Violations)-i)
				break
			}
			ew.printf("%s\n", vi.String())
		}
	}
	for _, ex := range d.Examples {
		ew.printf("counting check: %s\n", ex)
	}
	if o.Panic != nil {
		ew.printf("panic: %v\n%s\n", o.Panic, o.Panic.Stack)
	}
	for _, reason := range o.Reasons {
		ew.printf("fail: %s\n", reason)
	}
	if o.AsExpected {
		ew.printf("judgement: %s\n", o.Expected)
	}
	return ew.err
}

// violationsShownMax bounds the violations the summary prints.
const violationsShownMax = 5

func bugList(set bugs.Set) string {
	if s := set.String(); s != "" {
		return s
	}
	return "none"
}

// faultTimeline lists the fault windows in start order, one per line.
func faultTimeline(ws []sim.FaultWindow) string {
	if len(ws) == 0 {
		return " none"
	}
	ws = append([]sim.FaultWindow(nil), ws...)
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].Start < ws[j].Start })
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "\n  %8v .. %-8v %s %s", time.Duration(w.Start).Round(time.Millisecond),
			time.Duration(w.End).Round(time.Millisecond), w.Kind, w.Target)
	}
	return b.String()
}

// jsonSummary is --json's output.
type jsonSummary struct {
	Scenario string   `json:"scenario"`
	Seed     uint64   `json:"seed"`
	Verdict  string   `json:"verdict"`
	Reasons  []string `json:"reasons,omitempty"`
	// Judgement: "failed as expected: ..." when the scenario expects
	// exactly the failure seen (verdict is then pass).
	Judgement        string              `json:"judgement,omitempty"`
	Failures         []scenarios.Failure `json:"failures,omitempty"`
	LostAcknowledged []sim.LostAppend    `json:"lost_acknowledged,omitempty"`
	Trace            string              `json:"trace"`
	Bugs             string              `json:"bugs"`
	Checks           []string            `json:"checks"`
	Swarm            string              `json:"swarm,omitempty"`
	Notes            []string            `json:"notes,omitempty"`
	Counters         sim.Counters        `json:"run"`
	Delivery         sim.DeliveryCheck   `json:"delivery"`
	SendAckP50MS     float64             `json:"send_ack_p50_ms"`
	SendAckP99MS     float64             `json:"send_ack_p99_ms"`
	Check            *check.Verdict      `json:"check,omitempty"`
	Exercised        map[string]uint64   `json:"exercised"`
	Required         []string            `json:"required"`
	MissingCounts    []string            `json:"missing_counters,omitempty"`
	Faults           []sim.FaultWindow   `json:"faults"`
	Panic            string              `json:"panic,omitempty"`
}

func writeJSONSummary(w io.Writer, p *sim.Plan, r *sim.Result, o *sim.Outcome) error {
	p50, p99, _ := sim.SendAckLatency(r.History)
	s := jsonSummary{Scenario: p.Name, Seed: r.Seed, Verdict: o.Word, Reasons: o.Reasons,
		Trace: fmt.Sprintf("%016x", r.TraceHash), Bugs: bugList(p.Config.Bugs), Checks: p.Checks, Swarm: p.Swarm,
		Notes: p.Notes, Counters: r.Counters, Delivery: r.Delivery,
		SendAckP50MS: float64(p50) / 1e6, SendAckP99MS: float64(p99) / 1e6, Check: o.Verdict,
		Exercised: o.Exercised, Required: p.Required, MissingCounts: o.Missing, Faults: r.Faults,
		Judgement: o.Expected, Failures: o.Failures, LostAcknowledged: o.LostAcknowledged}
	if o.Panic != nil {
		s.Panic = o.Panic.Error() + "\n" + o.Panic.Stack
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("json summary: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// writeArtifacts fills --out: what a run produced, and what reproduces it.
func writeArtifacts(dir string, p *sim.Plan, r *sim.Result, o *sim.Outcome) error {
	files := []struct {
		name  string
		write func(io.Writer) error
	}{
		{"history.jsonl", func(w io.Writer) error { return check.WriteHistory(w, r.History) }},
		{"store.jsonl", func(w io.Writer) error { return check.WriteStoreDump(w, r.Store) }},
		{"faults.jsonl", func(w io.Writer) error { return check.WriteFaultWindows(w, r.HistoryFaults()) }},
		{"trace", func(w io.Writer) error { return writeTrace(w, r) }},
		{"scenario.yaml", func(w io.Writer) error { return writeReplay(w, p, r) }},
	}
	if !o.Pass() {
		files = append(files, struct {
			name  string
			write func(io.Writer) error
		}{"report.txt", func(w io.Writer) error { return writeReport(w, p, r, o) }})
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.write); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(path string, write func(io.Writer) error) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(file); err != nil {
		file.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return file.Close()
}

// writeTrace: the simulator keeps a hash of its event trace, not the
// events, so the trace file holds the hash and every counter of the run.
func writeTrace(w io.Writer, r *sim.Result) error {
	ew := &errWriter{w: w}
	ew.printf("# the simulator hashes its event trace (FNV-1a over every handled event); same seed, same hash\n")
	ew.printf("trace=%016x seed=%d events=%d sim_seconds=%.3f\n", r.TraceHash, r.Seed, r.Counters.Events, r.Counters.SimSeconds)
	for _, k := range sim.SortedNames(r.Sim) {
		ew.printf("sim.%s=%d\n", k, r.Sim[k])
	}
	for _, k := range sim.SortedNames(r.Stats) {
		ew.printf("%s=%d\n", k, r.Stats[k])
	}
	return ew.err
}

// writeReplay writes the scenario with the run's seed and bugs in it, so
// `zzim sim run DIR/scenario.yaml` replays the run (a swarm run's drawn
// faults come back with --swarm).
func writeReplay(w io.Writer, p *sim.Plan, r *sim.Result) error {
	sc := *p.Scenario
	sc.Seed = r.Seed
	sc.Bugs = nil
	for _, name := range bugs.Names() {
		if p.Config.Bugs.On(bugs.Switch(name)) {
			sc.Bugs = append(sc.Bugs, name)
		}
	}
	data, err := scenarios.Marshal(&sc)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func writeReport(w io.Writer, p *sim.Plan, r *sim.Result, o *sim.Outcome) error {
	ew := &errWriter{w: w}
	ew.printf("%s\n", finalLine(o.Word, r))
	ew.printf("scenario %s seed=%d bugs=%s\n", p.Name, r.Seed, bugList(p.Config.Bugs))
	if p.Swarm != "" {
		ew.printf("seed=%d swarm: %s\n", r.Seed, p.Swarm)
	}
	for _, reason := range o.Reasons {
		ew.printf("fail: %s\n", reason)
	}
	ew.printf("faults:%s\n", faultTimeline(r.Faults))
	if o.Panic != nil {
		ew.printf("\npanic in %s at %v handling a %s event: %v\n%s\n", o.Panic.Target, o.Panic.At, o.Panic.Kind,
			o.Panic.Value, o.Panic.Stack)
	}
	for _, ex := range r.Delivery.Examples {
		ew.printf("counting check: %s\n", ex)
	}
	if ew.err == nil && o.Verdict != nil {
		ew.err = o.Verdict.Report(w)
	}
	return ew.err
}

// errWriter keeps the first write error, so printing code stays flat.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// simSweepCmd: zzim sim sweep SCENARIO --seeds A-B [--shard K/N]
// [--bug NAME] [--jobs N] [--swarm] [--checks LIST] [--results FILE]
// [--junit FILE].
func simSweepCmd() *cobra.Command {
	var (
		pf             planFlags
		seeds, shard   string
		jobs           int
		results, junit string
		cpuProf        string
	)
	cmd := &cobra.Command{
		Use:   "sweep SCENARIO|FILE --seeds A-B",
		Short: "run a scenario over a range of seeds (parallel across runs, shardable across machines)",
		Long: `sweep runs the scenario once per seed, judges each run as sim run does,
shows a progress line on stderr, prints each failing seed (and, with --swarm,
every seed's drawn fault mix), and ends with

  seeds=N failed=F first_failure=SEED

--shard K/N runs only shard K (counted from 0) of N: the seed at index i of
the range belongs to shard i mod N. Run shards 0/N .. N-1/N on N machines,
each with --results FILE, and combine them with zzim sim merge (docs/sweeps.md).
--junit FILE writes JUnit XML, one test case per seed (SCENARIO/seed=N).

Exit status: 0 when every seed passed, 1 when any failed, 2 usage or setup error.
Replay a seed with: zzim sim run SCENARIO --seed SEED [--swarm] [--bug ...].`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := parseSeeds(seeds)
			if err != nil {
				return usageErr("--seeds: %w", err)
			}
			part := sim.WholeRange
			if shard != "" {
				if part, err = sim.ParseShard(shard); err != nil {
					return usageErr("--shard: %w", err)
				}
			}
			sc, err := openScenario(args[0])
			if err != nil {
				return usageErr("%w", err)
			}
			opts, err := pf.options(list[0])
			if err != nil {
				return err
			}
			if _, err := sim.FromScenario(sc, opts); err != nil {
				return usageErr("%w", err)
			}
			header := sim.SweepHeader{Scenario: args[0], Name: sc.Name, First: list[0], Last: list[len(list)-1],
				Shard: part.String(), Bugs: opts.Bugs.String(), Checks: pf.checks, Swarm: pf.swarm}
			mine := part.Of(header.First, header.Last)
			sw := &sweeper{sc: sc, opts: opts, header: header, out: cmd.OutOrStdout(),
				progress: newProgress(cmd.ErrOrStderr(), len(mine))}
			if results != "" {
				f, err := os.Create(results)
				if err != nil {
					return usageErr("--results: %w", err)
				}
				defer f.Close()
				sw.results = sim.NewResultsWriter(f, header)
			}
			if jobs <= 0 {
				jobs = runtime.GOMAXPROCS(0)
			}
			if cpuProf != "" {
				stop, err := startCPUProfile(cpuProf)
				if err != nil {
					return usageErr("--cpuprofile: %w", err)
				}
				defer stop()
			}
			sw.run(cmd, mine, jobs)
			return sw.finish(mine, junit)
		},
	}
	pf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&seeds, "seeds", "1-10", "seeds: A-B or N (the whole range, over every shard)")
	f.StringVar(&shard, "shard", "", "run only shard K of N, counted from 0 (e.g. 2/8): the seeds at index i of the range with i mod N = K")
	f.IntVar(&jobs, "jobs", 0, "runs in parallel (default: GOMAXPROCS)")
	f.StringVar(&results, "results", "", "write each seed's result to this file as JSON lines, as seeds finish (input of zzim sim merge)")
	f.StringVar(&junit, "junit", "", "write a JUnit XML report to this file: a test case per seed, failures with the replay command")
	f.StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the whole sweep (its runs and checks) to this file")
	return cmd
}

// finish prints the sweep's last line, writes the JUnit report and picks
// the exit status.
func (sw *sweeper) finish(mine []uint64, junit string) error {
	totals := sim.TotalsOf(sw.records)
	fmt.Fprintln(sw.out, totals)
	var fileErr error
	if sw.results != nil {
		fileErr = sw.results.Err()
	}
	if junit != "" {
		done := map[uint64]bool{}
		for _, r := range sw.records {
			done[r.Seed] = true
		}
		var notRun []uint64
		for _, seed := range mine {
			if !done[seed] {
				notRun = append(notRun, seed)
			}
		}
		report := sim.JUnit(sw.header, sortedRecords(sw.records), notRun, "the sweep was interrupted before it")
		fileErr = errors.Join(fileErr, writeFile(junit, func(w io.Writer) error { return sim.WriteJUnit(w, report) }))
	}
	switch {
	case sw.setupErr != nil || fileErr != nil:
		return usageErr("%w", errors.Join(sw.setupErr, fileErr))
	case totals.Failed > 0:
		return &exitError{code: 1, err: fmt.Errorf("%d of %d seeds failed", totals.Failed, totals.Seeds)}
	case totals.Seeds < len(mine):
		return &exitError{code: 1, err: fmt.Errorf("interrupted after %d of %d seeds", totals.Seeds, len(mine))}
	}
	return nil
}

func sortedRecords(rs []sim.SeedRecord) []sim.SeedRecord {
	out := append([]sim.SeedRecord(nil), rs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Seed < out[j].Seed })
	return out
}

// seedsMax bounds one sweep.
const seedsMax = 10_000_000

// parseSeeds reads "A-B" or "N".
func parseSeeds(s string) ([]uint64, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
	hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
	if err := errors.Join(err1, err2); err != nil || lo == 0 || hi < lo {
		return nil, fmt.Errorf("%q: want A-B with 1 <= A <= B, or N >= 1", s)
	}
	if hi-lo >= seedsMax {
		return nil, fmt.Errorf("%q: more than %d seeds", s, seedsMax)
	}
	out := make([]uint64, 0, hi-lo+1)
	for x := lo; x <= hi; x++ {
		out = append(out, x)
	}
	return out, nil
}

// sweeper runs seeds on worker goroutines (each run is single-threaded)
// and reports as they finish.
type sweeper struct {
	sc       *scenarios.Scenario
	opts     sim.PlanOptions
	header   sim.SweepHeader
	out      io.Writer
	progress *progress
	results  *sim.ResultsWriter // nil: no --results

	mu       sync.Mutex
	records  []sim.SeedRecord
	failed   int
	setupErr error
}

func (sw *sweeper) run(cmd *cobra.Command, seeds []uint64, jobs int) {
	ctx := cmd.Context()
	sw.progress.begin()
	next := make(chan uint64)
	var wg sync.WaitGroup
	for i := 0; i < min(jobs, len(seeds)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range next {
				sw.one(seed)
			}
		}()
	}
feed:
	for _, seed := range seeds {
		select {
		case next <- seed:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	sw.progress.end()
}

// one runs and judges one seed, then reports it.
func (sw *sweeper) one(seed uint64) {
	start := time.Now()
	opts := sw.opts
	opts.Seed = seed
	plan, err := sim.FromScenario(sw.sc, opts)
	var res *sim.Result
	if err == nil {
		res, err = plan.Run()
	}
	var o *sim.Outcome
	if err == nil {
		o, err = plan.Judge(res, sim.JudgeOptions{})
	}
	rec := sim.SeedRecord{Seed: seed, Verdict: sim.VerdictPass, WallSeconds: time.Since(start).Seconds()}
	if plan != nil {
		rec.Swarm = plan.Swarm
	}
	switch {
	case err != nil:
		rec.Verdict, rec.Line = sim.VerdictError, fmt.Sprintf("seed=%d error: %v", seed, err)
	default:
		rec.Line = finalLine(o.Word, res)
		rec.Expected = o.Expected
		if !o.Pass() {
			rec.Verdict, rec.Reasons = sim.VerdictFail, o.Reasons
		}
	}
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.records = append(sw.records, rec)
	if sw.results != nil {
		sw.results.Write(rec)
	}
	if rec.Swarm != "" {
		fmt.Fprintf(sw.out, "seed=%d swarm: %s\n", seed, rec.Swarm)
	}
	switch rec.Verdict {
	case sim.VerdictError:
		sw.setupErr = errors.Join(sw.setupErr, fmt.Errorf("seed %d: %w", seed, err))
		sw.failed++
		fmt.Fprintln(sw.out, rec.Line)
	case sim.VerdictFail:
		sw.failed++
		fmt.Fprintf(sw.out, "%s: %s\n", rec.Line, strings.Join(rec.Reasons, "; "))
		fmt.Fprintf(sw.out, "  replay: %s\n", sw.header.ReplayCommand(seed))
	default:
		if rec.Expected != "" {
			fmt.Fprintf(sw.out, "%s: %s\n", rec.Line, rec.Expected)
		}
	}
	sw.progress.update(len(sw.records), sw.failed)
}

// Progress line cadence: a terminal's line is redrawn at least every
// progressRedrawEvery (and at each seed); a log (CI, kubectl logs) gets a
// new line every progressLogEvery, not one per seed, so an hour of sweep
// stays readable and a slow seed still shows the sweep is alive.
const (
	progressRedrawEvery = time.Second
	progressLogEvery    = 5 * time.Second
)

// progress is the sweep's progress line on stderr, with a last line at the
// end either way.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	start time.Time

	mu           sync.Mutex
	done, failed int
	stop         chan struct{}
	stopped      chan struct{}
}

func newProgress(w io.Writer, total int) *progress {
	return &progress{w: w, tty: isTerminal(w), total: total, start: time.Now()}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// begin starts the clock that prints the line between seeds.
func (p *progress) begin() {
	every := progressLogEvery
	if p.tty {
		every = progressRedrawEvery
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(p.stopped)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				p.print()
			case <-p.stop:
				return
			}
		}
	}()
}

// update records a finished seed; a terminal redraws at once.
func (p *progress) update(done, failed int) {
	p.mu.Lock()
	p.done, p.failed = done, failed
	p.mu.Unlock()
	if p.tty {
		p.print()
	}
}

func (p *progress) print() {
	p.mu.Lock()
	defer p.mu.Unlock()
	elapsed := time.Since(p.start).Seconds()
	line := fmt.Sprintf("seeds %d/%d failed=%d rate=%.2f/s elapsed=%.0fs", p.done, p.total, p.failed,
		float64(p.done)/max(elapsed, 1e-9), elapsed)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s ", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
}

// end stops the clock and prints the last line.
func (p *progress) end() {
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
	}
	p.print()
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
