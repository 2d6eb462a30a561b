package sim

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
)

// largeScenarios get a reduced smoke test instead of full runs.
var largeScenarios = map[string]bool{"broadcast-100k": true, "bench-standard": true}

// knownFailing are embedded scenarios whose required exercised counter the
// simulator does not reach (see the report in the commit log); the test
// names them instead of hiding them.
var knownFailing = map[string]string{
	// Empty: every embedded scenario passes. Fixed since: traffic-spike (the
	// database slows under the burst, so das refuses OVERLOADED), login-storm
	// (routing by business group; the storm's reconnects are counted),
	// partition-entry-logic (the registry repeats views, so entry fails
	// back), clock-skew (the rate limiter survives a clock stepping back).
}

func loadPlan(t *testing.T, name string, opts PlanOptions) *Plan {
	t.Helper()
	sc, err := scenarios.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromScenario(sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScenarioDeterminism: a scenario run twice with one seed gives one
// trace hash (and, in swarm mode, one fault mix); another seed differs.
func TestScenarioDeterminism(t *testing.T) {
	for _, name := range []string{"logic-failover", "presence-loss"} {
		for _, swarm := range []bool{false, true} {
			t.Run(name+map[bool]string{false: "", true: "/swarm"}[swarm], func(t *testing.T) {
				var hashes [3]uint64
				var mixes [3]string
				for i, seed := range []uint64{3, 3, 4} {
					p := loadPlan(t, name, PlanOptions{Seed: seed, Swarm: swarm})
					r, err := p.Run()
					if err != nil {
						t.Fatal(err)
					}
					if r.Err != nil {
						t.Fatalf("seed %d: %v", seed, r.Err)
					}
					hashes[i], mixes[i] = r.TraceHash, p.Swarm
				}
				if hashes[0] != hashes[1] || mixes[0] != mixes[1] {
					t.Errorf("seed 3 twice: got hashes %016x, %016x (swarm %q, %q), want equal", hashes[0], hashes[1], mixes[0], mixes[1])
				}
				if hashes[0] == hashes[2] {
					t.Errorf("seeds 3 and 4: got hash %016x twice, want different", hashes[0])
				}
				if swarm && (mixes[0] == "" || mixes[0] == mixes[2]) {
					t.Errorf("swarm mixes of seeds 3 and 4: got %q and %q, want non-empty and different", mixes[0], mixes[2])
				}
			})
		}
	}
}

// TestEmbeddedScenariosPass: each embedded scenario passes its checks on a
// few seeds with its required exercised counters non-zero.
func TestEmbeddedScenariosPass(t *testing.T) {
	list, err := scenarios.List()
	if err != nil {
		t.Fatal(err)
	}
	seeds := []uint64{1, 2}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, info := range list {
		t.Run(info.Name, func(t *testing.T) {
			if largeScenarios[info.Name] {
				t.Skip("large: see TestLargeScenariosSmoke")
			}
			if why := knownFailing[info.Name]; why != "" {
				t.Skip("known failing: " + why)
			}
			for _, seed := range seeds {
				p := loadPlan(t, info.Name, PlanOptions{Seed: seed})
				judge(t, p, seed)
			}
		})
	}
}

func judge(t *testing.T, p *Plan, seed uint64) {
	t.Helper()
	r, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	o, err := p.Judge(r, JudgeOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range p.Required {
		if o.Exercised[name] == 0 {
			t.Errorf("seed %d: required counter %s = 0, want > 0", seed, name)
		}
	}
	if !o.Pass() {
		t.Errorf("seed %d: verdict %s, want pass: %s", seed, o.Word, strings.Join(o.Reasons, "; "))
		for i, v := range o.Verdict.Violations {
			if i < 3 {
				t.Log(v.String())
			}
		}
	}
}

// TestLargeScenariosSmoke runs the two large scenarios cut down: fewer
// users and a shorter traffic period, same topology, faults and checks.
func TestLargeScenariosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("large scenarios: skipped with -short")
	}
	for name := range largeScenarios {
		t.Run(name, func(t *testing.T) {
			sc, err := scenarios.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			small := *sc
			small.Duration = scenarios.Duration(40 * time.Second)
			small.Workload.Users = min(sc.Workload.Users, 2000)
			small.Workload.Conversations = min(sc.Workload.Conversations, 1000)
			if b := sc.Workload.Broadcasts; b != nil {
				small.Workload.Broadcasts = &scenarios.Broadcasts{At: []scenarios.Duration{scenarios.Duration(10 * time.Second)}}
			}
			if err := small.Validate(); err != nil {
				t.Fatal(err)
			}
			p, err := FromScenario(&small, PlanOptions{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			judge(t, p, 1)
		})
	}
}

// TestJudgeFailsRequiredCounter: a required counter that stays zero fails
// an otherwise healthy run, and the reason names it.
func TestJudgeFailsRequiredCounter(t *testing.T) {
	sc, err := scenarios.Load("presence-loss")
	if err != nil {
		t.Fatal(err)
	}
	short := *sc
	short.Duration = scenarios.Duration(20 * time.Second)
	short.Faults = nil
	short.Exercised = []string{"unknown_resolved_by_dedup"}
	p, err := FromScenario(&short, PlanOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	o, err := p.Judge(r, JudgeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Pass() || !slices.Equal(o.Missing, []string{"unknown_resolved_by_dedup"}) {
		t.Errorf("got verdict %s missing %v, want fail missing [unknown_resolved_by_dedup]", o.Word, o.Missing)
	}
	if o.Verdict == nil || !o.Verdict.Pass {
		t.Errorf("checkers: got %v, want pass (only the counter fails)", o.Verdict)
	}
}

// TestJudgeCatchesBug: a bug switch makes a scenario fail.
func TestJudgeCatchesBug(t *testing.T) {
	sc, err := scenarios.Load("logic-failover")
	if err != nil {
		t.Fatal(err)
	}
	short := *sc
	short.Duration = scenarios.Duration(30 * time.Second)
	short.Faults = nil
	short.Workload.Spikes = nil
	short.Exercised = nil
	p, err := FromScenario(&short, PlanOptions{Seed: 2, Bugs: bugs.Set{bugs.LogicLocalSeq: true}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	o, err := p.Judge(r, JudgeOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if o.Pass() {
		t.Errorf("with %s: got pass, want fail", bugs.LogicLocalSeq)
	}
}

// TestExercisedCountersMatchVocabulary: the sim measures exactly the
// counters the scenario format names.
func TestExercisedCountersMatchVocabulary(t *testing.T) {
	got := ExercisedNamesAll()
	slices.Sort(got)
	want := slices.Clone(scenarios.Counters)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("sim counters %v, want the scenario vocabulary %v", got, want)
	}
}

// TestEveryScenarioFaultMaps: every fault kind of the scenario vocabulary
// maps to a valid sim fault.
func TestEveryScenarioFaultMaps(t *testing.T) {
	params := map[scenarios.FaultKind]map[string]string{
		scenarios.ClockSkew: {"skew": "-3s"}, scenarios.Delay: {"latency": "20ms", "jitter": "10ms"},
		scenarios.DBLatency: {"latency": "50ms"}, scenarios.RegistryDelay: {"delay": "2s"},
		scenarios.Partition: {"mode": "symmetric"},
	}
	targets := map[scenarios.FaultKind]string{
		scenarios.Partition: "entry-0<->logic-*", scenarios.Delay: "entry-0->logic-1", scenarios.Drop: "logic-0<->das-*",
		scenarios.Duplicate: "logic-0<->das-1", scenarios.Reorder: "logic-0<->das-1", scenarios.Clog: "logic-0<->das-1",
		scenarios.DBLatency: "db", scenarios.DBTimeout: "db", scenarios.DBDeadlock: "db", scenarios.DBOutage: "db",
		scenarios.PresenceLoss: "presence", scenarios.PresenceStale: "presence", scenarios.MQRedelivery: "mq",
		scenarios.MQDuplicate: "mq", scenarios.MQOutage: "mq", scenarios.RegistryDelay: "registry",
		scenarios.RegistryInconsistent: "registry", scenarios.ScaleOut: "logic-3",
		scenarios.DBCrash: "db", scenarios.DBFailover: "db", scenarios.DBPause: "db",
		scenarios.NATSKill: "nats-1", scenarios.NATSPartition: "nats-leader", scenarios.RedisKill: "presence",
	}
	p := &Plan{clients: &clientTracker{}}
	for _, k := range scenarios.FaultKinds() {
		t.Run(string(k), func(t *testing.T) {
			target := targets[k]
			if target == "" {
				target = "logic-1"
			}
			f, err := p.fault(scenarios.Fault{At: scenarios.Duration(time.Second), For: scenarios.Duration(time.Second),
				What: k, Target: target, Params: params[k]})
			if err != nil {
				t.Fatalf("got %v, want a mapping", err)
			}
			if !faultKinds[f.Kind] {
				t.Errorf("mapped to %q, want a sim fault kind", f.Kind)
			}
		})
	}
}

// TestSwarmDraws: drawn mixes are valid, bounded by the spec, and fit the
// traffic period.
func TestSwarmDraws(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Duration = time.Minute
	kinds := map[FaultKind]bool{}
	for seed := uint64(1); seed <= 200; seed++ {
		fs := DrawSwarm(seed, cfg, SwarmSpec{})
		if len(fs) < 1 || len(fs) > swarmFaultsMax {
			t.Fatalf("seed %d: got %d faults, want 1..%d", seed, len(fs), swarmFaultsMax)
		}
		c := cfg
		c.Faults = fs
		if err := c.Validate(); err != nil {
			t.Fatalf("seed %d: %v (%s)", seed, err, DescribeFaults(fs))
		}
		for _, f := range fs {
			kinds[f.Kind] = true
			if f.At+f.For > cfg.Duration {
				t.Errorf("seed %d: %s ends at %v, after the traffic period %v", seed, f.Kind, f.At+f.For, cfg.Duration)
			}
		}
	}
	if len(kinds) != len(swarmKinds) {
		t.Errorf("200 seeds drew %d kinds, want all %d", len(kinds), len(swarmKinds))
	}
	if n := len(DrawSwarm(5, cfg, SwarmSpec{Faults: 3})); n != 3 {
		t.Errorf("SwarmSpec.Faults=3: got %d faults, want 3", n)
	}
}

// TestHistoryFaultsOnHistoryClock: fault windows handed to the checkers
// lie within the history's time span (the liveness deadline counts from
// the last heal, so windows on another clock silently disable that).
func TestHistoryFaultsOnHistoryClock(t *testing.T) {
	sc, err := scenarios.Load("logic-failover")
	if err != nil {
		t.Fatal(err)
	}
	short := *sc
	short.Duration = scenarios.Duration(20 * time.Second)
	short.Workload.Spikes = nil
	short.Faults = []scenarios.Fault{{At: scenarios.Duration(5 * time.Second), For: scenarios.Duration(5 * time.Second),
		What: scenarios.Crash, Target: "logic-1"}}
	short.Exercised = nil
	p, err := FromScenario(&short, PlanOptions{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	first, last := r.History[0].Call, r.History[0].Call
	for _, op := range r.History {
		first = min(first, op.Call)
		last = max(last, op.ReturnTime())
	}
	fs := r.HistoryFaults()
	if len(fs) != 1 {
		t.Fatalf("got %d fault windows, want 1", len(fs))
	}
	if fs[0].Start < first || fs[0].End > last {
		t.Errorf("window [%d, %d] outside the history's span [%d, %d]", fs[0].Start, fs[0].End, first, last)
	}
	if got := time.Duration(fs[0].End - fs[0].Start); got != 5*time.Second {
		t.Errorf("window lasts %v, want 5s", got)
	}
}
