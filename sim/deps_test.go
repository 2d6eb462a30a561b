package sim

import (
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// depScenario is a small run with the given faults, as a scenario file
// would say it.
func depScenario(t *testing.T, faults string) *scenarios.Scenario {
	t.Helper()
	src := `name: dep-test
seed: 1
duration: 30s
quiet: 30s
liveness_bound: 25s
topology: {entry: 2, logic: 2, extlogic: 1, das: 2}
workload: {users: 40, conversations: 60, rate: 20}
faults:
` + faults
	sc, err := scenarios.Parse("dep-test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func runScenario(t *testing.T, sc *scenarios.Scenario, opts PlanOptions) (*Plan, *Result, *Outcome) {
	t.Helper()
	p, err := FromScenario(sc, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Run()
	if err != nil {
		t.Fatal(err)
	}
	if r.Err != nil {
		t.Fatalf("run stopped: %v", r.Err)
	}
	o, err := p.Judge(r, JudgeOptions{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p, r, o
}

// TestDependencyFaultsFire: each dependency fault fires, moves its
// counter, and a run through it passes the checkers.
func TestDependencyFaultsFire(t *testing.T) {
	tests := []struct {
		name, fault string
		want        map[string]uint64 // counter: exact value (0: must stay zero)
		atLeast     map[string]uint64
	}{
		{"db-crash", "  - {at: 8s, for: 5s, what: db-crash, target: db}\n",
			map[string]uint64{"db_crash_recoveries": 1, "db_failovers": 0}, nil},
		{"db-pause", "  - {at: 8s, for: 3s, what: db-pause, target: db}\n",
			map[string]uint64{"db_crash_recoveries": 0}, nil},
		{"nats-kill leader", "  - {at: 8s, for: 5s, what: nats-kill, target: nats-leader}\n",
			map[string]uint64{"nats_node_restarts": 1, "nats_leader_changes": 1}, nil},
		{"nats-kill follower", "  - {at: 8s, for: 5s, what: nats-kill, target: nats-follower}\n",
			map[string]uint64{"nats_node_restarts": 1, "nats_leader_changes": 0}, nil},
		{"nats-kill nats-0 (the first leader)", "  - {at: 8s, for: 5s, what: nats-kill, target: nats-0}\n",
			map[string]uint64{"nats_node_restarts": 1, "nats_leader_changes": 1}, nil},
		{"nats-partition leader", "  - {at: 8s, for: 5s, what: nats-partition, target: nats-leader}\n",
			map[string]uint64{"nats_node_restarts": 0, "nats_leader_changes": 1}, nil},
		// Two nodes down: no quorum until one is back, then one election.
		{"nats quorum lost", "  - {at: 8s, for: 5s, what: nats-kill, target: nats-1}\n  - {at: 9s, for: 5s, what: nats-kill, target: nats-2}\n",
			map[string]uint64{"nats_node_restarts": 2, "nats_leader_changes": 1}, nil},
		{"redis-kill", "  - {at: 8s, for: 5s, what: redis-kill, target: presence}\n",
			nil, map[string]uint64{"presence_lost": 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, r, o := runScenario(t, depScenario(t, tt.fault), PlanOptions{})
			for name, want := range tt.want {
				if got := o.Exercised[name]; got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
			for name, want := range tt.atLeast {
				if got := o.Exercised[name]; got < want {
					t.Errorf("%s = %d, want at least %d", name, got, want)
				}
			}
			if got := o.Exercised["presence_lost"]; tt.atLeast == nil && got != 0 {
				t.Errorf("presence_lost = %d without a redis-kill, want 0", got)
			}
			if !o.Pass() {
				t.Errorf("verdict %s, want pass: %s", o.Word, strings.Join(o.Reasons, "; "))
			}
			if r.Deps.ReplicaDivergences != 0 {
				t.Errorf("replica diverged %d times", r.Deps.ReplicaDivergences)
			}
		})
	}
}

// TestDBPauseHangs: requests to a frozen database wait, they do not fail:
// sends made during the pause are acknowledged after it.
func TestDBPauseHangs(t *testing.T) {
	const at, pause = 8 * time.Second, 3 * time.Second
	_, r, o := runScenario(t, depScenario(t, "  - {at: 8s, for: 3s, what: db-pause, target: db}\n"), PlanOptions{})
	if !o.Pass() {
		t.Fatalf("verdict %s: %s", o.Word, strings.Join(o.Reasons, "; "))
	}
	base := epoch.UnixNano()
	slow := 0
	for i := range r.History {
		op := &r.History[i]
		if op.Kind != check.KindSend || !op.Returned() || op.Error != "" || op.Out.Seq == 0 {
			continue
		}
		call := op.Call - base
		if call >= int64(at) && call < int64(at+pause-time.Second) {
			if ret := *op.Return - base; ret >= int64(at+pause) {
				slow++
			}
		}
	}
	if slow == 0 {
		t.Fatalf("no send made during the pause was acknowledged after it: the store did not hang")
	}
	// The same run with a db-outage instead refuses the requests: sends
	// are answered with errors, or retried, not held.
	if r.Stats["das.Failed"] != 0 {
		t.Errorf("das.Failed = %d during a pause, want 0 (a frozen database fails nothing)", r.Stats["das.Failed"])
	}
}

// TestReplicationAsyncLosesTheLagWindow: an asynchronous failover loses
// exactly the acknowledged appends the replica had not received, the
// promoted store hands their seqs out again, and every other acknowledged
// message survives.
func TestReplicationAsyncLosesTheLagWindow(t *testing.T) {
	sc, err := scenarios.Load("db-failover-async")
	if err != nil {
		t.Fatal(err)
	}
	reused := 0
	for seed := uint64(1); seed <= 3; seed++ {
		_, r, o := runScenario(t, sc, PlanOptions{Seed: seed})
		lost := r.Deps.LostAcknowledged
		if len(lost) == 0 || r.Deps.DBFailovers != 1 || r.Deps.ReplicaDivergences != 0 {
			t.Fatalf("seed %d: lost %d, failovers %d, divergences %d; want some lost, 1, 0", seed, len(lost),
				r.Deps.DBFailovers, r.Deps.ReplicaDivergences)
		}
		type key struct {
			conv string
			seq  uint64
		}
		stored := map[key]string{}
		for _, m := range r.Store {
			stored[key{m.ConvID, m.Seq}] = m.ClientMsgID
		}
		isLost := map[key]string{}
		for _, l := range lost {
			if id, ok := stored[key{l.Conv, l.Seq}]; ok && id == l.ClientMsgID {
				t.Errorf("seed %d: %s counted lost but stored", seed, l)
			} else if ok {
				reused++
			}
			isLost[key{l.Conv, l.Seq}] = l.ClientMsgID
		}
		// Every send the clients saw acknowledged is stored at its seq,
		// or was among the lost.
		for i := range r.History {
			op := &r.History[i]
			if op.Kind != check.KindSend || !op.Returned() || op.Unknown || op.Error != "" || op.Out.Seq == 0 {
				continue
			}
			k := key{op.Conv, op.Out.Seq}
			if stored[k] != op.In.ClientMsgID && isLost[k] != op.In.ClientMsgID {
				t.Errorf("seed %d: acknowledged %v seq %d (%s) is neither stored nor counted lost", seed, op.Conv,
					op.Out.Seq, op.In.ClientMsgID)
			}
		}
		if !o.Pass() || !o.AsExpected {
			t.Errorf("seed %d: verdict %s (as expected %v), want a pass as expected: %s", seed, o.Word, o.AsExpected,
				strings.Join(o.Reasons, "; "))
		}
		for _, want := range []string{"failed as expected: ", "promise 2 ", "promise 5 ", "db_lost_acknowledged"} {
			if !strings.Contains(o.Expected, want) {
				t.Errorf("seed %d: judgement %q lacks %q", seed, o.Expected, want)
			}
		}
	}
	if reused == 0 {
		t.Errorf("no lost seq was handed out again over seeds 1-3")
	}
}

// TestReplicationModel drives the replica directly: async acknowledges at
// commit and a promotion loses the writes of the last lag; semi-sync
// acknowledges after the replica has them, so nothing acknowledged is
// pending at the primary's death.
func TestReplicationModel(t *testing.T) {
	const lag = 200 * time.Millisecond
	appendAt := func(d *simStore, at time.Duration, id string, acked bool) {
		d.s.now = int64(at)
		c := &storeCall{op: node.StoreOp{Append: []store.AppendReq{{ConvID: "p:a:b:l", SenderID: "a", PeerID: "b",
			ClientMsgID: id}}}}
		if _, err := d.commit(c, acked); err != nil {
			t.Fatal(err)
		}
	}
	for _, async := range []bool{true, false} {
		s := newSim(DefaultConfig(), DefaultServices())
		d := newSimStore(s, s.services.NewStore(nil))
		s.store = d
		d.enableReplication(async, lag)
		acked := async || !d.repl.syncAck()
		appendAt(d, 1*time.Second, "m1", acked)
		appendAt(d, 2*time.Second, "m2", acked)
		appendAt(d, 2100*time.Millisecond, "m3", acked)
		s.now = int64(2250 * time.Millisecond)
		d.repl.primaryDied(s.now)
		// m1 and m2 reached the replica (lag passed); m3 did not.
		d.repl.promote()
		dump, err := d.st.Dump(bg)
		if err != nil {
			t.Fatal(err)
		}
		if len(dump) != 2 || dump[0].ClientMsgID != "m1" || dump[1].ClientMsgID != "m2" {
			t.Fatalf("async=%v: promoted store holds %+v, want m1 m2", async, dump)
		}
		wantLost := map[bool]int{true: 1, false: 0}[async]
		if len(d.repl.lost) != wantLost {
			t.Errorf("async=%v: lost %v, want %d", async, d.repl.lost, wantLost)
		}
		if async && (d.repl.lost[0].ClientMsgID != "m3" || d.repl.lost[0].Seq != 3) {
			t.Errorf("lost %v, want m3 at seq 3", d.repl.lost)
		}
		// The promoted store's counter hands seq 3 out again.
		res, err := d.st.Append(bg, []store.AppendReq{{ConvID: "p:a:b:l", SenderID: "b", PeerID: "a", ClientMsgID: "m4"}})
		if err != nil || res[0].Seq != 3 {
			t.Errorf("next append got %+v %v, want seq 3", res, err)
		}
		// The fresh replica was seeded with the promoted state.
		rd, _ := d.repl.replica.Dump(bg)
		if len(rd) != 2 {
			t.Errorf("new replica holds %d messages, want 2", len(rd))
		}
		if d.repl.divergences != 0 {
			t.Errorf("divergences %d", d.repl.divergences)
		}
	}
}

// TestFailoverJudgement: semi-sync passes; semi-sync with the no-semisync
// bug loses acknowledged messages and fails; async fails as expected, and
// an expectation naming a promise it does not break fails.
func TestFailoverJudgement(t *testing.T) {
	semi, err := scenarios.Load("db-failover-semisync")
	if err != nil {
		t.Fatal(err)
	}
	_, r, o := runScenario(t, semi, PlanOptions{Seed: 1})
	if !o.Pass() || o.AsExpected || len(r.Deps.LostAcknowledged) != 0 || r.Deps.DBFailovers != 1 {
		t.Errorf("semisync: verdict %s as expected %v lost %d failovers %d, want pass, false, 0, 1 (%s)", o.Word,
			o.AsExpected, len(r.Deps.LostAcknowledged), r.Deps.DBFailovers, strings.Join(o.Reasons, "; "))
	}
	_, r, o = runScenario(t, semi, PlanOptions{Seed: 1, Bugs: bugs.Set{bugs.NoSemiSync: true}})
	if o.Pass() || len(r.Deps.LostAcknowledged) == 0 {
		t.Errorf("semisync with no-semisync: verdict %s lost %d, want fail with losses", o.Word, len(r.Deps.LostAcknowledged))
	}
	async, err := scenarios.Load("db-failover-async")
	if err != nil {
		t.Fatal(err)
	}
	wrong := *async
	wrong.ExpectViolations = &scenarios.Expectation{Promises: []int{3}}
	_, _, o = runScenario(t, &wrong, PlanOptions{Seed: 1})
	if o.Pass() || !strings.Contains(strings.Join(o.Reasons, "; "), "expected a violation of promise 3, none seen") {
		t.Errorf("async expecting promise 3: verdict %s (%s), want fail naming promise 3", o.Word, strings.Join(o.Reasons, "; "))
	}
	// Without an expectation an async failover is just a failure.
	plain := *async
	plain.Expect, plain.ExpectViolations = scenarios.Pass, nil
	_, _, o = runScenario(t, &plain, PlanOptions{Seed: 1})
	if o.Pass() {
		t.Errorf("async expecting a pass: verdict pass, want fail")
	}
}

// TestDependencyScenariosDeterministic: one seed, one trace hash, for each
// dependency scenario.
func TestDependencyScenariosDeterministic(t *testing.T) {
	for _, name := range []string{"db-primary-crash", "db-failover-semisync", "db-failover-async", "nats-node-loss",
		"nats-leader-loss", "redis-loss"} {
		t.Run(name, func(t *testing.T) {
			var h [2]uint64
			for i := range h {
				r, err := loadPlan(t, name, PlanOptions{Seed: 5}).Run()
				if err != nil {
					t.Fatal(err)
				}
				h[i] = r.TraceHash
			}
			if h[0] != h[1] {
				t.Errorf("trace hashes %016x %016x, want equal", h[0], h[1])
			}
		})
	}
}
