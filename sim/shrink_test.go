package sim

import (
	"slices"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/wire"
)

// sendKey is what the workload decides about one send: when, where, what.
type sendKey struct {
	call int64
	user string
	conv string
	body string
}

func sendsOf(res *Result) map[sendKey]bool {
	out := map[sendKey]bool{}
	for _, op := range res.History {
		if op.Kind == "send" {
			out[sendKey{op.Call, op.User, op.Conv, op.In.Body}] = true
		}
	}
	return out
}

// TestRemovingAUserShiftsNoOtherSend: with one user removed by
// Workload.KeepUsers, every other send happens at the same time, from the
// same user, in the same conversation, with the same body.
func TestRemovingAUserShiftsNoOtherSend(t *testing.T) {
	full := smallConfig(7)
	full.Workload.ChurnRate = 0.2
	full.Workload.OfflineMean = time.Second
	resFull, err := Run(full)
	if err != nil {
		t.Fatal(err)
	}
	const removed = "u3"
	cut := full
	for u := 0; u < full.Workload.Users; u++ {
		if "u"+itoa(u) != removed {
			cut.Workload.KeepUsers = append(cut.Workload.KeepUsers, u)
		}
	}
	resCut, err := Run(cut)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resCut.Counters.Clients, resFull.Counters.Clients-1; got != want {
		t.Errorf("got %d clients, want %d", got, want)
	}
	a, b := sendsOf(resFull), sendsOf(resCut)
	kept := 0
	for k := range a {
		conv, err := wire.ParseConvID(k.conv)
		if err != nil {
			t.Fatal(err)
		}
		involved := conv.Buyer == removed || conv.Seller == removed
		if involved {
			continue
		}
		kept++
		if !b[k] {
			t.Errorf("send %+v of the full run is missing with %s removed", k, removed)
		}
	}
	for k := range b {
		if !a[k] {
			t.Errorf("send %+v with %s removed is not in the full run", k, removed)
		}
		if k.user == removed {
			t.Errorf("removed user sent %+v", k)
		}
	}
	if kept == 0 {
		t.Fatalf("no sends compared, want some")
	}
	t.Logf("%d sends compared", kept)
}

// oneMinimal checks, independently of the shrinker, that cfg fails and
// that removing any one fault or user (its clients) makes it pass.
func oneMinimal(t *testing.T, cfg Config, fails func(*Result) bool) {
	t.Helper()
	run := func(c Config) bool {
		res, err := Run(c)
		if err != nil {
			t.Fatal(err)
		}
		return res.Err == nil && fails(res)
	}
	if !run(cfg) {
		t.Fatalf("shrunk config passes, want it to fail")
	}
	for i := range cfg.Faults {
		c := cfg
		c.Faults = append(slices.Clone(cfg.Faults[:i]), cfg.Faults[i+1:]...)
		if run(c) {
			t.Errorf("still fails without fault %d (%+v): not 1-minimal", i, cfg.Faults[i])
		}
	}
	users := cfg.Workload.KeepUsers
	if len(users) == 0 {
		users = indices(cfg.Workload.Users)
	}
	if len(users) == 1 {
		return // removing the last user leaves no run
	}
	for i := range users {
		c := cfg
		c.Workload.KeepUsers = append(slices.Clone(users[:i]), users[i+1:]...)
		if run(c) {
			t.Errorf("still fails without user %d: not 1-minimal", users[i])
		}
	}
}

// TestShrinkConfig: a faulty run with a bug switch shrinks to a smaller,
// 1-minimal run that breaks the same promise.
func TestShrinkConfig(t *testing.T) {
	cfg := faultyConfig(5)
	cfg.Bugs = bugs.Set{bugs.LogicLocalSeq: true}
	res, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := res.Check(check.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Pass || len(v.Violations) == 0 {
		t.Fatalf("the bug run passes, want a violation to shrink")
	}
	promise := v.Violations[0].Promise
	fails := FailsPromise(check.Options{}, promise)
	sh, err := ShrinkWith(ConfigReducer(cfg), fails, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("promise %d: before %s; after %s; %d runs in %s", promise, sh.Before, sh.After, sh.Runs, sh.Wall)
	if sh.After.Users >= sh.Before.Users && sh.After.Faults >= sh.Before.Faults {
		t.Errorf("nothing removed: before %s, after %s", sh.Before, sh.After)
	}
	oneMinimal(t, sh.Config, fails)
}

// TestShrinkScenarios: for four bug switches, the shrunk scenario, written
// with scenarios.Marshal and read back with Parse, reproduces through
// FromScenario without overrides (same promise), and is 1-minimal: removing
// any one remaining fault or user (with its client) makes it pass.
func TestShrinkScenarios(t *testing.T) {
	// unserialised-appends on logic-pause shrinks too, but takes about
	// 1600 runs (its race needs dozens of users' traffic): not here.
	tests := []struct {
		bug      bugs.Switch
		scenario string
		checks   []string
		long     bool
	}{
		{bugs.NoDedup, "ambiguous-commit", nil, false},
		{bugs.NoGapFill, "presence-loss", nil, false},
		{bugs.LogicLocalSeq, "logic-failover", nil, true},
		{bugs.StaleSync, "logic-failover", []string{"linearizability"}, true},
	}
	for _, tt := range tests {
		t.Run(string(tt.bug), func(t *testing.T) {
			if tt.long && testing.Short() {
				t.Skip("long shrink: skipped with -short")
			}
			sc, err := scenarios.Load(tt.scenario)
			if err != nil {
				t.Fatal(err)
			}
			sh, err := ShrinkScenario(sc, PlanOptions{Seed: 1, Bugs: bugs.Set{tt.bug: true}, Checks: tt.checks}, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("promise %d: before %s; after %s; %d runs in %s", sh.Promise, sh.Before, sh.After, sh.Runs, sh.Wall)
			data, err := scenarios.Marshal(sh.Scenario)
			if err != nil {
				t.Fatal(err)
			}
			written, err := scenarios.Parse("shrunk.yaml", data)
			if err != nil {
				t.Fatalf("the written scenario does not parse: %v\n%s", err, data)
			}
			if len(written.Workload.KeepUsers) == 0 || len(written.Workload.KeepUsers) >= sc.Workload.Users {
				t.Errorf("keep_users %v: want some but not all of %d users", written.Workload.KeepUsers, sc.Workload.Users)
			}
			breaks := func(s *scenarios.Scenario) bool {
				p, err := FromScenario(s, PlanOptions{})
				if err != nil {
					t.Fatal(err)
				}
				res, err := p.Run()
				if err != nil {
					t.Fatal(err)
				}
				v, err := res.Check(check.Options{Checks: p.Checks, LivenessBound: p.LivenessBound})
				if err != nil {
					t.Fatal(err)
				}
				return res.Err == nil && slices.Contains(Promises(v), sh.Promise)
			}
			if !breaks(written) {
				t.Fatalf("the written scenario does not break promise %d:\n%s", sh.Promise, data)
			}
			for i, f := range written.Faults {
				c := *written
				c.Faults = append(slices.Clone(written.Faults[:i]), written.Faults[i+1:]...)
				if breaks(&c) {
					t.Errorf("still breaks promise %d without fault %d (%s %s): not 1-minimal", sh.Promise, i, f.What, f.Target)
				}
			}
			users := written.Workload.KeepUsers
			if len(users) > 1 {
				for i, u := range users {
					c := *written
					c.Workload.KeepUsers = append(slices.Clone(users[:i]), users[i+1:]...)
					if breaks(&c) {
						t.Errorf("still breaks promise %d without user %d: not 1-minimal", sh.Promise, u)
					}
				}
			}
			t.Logf("shrunk scenario:\n%s", data)
		})
	}
}
