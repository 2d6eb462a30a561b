package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/mysqlstore"
	"github.com/zzim/zzim/system/wire"
)

// ScaleDefault maps scenario time to real time: a 2-minute scenario's
// traffic runs 30 s, its faults at a quarter of their times for a quarter
// of their windows (at least forMin). Rates are not scaled: a scaled run
// sends fewer messages at the same pace.
const ScaleDefault = 0.25

// Bounds of a run's phases (real time).
const (
	// trafficMin is the shortest traffic phase whatever the scale.
	trafficMin = 15 * time.Second
	// settleMin bounds each wait of the settle phase (acks, then final
	// holdings) when the scenario's liveness bound is shorter.
	settleMin = 20 * time.Second
	// chaosSecret signs the clients' tokens (a throwaway cluster).
	chaosSecret = "zzim-chaos-secret"
	platformKey = "zzim-chaos-platform"
)

// Options of one chaos run.
type Options struct {
	Scenario *scenarios.Scenario
	// Bugs are added to the scenario's own and reach every service as
	// --bug flags (and the clients' config).
	Bugs bugs.Set
	// Seed of the workload; 0 takes the scenario's.
	Seed uint64
	// Scale maps scenario times to real times (0: ScaleDefault).
	Scale float64
	// OutDir receives history.jsonl, store.jsonl, faults.jsonl,
	// report.txt, report.json, porcupine's HTML and the services' logs.
	OutDir string
	// CheckTimeout bounds porcupine's search per conversation (0: check.DefaultTimeout).
	CheckTimeout time.Duration
	Log          *slog.Logger
	// Progress receives one line per phase (nil: none).
	Progress io.Writer
}

// Run runs a scenario on real containers and judges it. The error is for
// setup failures and cancellation; a broken promise is a report with Word
// "fail". Every container and network of the run is removed before Run
// returns, also on error and on cancellation.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	wallStart := time.Now()
	sc := o.Scenario
	if sc == nil {
		return nil, errors.New("chaos: no scenario")
	}
	rep, set, err := newReport(o)
	if err != nil {
		return nil, err
	}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "chaos %s: %s\n", sc.Name, fmt.Sprintf(format, args...))
		}
	}
	checks, bound, err := checksFor(sc.Checks, sc.LivenessBound.D())
	if err != nil {
		return nil, fmt.Errorf("chaos: scenario %s: %w", sc.Name, err)
	}
	if allSkippable(sc.Faults) {
		for _, f := range sc.Faults {
			rep.Faults = append(rep.Faults, &FaultRecord{What: string(f.What), Target: f.Target, Status: StatusSkipped,
				At: scaleTime(f.At.D(), rep.Scale), Note: "only the simulator can do " + string(f.What)})
		}
		rep.Word = "skipped"
		rep.Reasons = append(rep.Reasons, "every fault of the schedule is one only the simulator can do: nothing ran")
		rep.WallSeconds = time.Since(wallStart).Seconds()
		return rep, nil
	}
	progress("starting containers (topology %s)", topologyString(sc))
	env, err := NewEnv(ctx, EnvConfig{Topology: topologyOf(sc), Bugs: set, Secret: chaosSecret, PlatformKey: platformKey,
		LogicBusinesses: businessesOf(sc), Log: o.Log, ReplicatedDB: needsReplicatedDB(sc.Faults), NATSCluster: needsNATSCluster(sc.Faults)})
	if err != nil {
		return nil, fmt.Errorf("chaos: environment: %w", err)
	}
	rep.Run = env.Run
	r := rep // the deferred teardown fills it even when the run returns an error
	defer func() {
		rep := r
		teardownStart := time.Now()
		if o.OutDir != "" {
			env.saveLogs(filepath.Join(o.OutDir, "logs"))
		}
		if cerr := env.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("chaos: cleanup: %w", cerr)
		}
		rep.Teardown = env.Removed
		rep.WallSeconds = time.Since(wallStart).Seconds()
		rep.TeardownSeconds = time.Since(teardownStart).Seconds()
		if o.OutDir != "" && err == nil {
			err = writeReports(o.OutDir, rep) // again, with the teardown counted
		}
	}()
	rep.SetupSeconds = time.Since(wallStart).Seconds()
	if err := execute(ctx, o, env, rep, set, checks, bound, progress); err != nil {
		return nil, err
	}
	return rep, nil
}

// execute is the run proper: clients, traffic and faults, settle, dump, check.
func execute(ctx context.Context, o Options, env *Env, rep *Report, set bugs.Set, checks []string, bound time.Duration,
	progress func(string, ...any)) error {
	sc := o.Scenario
	w := newWorkload(sc, env, rep.Seed, []byte(chaosSecret), set, rep.Scale)
	progress("%d services up in %.1fs; %d clients logging in", len(env.Services()), rep.SetupSeconds, len(w.users))
	loginStart := time.Now()
	if err := w.start(ctx); err != nil {
		w.finish()
		return fmt.Errorf("chaos: clients: %w", err)
	}
	rep.LoginSeconds = time.Since(loginStart).Seconds()
	scr := newScraper(env)
	scrapeCtx, stopScrape := context.WithCancel(ctx)
	scrapeDone := make(chan struct{})
	go func() { defer close(scrapeDone); scr.run(scrapeCtx) }()
	defer func() { stopScrape(); <-scrapeDone }()

	plan := planFaults(env, sc.Faults, rep.Scale)
	rep.Faults = plan.records
	rep.Replication = env.ReplicationSetup
	plan.prepare(ctx)
	traffic := max(scaleTime(sc.Duration.D(), rep.Scale), trafficMin)
	now := func() int64 { return w.clock.Now().UnixNano() }
	heal := make(chan struct{})
	faultsDone := make(chan struct{})
	t0 := time.Now()
	go func() { defer close(faultsDone); plan.run(ctx, t0, heal, now) }()
	progress("traffic for %s at %.0f msg/s, %d faults scheduled", traffic, sc.Workload.Rate, len(plan.records))
	w.traffic(ctx, t0, traffic)
	close(heal)
	<-faultsDone
	if err := ctx.Err(); err != nil {
		w.finish()
		return fmt.Errorf("chaos: %w", err)
	}
	settleStart := time.Now()
	settle := max(bound, settleMin)
	progress("traffic done (%d sends); healed; waiting up to %s for acks", w.sends.Load(), settle)
	_ = waitUntil(ctx, settle, func() bool { return w.unacked() == 0 })
	rep.Messages.UnackedAtEnd = w.unacked()
	// After a failover the ground truth is what the promoted primary holds.
	dump, err := dumpStore(ctx, env.PrimaryDSN())
	if err != nil {
		w.finish()
		return withFaultErrors(err, plan)
	}
	stored := byConv(dump)
	w.finalSync()
	_ = waitUntil(ctx, settle, func() bool { return w.missing(stored) == 0 })
	rep.Messages.MissingAtEnd = w.missing(stored)
	w.finish()
	// The ground truth is read again once no client can record anything
	// more: an ack recorded before this is of a commit this dump holds.
	if dump, err = dumpStore(ctx, env.PrimaryDSN()); err != nil {
		return withFaultErrors(err, plan)
	}
	rep.TrafficSeconds = settleStart.Sub(t0).Seconds()
	rep.SettleSeconds = time.Since(settleStart).Seconds()
	stopScrape()
	<-scrapeDone
	scr.scrapeAll(context.WithoutCancel(ctx))

	ops := w.rec.Ops()
	progress("checking %d ops against %d stored messages", len(ops), len(dump))
	checkStart := time.Now()
	defer func() { rep.CheckSeconds = time.Since(checkStart).Seconds() }()
	v, err := check.Check(&check.History{Ops: ops}, check.Options{Dump: dump, Faults: plan.windows(), LivenessBound: bound,
		Checks: checks, OutDir: o.OutDir, Timeout: o.CheckTimeout})
	if err != nil {
		return fmt.Errorf("chaos: check: %w", err)
	}
	rep.judge(sc, v, ops, dump, w, scr, plan)
	rep.Metrics = scr.totals()
	if o.OutDir != "" {
		if err := writeArtifacts(o.OutDir, rep, ops, dump, plan.windows()); err != nil {
			return err
		}
	}
	return nil
}

// withFaultErrors adds the faults that failed to a run error: a store that
// cannot be read is usually a fault's doing (a failover whose promotion
// failed leaves das's primary down), and the report that would say so is
// not written.
func withFaultErrors(err error, plan *faultPlan) error {
	var failed []string
	for _, f := range plan.records {
		if f.Status == StatusFailed {
			failed = append(failed, fmt.Sprintf("fault %s %s failed: %s", f.What, f.Target, f.Err))
		}
	}
	if len(failed) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(failed, "; "))
}

func newReport(o Options) (*Report, bugs.Set, error) {
	sc := o.Scenario
	set, err := bugs.Parse(strings.Join(sc.Bugs, ","))
	if err != nil {
		return nil, nil, fmt.Errorf("chaos: scenario %s: %w", sc.Name, err)
	}
	for b, on := range o.Bugs {
		if on {
			set[b] = true
		}
	}
	rep := &Report{Scenario: sc.Name, Seed: sc.Seed, Bugs: set.String(), Scale: o.Scale, Required: slices.Clone(sc.Exercised),
		Expect: string(sc.Expect)}
	if o.Seed != 0 {
		rep.Seed = o.Seed
	}
	if rep.Seed == 0 {
		rep.Seed = scenarios.SeedDefault
	}
	if rep.Scale <= 0 {
		rep.Scale = ScaleDefault
	}
	rep.Notes = workloadNotes(sc)
	return rep, set, nil
}

// checksFor maps the scenario's check names to the checkers' (as the
// simulator does): unread is part of the structural pass, liveness is the
// bound.
func checksFor(names []string, bound time.Duration) ([]string, time.Duration, error) {
	var out []string
	liveness := false
	add := func(c string) {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(names) == 0 {
		names = scenarios.ChecksDefault
	}
	for _, n := range names {
		switch n {
		case "structural", "unread":
			add(check.CheckStructural)
		case "linearizability":
			add(check.CheckLinearizability)
		case "liveness":
			add(check.CheckStructural)
			liveness = true
		default:
			return nil, 0, fmt.Errorf("unknown check %q", n)
		}
	}
	if !liveness {
		bound = 0
	}
	return out, bound, nil
}

// chaosKinds are the fault kinds the harness can do (approximated ones
// included: see faults.go).
var chaosKinds = append([]scenarios.FaultKind{scenarios.Crash, scenarios.Restart, scenarios.Pause, scenarios.Partition,
	scenarios.Delay, scenarios.Clog, scenarios.DBLatency, scenarios.DBTimeout, scenarios.DBOutage, scenarios.MQOutage}, depKinds...)

func allSkippable(faults []scenarios.Fault) bool {
	if len(faults) == 0 {
		return false
	}
	for _, f := range faults {
		if slices.Contains(chaosKinds, f.What) {
			return false
		}
	}
	return true
}

func topologyOf(sc *scenarios.Scenario) map[node.Role]int {
	t := sc.Topology
	return map[node.Role]int{node.RoleEntry: t.Entry, node.RoleHTTPEntry: t.HTTPEntry, node.RoleLogic: t.Logic,
		node.RoleExtLogic: t.ExtLogic, node.RoleDas: t.Das}
}

func topologyString(sc *scenarios.Scenario) string {
	t := sc.Topology
	return fmt.Sprintf("entry=%d httpentry=%d logic=%d extlogic=%d das=%d", t.Entry, t.HTTPEntry, t.Logic, t.ExtLogic, t.Das)
}

// businessesOf turns logic_split into --logic-businesses.
func businessesOf(sc *scenarios.Scenario) string {
	var parts []string
	for slot, set := range sc.Topology.LogicSplit {
		if set != "all" {
			parts = append(parts, fmt.Sprintf("%d=%s", slot, set))
		}
	}
	return strings.Join(parts, ",")
}

func workloadNotes(sc *scenarios.Scenario) []string {
	w := sc.Workload
	var out []string
	if w.Churn != nil && w.Churn.Rate > 0 {
		out = append(out, "workload.churn is not driven by the chaos harness")
	}
	if w.LoginStorm != nil {
		out = append(out, "workload.login_storm is not driven by the chaos harness")
	}
	if w.Broadcasts != nil && len(w.Broadcasts.At) > 0 {
		out = append(out, "workload.broadcasts are not driven by the chaos harness")
	}
	if len(w.KeepUsers) > 0 || len(w.KeepConversations) > 0 {
		out = append(out, "keep_users / keep_conversations are ignored (the harness draws its own conversations)")
	}
	return out
}

// dumpStore reads the ground truth from MariaDB with the store's own Dump.
func dumpStore(ctx context.Context, dsn string) ([]store.Message, error) {
	st, err := mysqlstore.Open(ctx, mysqlstore.Config{DSNs: []string{dsn}, MaxOpenConns: 4})
	if err != nil {
		return nil, fmt.Errorf("chaos: open store for the dump: %w", err)
	}
	defer st.Close()
	msgs, err := st.Dump(ctx)
	if err != nil {
		return nil, fmt.Errorf("chaos: store dump: %w", err)
	}
	return msgs, nil
}

// byConv indexes stored seqs by conversation (the broadcast conversation
// is left out: no client is required to hold it).
func byConv(msgs []store.Message) map[string]map[uint64]bool {
	out := map[string]map[uint64]bool{}
	for _, m := range msgs {
		if m.ConvID == wire.BroadcastConvID {
			continue
		}
		if out[m.ConvID] == nil {
			out[m.ConvID] = map[uint64]bool{}
		}
		out[m.ConvID][m.Seq] = true
	}
	return out
}

// saveLogs writes every container's output to dir (best effort).
func (e *Env) saveLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	names := append(e.Services(), depMariaDB, depReplica, depRedis, "toxiproxy")
	names = append(names, e.natsNodes...)
	sort.Strings(names)
	for _, n := range names {
		st, err := e.container(n)
		if err != nil {
			continue
		}
		rc, err := st.ctr.Logs(ctx)
		if err != nil {
			continue
		}
		f, err := os.Create(filepath.Join(dir, n+".log"))
		if err == nil {
			_, _ = io.Copy(f, rc)
			f.Close()
		}
		rc.Close()
	}
}
