package sim

import (
	"slices"
	"testing"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
)

// bugCases: each bug switch, the scenario that exercises its guard, the
// checks that must catch it, and the promise they must name. The long
// sweeps go to 200 seeds; every switch is caught at the first seed today,
// so a small bound here still leaves room.
var bugCases = []struct {
	bug      bugs.Switch
	scenario string
	checks   []string // scenario vocabulary; empty: the scenario's own
	promise  int
	long     bool // a 3-minute scenario: skipped with -short
}{
	{bugs.LogicLocalSeq, "logic-failover", nil, check.PromiseTotalOrder, true},
	{bugs.NoDedup, "ambiguous-commit", nil, check.PromiseIdempotent, false},
	{bugs.AckBeforeCommit, "ambiguous-commit", nil, check.PromiseDurable, false},
	{bugs.UnserialisedAppends, "logic-pause", nil, check.PromiseFIFO, false},
	{bugs.NoGapFill, "presence-loss", nil, check.PromiseNoLoss, false},
	// Only the linearizability check can see a stale sync.
	{bugs.StaleSync, "logic-failover", []string{"linearizability"}, check.PromiseLinearizableSync, true},
	// The primary acknowledging before the replica has the commit: the
	// failover loses acknowledged messages.
	{bugs.NoSemiSync, "db-failover-semisync", nil, check.PromiseDurable, false},
}

// bugSeedsMax bounds each test sweep (the long sweeps' bound is 200).
const bugSeedsMax = 10

// sweepUntil runs sc's seeds 1..n two at a time with the switch set and
// returns the first seed whose checks name promise (0: none) and the
// promises each run broke.
func sweepUntil(t *testing.T, sc *scenarios.Scenario, set bugs.Set, checks []string, promise int, n int) (uint64, [][]int) {
	t.Helper()
	var broken [][]int
	for from := uint64(1); from <= uint64(n); from += 2 {
		seeds := []uint64{from}
		if from+1 <= uint64(n) {
			seeds = append(seeds, from+1)
		}
		plans := map[uint64]*Plan{}
		for _, seed := range seeds {
			p, err := FromScenario(sc, PlanOptions{Seed: seed, Bugs: set, Checks: checks})
			if err != nil {
				t.Fatal(err)
			}
			plans[seed] = p
		}
		out := Sweep(func(seed uint64) Config { return plans[seed].Config }, seeds, 2, nil)
		for _, r := range out {
			if r.Err != nil {
				t.Fatalf("seed %d: %v", r.Seed, r.Err)
			}
			if r.Result.Err != nil {
				t.Fatalf("seed %d: run stopped: %v", r.Seed, r.Result.Err)
			}
			p := plans[r.Seed]
			v, err := r.Result.Check(check.Options{Checks: p.Checks, LivenessBound: p.LivenessBound})
			if err != nil {
				t.Fatal(err)
			}
			got := Promises(v)
			broken = append(broken, got)
			if promise != 0 && slices.Contains(got, promise) {
				t.Logf("seed %d: %s", r.Seed, v.Line())
				return r.Seed, broken
			}
			if promise == 0 && !v.Pass {
				t.Errorf("seed %d without a bug switch: %s", r.Seed, v.Line())
				for i, vi := range v.Violations {
					if i < 3 {
						t.Log(vi.String())
					}
				}
			}
		}
	}
	return 0, broken
}

// TestBugSwitchesCaught: each switch is caught by the check meant for it,
// naming its promise, within bugSeedsMax seeds.
func TestBugSwitchesCaught(t *testing.T) {
	for _, tc := range bugCases {
		t.Run(string(tc.bug), func(t *testing.T) {
			if tc.long && testing.Short() {
				t.Skip("3-minute scenario: skipped with -short")
			}
			sc, err := scenarios.Load(tc.scenario)
			if err != nil {
				t.Fatal(err)
			}
			seed, broken := sweepUntil(t, sc, bugs.Set{tc.bug: true}, tc.checks, tc.promise, bugSeedsMax)
			if seed == 0 {
				t.Fatalf("%s on %s: no run of seeds 1..%d broke promise %d (%s); promises broken per seed: %v",
					tc.bug, tc.scenario, bugSeedsMax, tc.promise, check.PromiseName(tc.promise), broken)
			}
			t.Logf("%s on %s: promise %d (%s) broken at seed %d", tc.bug, tc.scenario, tc.promise,
				check.PromiseName(tc.promise), seed)
		})
	}
}

// TestBugScenariosPassWithoutSwitch: the same sweeps without a switch pass
// (the seeds the switches fail at, and one more).
func TestBugScenariosPassWithoutSwitch(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range bugCases {
		if seen[tc.scenario] {
			continue
		}
		seen[tc.scenario] = true
		t.Run(tc.scenario, func(t *testing.T) {
			if tc.long && testing.Short() {
				t.Skip("3-minute scenario: skipped with -short")
			}
			sc, err := scenarios.Load(tc.scenario)
			if err != nil {
				t.Fatal(err)
			}
			sweepUntil(t, sc, nil, nil, 0, 2)
		})
	}
}
