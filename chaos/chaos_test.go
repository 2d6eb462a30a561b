package chaos

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/store"
)

func testEnv(services ...string) *Env {
	paths := planPaths(services, depLayout{})
	px := &proxies{paths: map[string]path{}}
	for _, p := range paths {
		px.paths[p.name()] = p
	}
	return &Env{order: services, proxies: px}
}

func TestPlanPaths(t *testing.T) {
	services := []string{"entry-0", "logic-0", "logic-1", "das-0"}
	paths := planPaths(services, depLayout{})
	// 4*3 service pairs, NATS and Redis for each, MariaDB for das only.
	if got, want := len(paths), 4*3+4*2+1; got != want {
		t.Fatalf("got %d paths, want %d", got, want)
	}
	ports := map[int]bool{}
	for _, p := range paths {
		if ports[p.port] {
			t.Errorf("port %d used twice", p.port)
		}
		ports[p.port] = true
	}
	e := testEnv(services...)
	tests := []struct {
		a, b string
		both bool
		want []string
	}{
		{"entry-0", "logic-1", true, []string{"entry-0->logic-1", "logic-1->entry-0"}},
		{"entry-0", "logic-1", false, []string{"entry-0->logic-1"}},
		{"entry-0", "logic-*", false, []string{"entry-0->logic-0", "entry-0->logic-1"}},
		{"das-*", depMariaDB, false, []string{"das-0->mariadb"}},
		{"logic-0", depMariaDB, false, nil},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s_%s_%v", tc.a, tc.b, tc.both), func(t *testing.T) {
			if got := e.proxies.match(tc.a, tc.b, tc.both); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
	if addr, ok := e.proxies.addr("logic-0", "das-0"); !ok || !strings.HasPrefix(addr, "toxiproxy:") {
		t.Errorf("got addr %q %v, want a toxiproxy address", addr, ok)
	}
}

func TestPlanFaults(t *testing.T) {
	e := testEnv("entry-0", "logic-0", "logic-1", "das-0", "das-1")
	faults := []scenarios.Fault{
		{At: scenarios.Duration(60 * time.Second), For: scenarios.Duration(60 * time.Second), What: scenarios.Crash, Target: "logic-1"},
		{At: scenarios.Duration(40 * time.Second), What: scenarios.Restart, Target: "entry-0"},
		{At: scenarios.Duration(10 * time.Second), For: scenarios.Duration(4 * time.Second), What: scenarios.Pause, Target: "logic-0"},
		{At: scenarios.Duration(10 * time.Second), For: scenarios.Duration(time.Minute), What: scenarios.ClockSkew, Target: "logic-0",
			Params: map[string]string{"skew": "3s"}},
		{At: scenarios.Duration(30 * time.Second), For: scenarios.Duration(40 * time.Second), What: scenarios.DBTimeout, Target: "db",
			Params: map[string]string{"probability": "0.5", "commit_probability": "0.5"}},
		{At: scenarios.Duration(30 * time.Second), For: scenarios.Duration(45 * time.Second), What: scenarios.Partition,
			Target: "entry-0<->logic-1", Params: map[string]string{"mode": "symmetric"}},
	}
	p := planFaults(e, faults, 0.25)
	want := []struct {
		status   string
		at, for_ time.Duration
	}{
		{StatusApplied, 15 * time.Second, 15 * time.Second},
		{StatusApplied, 10 * time.Second, 0},
		{StatusApplied, 2500 * time.Millisecond, forMin}, // 1s scaled, raised to forMin
		{StatusSkipped, 2500 * time.Millisecond, 15 * time.Second},
		{StatusApproximated, 7500 * time.Millisecond, 10 * time.Second},
		{StatusApplied, 7500 * time.Millisecond, 11250 * time.Millisecond},
	}
	for i, w := range want {
		r := p.records[i]
		if r.Status != w.status || r.At != w.at || r.For != w.for_ {
			t.Errorf("fault %d (%s): got %s at %v for %v, want %s at %v for %v", i, r.What, r.Status, r.At, r.For, w.status, w.at, w.for_)
		}
	}
	if !strings.Contains(p.records[4].Note, "commit_probability 0.5 not honoured") {
		t.Errorf("got db-timeout note %q, want it to say commit_probability is not honoured", p.records[4].Note)
	}
	if !strings.Contains(p.records[5].Note, "entry-0->logic-1, logic-1->entry-0") {
		t.Errorf("got partition note %q, want both directions", p.records[5].Note)
	}
	if p.allSkipped() {
		t.Errorf("got allSkipped true with applied faults, want false")
	}
	if !planFaults(e, faults[3:4], 0.25).allSkipped() {
		t.Errorf("got allSkipped false for clock-skew alone, want true")
	}
}

func TestAllSkippable(t *testing.T) {
	tests := []struct {
		kinds []scenarios.FaultKind
		want  bool
	}{
		{nil, false},
		{[]scenarios.FaultKind{scenarios.ClockSkew}, true},
		{[]scenarios.FaultKind{scenarios.ClockSkew, scenarios.PresenceLoss, scenarios.MQRedelivery}, true},
		{[]scenarios.FaultKind{scenarios.ClockSkew, scenarios.Crash}, false},
	}
	for _, tc := range tests {
		var fs []scenarios.Fault
		for _, k := range tc.kinds {
			fs = append(fs, scenarios.Fault{What: k})
		}
		if got := allSkippable(fs); got != tc.want {
			t.Errorf("allSkippable(%v): got %v, want %v", tc.kinds, got, tc.want)
		}
	}
}

// TestScraperAcrossRestarts: after a start by the harness the counters
// begin again from zero and the total keeps the old incarnation's count,
// also when the new one is already past it; within one incarnation a value
// that goes down (a gauge) is not a restart.
func TestScraperAcrossRestarts(t *testing.T) {
	var counter, gauge atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# HELP zzim_entry_resends x\nzzim_entry_resends{node=\"entry-0\"} %d\nzzim_entry_admit_inflight %d\nother_metric 5\n",
			counter.Load(), gauge.Load())
	}))
	defer srv.Close()
	st := &started{hosts: map[string]string{metricsPort: strings.TrimPrefix(srv.URL, "http://")}}
	e := &Env{order: []string{"entry-0"}, services: map[string]*started{"entry-0": st}, starts: map[string]int{}}
	s := newScraper(e)
	steps := []struct {
		counter, gauge int64
		restart        bool // Env.Start before this scrape
	}{{3, 10, false}, {7, 4, false}, {9, 6, true}, {12, 2, false}}
	for _, step := range steps {
		if step.restart {
			e.starts["entry-0"]++
		}
		counter.Store(step.counter)
		gauge.Store(step.gauge)
		s.scrapeAll(t.Context())
	}
	if got, want := s.total("zzim_entry_resends"), uint64(7+12); got != want {
		t.Errorf("got total %d, want %d", got, want)
	}
	if got, want := s.total("zzim_entry_admit_inflight"), uint64(4+2); got != want {
		t.Errorf("got gauge total %d, want %d (the old incarnation's last value plus the current one)", got, want)
	}
	if got := s.total("other_metric"); got != 0 {
		t.Errorf("got other_metric %d, want 0 (only zzim_* is read)", got)
	}
}

func TestParseMetrics(t *testing.T) {
	in := "zzim_logic_retries{node=\"logic-0\"} 2\nzzim_logic_retries{node=\"logic-1\"} 3\nzzim_connections 4\n# zzim_x 9\nbad line\n"
	got := parseMetrics(strings.NewReader(in))
	if got["zzim_logic_retries"] != 5 || got["zzim_connections"] != 4 || len(got) != 2 {
		t.Errorf("got %v, want zzim_logic_retries 5 and zzim_connections 4", got)
	}
}

func TestChecksFor(t *testing.T) {
	checks, bound, err := checksFor([]string{"structural", "unread", "liveness", "linearizability"}, 20*time.Second)
	if err != nil || !slices.Equal(checks, []string{check.CheckStructural, check.CheckLinearizability}) || bound != 20*time.Second {
		t.Errorf("got %v %v %v, want structural,linearizability 20s", checks, bound, err)
	}
	if _, bound, _ := checksFor([]string{"structural"}, 20*time.Second); bound != 0 {
		t.Errorf("got bound %v without liveness, want 0", bound)
	}
	if _, _, err := checksFor([]string{"vibes"}, 0); err == nil {
		t.Errorf("got no error for an unknown check, want one")
	}
}

func TestSendLatencyAndLine(t *testing.T) {
	ret := func(v int64) *int64 { return &v }
	var ops []check.Op
	for i := int64(1); i <= 100; i++ {
		ops = append(ops, check.Op{Kind: check.KindSend, Call: 0, Return: ret(i * int64(time.Millisecond)), Out: check.Output{Seq: uint64(i)}})
	}
	ops = append(ops, check.Op{Kind: check.KindSend, Call: 0, Unknown: true})                                      // never answered
	ops = append(ops, check.Op{Kind: check.KindSend, Call: 0, Return: ret(int64(time.Hour)), Error: "OVERLOADED"}) // refused
	l := sendLatency(ops)
	if l.N != 100 || l.P50 != 50*time.Millisecond || l.P99 != 99*time.Millisecond || l.Max != 100*time.Millisecond {
		t.Errorf("got %+v, want n=100 p50=50ms p99=99ms max=100ms", l)
	}
	r := &Report{Word: "skipped", Seed: 7, Events: 12, TrafficSeconds: 30, SettleSeconds: 1.5, WallSeconds: 50.25}
	if got, want := r.Line(), "verdict=skipped seed=7 trace=- events=12 sim_seconds=31.5 wall_seconds=50.25"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestPlanPathsReplicated(t *testing.T) {
	services := []string{"logic-0", "das-0"}
	paths := planPaths(services, depLayout{nats: natsNodeNames(true), replicated: true})
	// 2 service pairs, 3 NATS nodes and Redis each, MariaDB for das, the replication path.
	if got, want := len(paths), 2+2*4+1+1; got != want {
		t.Fatalf("got %d paths, want %d", got, want)
	}
	px := &proxies{paths: map[string]path{}}
	for _, p := range paths {
		px.paths[p.name()] = p
	}
	if got := px.match("*", depNATS+"-*", false); len(got) != 6 {
		t.Errorf("mq-outage paths: got %v, want the 6 paths to the 3 nodes", got)
	}
	if got := px.match("das-*", depMariaDB, false); !slices.Equal(got, []string{"das-0->mariadb"}) {
		t.Errorf("das paths: got %v, want only das-0's (not the replication path)", got)
	}
	if _, ok := px.addr(depReplica, depMariaDB); !ok {
		t.Errorf("no replication path")
	}
}

func TestDepFaultsPlanned(t *testing.T) {
	e := testEnv("entry-0", "logic-0", "das-0")
	var faults []scenarios.Fault
	for _, k := range depKinds {
		faults = append(faults, scenarios.Fault{At: scenarios.Duration(4 * time.Second), For: scenarios.Duration(4 * time.Second), What: k})
	}
	p := planFaults(e, faults, 1)
	for i, r := range p.records {
		if r.Status != StatusApplied || p.inj[i].start == nil || p.inj[i].stop == nil {
			t.Errorf("%s: got %s, start %v, stop %v, want applied with both", r.What, r.Status, p.inj[i].start != nil, p.inj[i].stop != nil)
		}
	}
	if !p.hasDepFaults() || !needsReplicatedDB(faults) || !needsNATSCluster(faults) {
		t.Errorf("got hasDepFaults %v, replicated %v, cluster %v, want all true", p.hasDepFaults(), needsReplicatedDB(faults), needsNATSCluster(faults))
	}
	if needsReplicatedDB(faults[:1]) || needsNATSCluster(faults[:1]) {
		t.Errorf("db-crash alone: want one MariaDB and one NATS server")
	}
	if allSkippable(faults) {
		t.Errorf("dependency faults reported skippable")
	}
	async := planFaults(e, []scenarios.Fault{{What: kindDBFailover, Params: map[string]string{"replication": "async", "lag": "500ms"}}}, 1)
	if n := async.records[0].Note; !strings.Contains(n, "asynchronous") || !strings.Contains(n, "500ms lag") {
		t.Errorf("got note %q, want asynchronous with a 500ms lag", n)
	}
	e.cfg.Bugs = map[bugs.Switch]bool{bugNoSemiSync: true}
	if n := planFaults(e, faults[1:2], 1).records[0].Note; !strings.Contains(n, "no-semisync") {
		t.Errorf("got note %q, want it to name the no-semisync bug", n)
	}
}

func TestRelayApplied(t *testing.T) {
	s := map[string]string{"Master_Log_File": "b.000001", "Relay_Master_Log_File": "b.000001", "Read_Master_Log_Pos": "699",
		"Exec_Master_Log_Pos": "699", "Slave_SQL_Running": "Yes"}
	if !relayApplied(s) {
		t.Errorf("got not applied for equal positions")
	}
	s["Exec_Master_Log_Pos"] = "512"
	if relayApplied(s) {
		t.Errorf("got applied with the SQL thread behind")
	}
	if relayApplied(map[string]string{}) {
		t.Errorf("got applied for an empty status (not a replica)")
	}
}

func TestOutageAndLost(t *testing.T) {
	ret := func(v int64) *int64 { return &v }
	ms := int64(time.Millisecond)
	ok := func(call, r int64, seq uint64, id string) check.Op {
		return check.Op{Kind: check.KindSend, User: "u1", Conv: "c", Call: call * ms, Return: ret(r * ms), Out: check.Output{Seq: seq},
			In: check.Input{ClientMsgID: id}}
	}
	ops := []check.Op{
		ok(0, 10, 1, "a"),
		ok(100, 110, 2, "b"),
		{Kind: check.KindSend, Call: 200 * ms, Unknown: true},                              // never answered
		{Kind: check.KindSend, Call: 300 * ms, Return: ret(310 * ms), Error: "OVERLOADED"}, // refused
		ok(250, 2000, 3, "c"), // called after the first failure, succeeded last
		ok(400, 1500, 4, "d"), // the first success after it
		ok(150, 1200, 5, "e"), // called before the failure: not a recovery
	}
	o := clientOutage(ops)
	if o.FailedSends != 2 || !o.Recovered || o.Duration != 1300*time.Millisecond || o.FirstFailure != 200*ms {
		t.Errorf("got %+v, want 2 failed, recovered after 1.3s from the failure at 200ms", o)
	}
	if o.AckGapMax != 1090*time.Millisecond {
		t.Errorf("got ack gap %v, want 1.09s (110ms to 1.2s)", o.AckGapMax)
	}
	if none := clientOutage(ops[:2]); none.FailedSends != 0 || none.Duration != 0 || none.Recovered {
		t.Errorf("got %+v without failures, want none", none)
	}
	dump := []store.Message{{ConvID: "c", Seq: 1, ClientMsgID: "a"}, {ConvID: "c", Seq: 2, ClientMsgID: "x"}, {ConvID: "c", Seq: 4, ClientMsgID: "d"},
		{ConvID: "c", Seq: 5, ClientMsgID: "e"}}
	lost := lostAcknowledged(ops, dump)
	want := []LostMessage{{Conv: "c", Seq: 2, Sender: "u1", ClientMsgID: "b", Replaced: "x"}, {Conv: "c", Seq: 3, Sender: "u1", ClientMsgID: "c"}}
	if !slices.Equal(lost, want) {
		t.Errorf("got lost %+v, want %+v", lost, want)
	}
}

// TestJudgeExpectations: the report decides as scenarios.Judge does, from
// the checkers' violations by promise, failed faults and required
// counters.
func TestJudgeExpectations(t *testing.T) {
	loss := &check.Verdict{Violations: []check.Violation{{Promise: check.PromiseDurable}, {Promise: check.PromiseDurable},
		{Promise: check.PromiseNoLoss}, {Promise: check.PromiseTotalOrder}}}
	async := &scenarios.Scenario{Expect: scenarios.Fail, ExpectViolations: &scenarios.Expectation{Promises: []int{2, 5}, Consequences: []int{1}}}
	strict := &scenarios.Scenario{Expect: scenarios.Fail, ExpectViolations: &scenarios.Expectation{Promises: []int{2, 5}}}
	pass := &scenarios.Scenario{Expect: scenarios.Pass}
	failedFault := &faultPlan{records: []*FaultRecord{{What: "db-failover", Target: "db", Status: StatusFailed, Err: "promote: timeout"}}}
	for _, tc := range []struct {
		name       string
		sc         *scenarios.Scenario
		v          *check.Verdict
		plan       *faultPlan
		required   []string
		word       string
		asExpected bool
	}{
		{"the expected loss", async, loss, &faultPlan{}, nil, "pass", true},
		{"a consequence not tolerated", strict, loss, &faultPlan{}, nil, "fail", false},
		{"the loss not shown", async, &check.Verdict{Pass: true}, &faultPlan{}, nil, "fail", false},
		{"a failed fault beside the loss", async, loss, failedFault, nil, "fail", false},
		{"a required counter zero beside the loss", async, loss, &faultPlan{}, []string{"db_failovers"}, "fail", false},
		{"expect pass, clean", pass, &check.Verdict{Pass: true}, &faultPlan{}, nil, "pass", false},
		{"expect pass, loss", pass, loss, &faultPlan{}, nil, "fail", false},
		{"expect pass, checker undecided", pass, &check.Verdict{Unknown: true}, &faultPlan{}, nil, "fail", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Report{Required: tc.required, Exercised: map[string]uint64{"db_failovers": 0}}
			r.decide(tc.sc.Judge(r.failures(tc.v, tc.plan)))
			if r.Word != tc.word || r.AsExpected != tc.asExpected {
				t.Errorf("got %s as_expected=%v (reasons %q, expected %q), want %s as_expected=%v", r.Word, r.AsExpected,
					r.Reasons, r.Expected, tc.word, tc.asExpected)
			}
		})
	}
	r := &Report{}
	fs := r.failures(loss, &faultPlan{})
	if len(fs) != 3 || fs[0].Promise != 1 || fs[1].Promise != 2 || !strings.Contains(fs[1].Reason, "2 violations") {
		t.Errorf("got %+v, want one failure per promise (1, 2, 5) with its count", fs)
	}
}

func TestDurableSettings(t *testing.T) {
	for _, tc := range []struct {
		row string
		ok  bool
	}{
		{"1\t0\t0\n", true},  // no binary log: the redo log alone
		{"1\t1\t1\n", true},  // a replicated server
		{"2\t0\t0\n", false}, // flushed once a second
		{"1\t1\t0\n", false}, // binary log not synced
		{"1\t1\n", false},
	} {
		if err := durable(tc.row); (err == nil) != tc.ok {
			t.Errorf("%q: got %v, want ok=%v", tc.row, err, tc.ok)
		}
	}
	e := &Env{natsNodes: natsNodeNames(true), stopped: map[string]bool{}, disconnected: map[string]bool{}, paused: map[string]bool{}}
	if got := e.natsFollower("nats-0"); got != "nats-1" {
		t.Errorf("follower of leader nats-0: got %s, want nats-1", got)
	}
	if got := e.natsFollower("nats-1"); got != "nats-0" {
		t.Errorf("follower of leader nats-1: got %s, want nats-0", got)
	}
}

func TestAcksResumed(t *testing.T) {
	ret := func(v int64) *int64 { return &v }
	ms := int64(time.Millisecond)
	ops := []check.Op{
		{Kind: check.KindSend, Call: 100 * ms, Return: ret(900 * ms), Out: check.Output{Seq: 1}},  // before the end
		{Kind: check.KindSend, Call: 500 * ms, Return: ret(1300 * ms), Out: check.Output{Seq: 2}}, // the first after it
		{Kind: check.KindSend, Call: 600 * ms, Return: ret(1100 * ms), Error: "UNAVAILABLE"},      // failed: not an ack
	}
	recs := []*FaultRecord{{Start: 200 * ms, End: 1000 * ms}, {Start: 200 * ms}}
	acksResumed(recs, ops)
	if recs[0].AcksResumed != 300*time.Millisecond || recs[1].AcksResumed != 0 {
		t.Errorf("got %v and %v, want 300ms after the end, and 0 for a fault that has not ended", recs[0].AcksResumed, recs[1].AcksResumed)
	}
}
