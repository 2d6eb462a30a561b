package scenarios

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// wantScenarios are the shipped library; each must be embedded.
var wantScenarios = []string{
	"ambiguous-commit", "bench-standard", "broadcast-100k", "clock-skew", "das-timeouts",
	"db-failover-async", "db-failover-semisync", "db-primary-crash",
	"entry-restart", "logic-failover", "logic-pause", "logic-scale-in", "logic-scale-out",
	"login-storm", "longpoll-httpentry-restart", "mq-redelivery", "nats-leader-loss", "nats-node-loss",
	"partition-entry-logic", "presence-loss", "redis-loss", "stale-membership", "traffic-spike",
}

func TestEmbeddedScenariosParse(t *testing.T) {
	infos, err := List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, in := range infos {
		names = append(names, in.Name)
		if in.Description == "" {
			t.Errorf("%s: got no description, want one", in.Name)
		}
	}
	if !reflect.DeepEqual(names, wantScenarios) {
		t.Fatalf("got scenarios %v, want %v", names, wantScenarios)
	}
	for _, name := range wantScenarios {
		t.Run(name, func(t *testing.T) {
			s, err := Load(name)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if s.Name != name {
				t.Fatalf("got name %q, want %q (the file name)", s.Name, name)
			}
			// CI runs many seeds of each: keep them short, bench-standard excepted.
			if name != "bench-standard" && s.Duration.D() > 3*time.Minute {
				t.Fatalf("got duration %s, want at most 3m", s.Duration)
			}
			if len(s.Faults) > 0 && len(s.Exercised) == 0 {
				t.Fatal("has faults but names no exercised counter: a fault that never mattered would pass unseen")
			}
			// A shipped scenario that fails does so on purpose, and says how.
			if s.Expect != Pass && s.ExpectViolations == nil {
				t.Fatalf("got expect %q with no expect_violations, want pass or a named failure", s.Expect)
			}
		})
	}
}

func TestSpecificScenarios(t *testing.T) {
	bench, err := Load("bench-standard")
	if err != nil {
		t.Fatal(err)
	}
	wantTopo := Topology{Entry: 2, HTTPEntry: 1, Logic: 3, ExtLogic: 2, Das: 2}
	if !reflect.DeepEqual(bench.Topology, wantTopo) || bench.Workload.Users != 1000 || bench.Workload.Rate != 200 || bench.Duration.D() != 10*time.Minute {
		t.Fatalf("got bench-standard %+v %+v %s, want %+v, 1000 users, 200/s, 10m", bench.Topology, bench.Workload, bench.Duration, wantTopo)
	}
	b, err := Load("broadcast-100k.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b.Workload.Users != 100_000 || b.Workload.Broadcasts == nil || len(b.Workload.Broadcasts.At) == 0 {
		t.Fatalf("got broadcast-100k workload %+v, want 100,000 users and broadcasts", b.Workload)
	}
	spike, _ := Load("traffic-spike")
	if len(spike.Workload.Spikes) != 1 || spike.Workload.Spikes[0].Multiplier != 10 {
		t.Fatalf("got spikes %+v, want one 10x", spike.Workload.Spikes)
	}
	storm, _ := Load("login-storm")
	if len(storm.Topology.LogicSplit) != storm.Topology.Logic || storm.Workload.LoginStorm == nil {
		t.Fatalf("got login-storm %+v, want a logic split and a login storm", storm)
	}
	if _, err := Load("no-such-scenario"); err == nil {
		t.Fatal("got no error loading a missing scenario, want one")
	}
}

const valid = `name: t
description: a test
duration: 1m
topology:
  entry: 1
  logic: 2
  das: 1
workload:
  users: 10
  conversations: 5
  rate: 3
faults:
  - at: 10s
    for: 5s
    what: crash
    target: logic-1
`

func TestParseDefaults(t *testing.T) {
	s, err := Parse("t.yaml", []byte(valid))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if s.Seed != SeedDefault || s.Expect != Pass || !reflect.DeepEqual(s.Checks, ChecksDefault) {
		t.Fatalf("got seed %d expect %q checks %v, want defaults", s.Seed, s.Expect, s.Checks)
	}
	if f := s.Faults[0]; f.At.D() != 10*time.Second || f.For.D() != 5*time.Second || f.What != Crash || f.Target != "logic-1" {
		t.Fatalf("got fault %+v, want crash logic-1 at 10s for 5s", f)
	}
}

// TestParseErrors: every error names the file and the line at fault.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want string
	}{
		{"unknown top key", func(s string) string { return s + "fautls: []\n" }, `t.yaml:17: unknown key "fautls"`},
		{"unknown nested key", func(s string) string { return strings.Replace(s, "  das: 1", "  das: 1\n  dass: 2", 1) }, `t.yaml:8: unknown key "dass"`},
		{"unknown fault key", func(s string) string { return s + "    tagret: x\n" }, `t.yaml:17: unknown key "tagret"`},
		{"duplicate key", func(s string) string { return s + "name: u\n" }, `t.yaml:17: duplicate key "name"`},
		{"bad duration", func(s string) string { return strings.Replace(s, "duration: 1m", "duration: soon", 1) }, `t.yaml:3: bad value "soon" for duration`},
		{"negative duration", func(s string) string { return strings.Replace(s, "for: 5s", "for: -5s", 1) }, `t.yaml:14: bad value "-5s" for faults[0].for`},
		{"bad int", func(s string) string { return strings.Replace(s, "users: 10", "users: many", 1) }, `t.yaml:9: bad value "many" for workload.users: want an integer`},
		{"bad float", func(s string) string { return strings.Replace(s, "rate: 3", "rate: fast", 1) }, `t.yaml:11: bad value "fast" for workload.rate`},
		{"list for scalar", func(s string) string { return strings.Replace(s, "rate: 3", "rate: [3]", 1) }, `t.yaml:11: bad value for workload.rate: want a single value`},
		{"scalar for mapping", func(s string) string {
			return strings.Replace(s, "topology:\n  entry: 1\n  logic: 2\n  das: 1", "topology: big", 1)
		}, `t.yaml:4: bad value for topology: want a mapping`},
		{"unknown fault kind", func(s string) string { return strings.Replace(s, "what: crash", "what: explode", 1) }, `t.yaml:15: bad value "explode" for faults[0].what: unknown fault kind`},
		{"bad expect", func(s string) string { return s + "expect: maybe\n" }, `t.yaml:17: bad value "maybe" for expect`},
		{"target outside topology", func(s string) string { return strings.Replace(s, "target: logic-1", "target: logic-2", 1) }, `t.yaml:16: crash: target "logic-2": the topology has 2 logic slots`},
		{"unknown role", func(s string) string { return strings.Replace(s, "target: logic-1", "target: db-1", 1) }, `t.yaml:16: crash: target "db-1": unknown role "db"`},
		{"fault past the end", func(s string) string { return strings.Replace(s, "at: 10s", "at: 58s", 1) }, `t.yaml:13: fault crash at 58s for 5s does not fit in duration 1m`},
		{"users too few", func(s string) string { return strings.Replace(s, "users: 10", "users: 1", 1) }, `t.yaml:9: workload.users = 1, want 2..`},
		{"no logic", func(s string) string { return strings.Replace(s, "logic: 2", "logic: 0", 1) }, `t.yaml:6: topology.logic = 0, want 1..`},
		{"unknown check", func(s string) string { return s + "checks: [structural, linearisable]\n" }, `t.yaml:17: unknown check "linearisable"`},
		{"unknown counter", func(s string) string { return s + "exercised:\n  - failovers\n" }, `t.yaml:18: unknown counter "failovers"`},
		{"unknown bug", func(s string) string { return s + "bugs: [no-such-bug]\n" }, `t.yaml:17: unknown bug switch "no-such-bug"`},
		{"alias", func(s string) string { return strings.Replace(s, "users: 10", "users: &u 10", 1) }, `t.yaml:9: anchors and aliases are not allowed`},
		{"syntax", func(s string) string { return s + "  - : : :\n\tbad\n" }, `t.yaml:`},
		{"missing duration", func(s string) string { return strings.Replace(s, "duration: 1m\n", "", 1) }, `t.yaml:1: duration must be > 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.edit(valid)))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one starting %q", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "t.yaml" {
				t.Fatalf("got %T %v, want a *Error for t.yaml", err, err)
			}
		})
	}
}

func TestFaultValidation(t *testing.T) {
	base := func(fault string) string { return valid[:strings.Index(valid, "faults:")] + "faults:\n" + fault }
	tests := []struct {
		name  string
		fault string
		want  string // "" means valid
	}{
		{"link both ways", "  - {at: 1s, for: 2s, what: partition, target: entry-0<->logic-1, params: {mode: symmetric}}\n", ""},
		{"one-way names a direction", "  - {at: 1s, for: 2s, what: partition, target: entry-0->logic-1, params: {mode: one-way}}\n", ""},
		{"one-way with both ways", "  - {at: 1s, for: 2s, what: partition, target: entry-0<->logic-1, params: {mode: one-way}}\n", `names a direction`},
		{"isolate one node", "  - {at: 1s, for: 2s, what: partition, target: das-0, params: {mode: isolate}}\n", ""},
		{"link wildcard", "  - {at: 1s, for: 2s, what: drop, target: entry-*<->logic-*, params: {probability: 0.5}}\n", ""},
		{"link not a link", "  - {at: 1s, for: 2s, what: delay, target: logic-1, params: {latency: 10ms}}\n", `want a link`},
		{"bad mode", "  - {at: 1s, for: 2s, what: partition, target: entry-0<->logic-1, params: {mode: sideways}}\n", `t.yaml:13: bad value "sideways" for param mode`},
		{"unknown param", "  - {at: 1s, what: drop, target: entry-0<->logic-1, params: {probabilty: 0.5}}\n", `t.yaml:13: unknown param "probabilty" for drop`},
		{"probability out of range", "  - {at: 1s, what: drop, target: entry-0<->logic-1, params: {probability: 1.5}}\n", `want a number in 0..1`},
		{"missing required param", "  - {at: 1s, what: delay, target: entry-0<->logic-1}\n", `delay needs param latency`},
		{"db timeout", "  - {at: 1s, for: 5s, what: db-timeout, target: db, params: {business: message, commit_probability: 0.5}}\n", ""},
		{"db bad business", "  - {at: 1s, what: db-timeout, target: db, params: {business: chat}}\n", `want one of message, contact, unread, system`},
		{"db wrong target", "  - {at: 1s, what: db-outage, target: das-0}\n", `want "db"`},
		{"negative skew", "  - {at: 1s, what: clock-skew, target: logic-0, params: {skew: -3s}}\n", ""},
		{"skew missing", "  - {at: 1s, what: clock-skew, target: logic-0}\n", `needs param skew`},
		{"scale out past topology", "  - {at: 1s, what: scale-out, target: logic-2}\n", ""},
		{"crash of a scaled-out slot", "  - {at: 1s, what: scale-out, target: logic-2}\n  - {at: 5s, what: crash, target: logic-2}\n", ""},
		{"too far past topology", "  - {at: 1s, what: scale-out, target: logic-3}\n", `the topology has 2 logic slots (plus 1 scaled out)`},
		{"role without slots", "  - {at: 1s, what: crash, target: extlogic-*}\n", `the topology has no extlogic`},
		{"every kind known", "  - {at: 1s, what: mq-duplicate, target: mq, params: {probability: 0.1}}\n", ""},
		{"db failover async", "  - {at: 1s, for: 5s, what: db-failover, target: db, params: {replication: async, lag: 500ms}}\n", ""},
		{"db failover bad mode", "  - {at: 1s, what: db-failover, target: db, params: {replication: sync}}\n", `bad value "sync" for param replication: want one of semisync, async`},
		{"db crash wrong target", "  - {at: 1s, what: db-crash, target: primary}\n", `want "db"`},
		{"nats node", "  - {at: 1s, for: 5s, what: nats-kill, target: nats-2}\n", ""},
		{"nats leader", "  - {at: 1s, for: 5s, what: nats-partition, target: nats-leader}\n", ""},
		{"nats follower", "  - {at: 1s, for: 5s, what: nats-kill, target: nats-follower}\n", ""},
		{"nats node out of the cluster", "  - {at: 1s, what: nats-kill, target: nats-3}\n", `want nats-0..nats-2, nats-leader or nats-follower`},
		{"redis kill", "  - {at: 1s, for: 5s, what: redis-kill, target: presence}\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(base(tt.fault)))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLogicSplit(t *testing.T) {
	tests := []struct {
		split string
		want  string
	}{
		{"[login, msg+contact]", ""},
		{"[all, all]", ""},
		{"[login, msg]", "no logic slot serves contact"},
		{"[login]", "logic_split has 1 entries"},
		{"[login, chat]", `bad value "chat" in logic_split`},
	}
	for _, tt := range tests {
		t.Run(tt.split, func(t *testing.T) {
			src := strings.Replace(valid, "  das: 1\n", "  das: 1\n  logic_split: "+tt.split+"\n", 1)
			_, err := Parse("t.yaml", []byte(src))
			if (tt.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range wantScenarios {
		t.Run(name, func(t *testing.T) {
			s, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			data, err := Marshal(s)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			back, err := Parse(name+".yaml", data)
			if err != nil {
				t.Fatalf("Parse(Marshal): %v\n%s", err, data)
			}
			if !reflect.DeepEqual(back, s) {
				t.Fatalf("got %+v after the round trip, want %+v\n%s", back, s, data)
			}
		})
	}
	// A scenario built in code, as the shrinker does: every field set.
	s := &Scenario{
		Name: "shrunk", Description: "reduced", Seed: 99, Duration: Duration(90 * time.Second), Quiet: Duration(10 * time.Second),
		Topology: Topology{Entry: 1, HTTPEntry: 1, Logic: 2, ExtLogic: 1, Das: 1, LogicSplit: []string{"login", "msg+contact"}},
		Workload: Workload{
			Users: 5, Conversations: 3, Rate: 1.5, LongPollShare: 0.25,
			Churn:      &Churn{Rate: 0.5, Offline: Duration(time.Second)},
			Spikes:     []Spike{{At: Duration(time.Second), For: Duration(2 * time.Second), Multiplier: 3}},
			LoginStorm: &LoginStorm{At: Duration(5 * time.Second), Clients: 4},
			Notices:    &Notices{Rate: 0.1},
			Broadcasts: &Broadcasts{At: []Duration{Duration(3 * time.Second)}},
		},
		Faults: []Fault{{At: Duration(time.Second), For: Duration(1500 * time.Millisecond), What: DBTimeout, Target: "db",
			Params: map[string]string{"business": "message", "commit_probability": "0.5"}}},
		Swarm:         &Swarm{Faults: 3, Kinds: []FaultKind{Crash, Drop}, ForMax: Duration(time.Minute)},
		Bugs:          []string{"no-dedup"},
		Checks:        []string{"structural"},
		Exercised:     []string{"das_retries"},
		Expect:        Fail,
		LivenessBound: Duration(5 * time.Second),
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	data, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("shrunk.yaml", data)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(back, s) {
		t.Fatalf("got %+v, want %+v\n%s", back, s, data)
	}
}

func TestDurationString(t *testing.T) {
	tests := map[time.Duration]string{
		10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s", 0: "0s", time.Hour + time.Minute: "1h1m",
	}
	for d, want := range tests {
		if got := Duration(d).String(); got != want {
			t.Errorf("got %q for %v, want %q", got, d, want)
		}
	}
}

// The fuzz seeds are the embedded scenarios plus a few broken files.
func FuzzParse(f *testing.F) {
	for _, name := range wantScenarios {
		data, err := library.ReadFile(name + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(valid))
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v, want a *Error", err, err)
			}
			return
		}
		// Whatever parses must survive the round trip.
		out, err := Marshal(s)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse("fuzz.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal): %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip changed the scenario:\n%s", out)
		}
	})
}

func TestFaultReplication(t *testing.T) {
	f := Fault{What: DBFailover}
	if f.Replication() != ReplicationSemiSync || f.Lag() != LagDefault {
		t.Fatalf("got %s %v, want the defaults semisync %v", f.Replication(), f.Lag(), LagDefault)
	}
	f.Params = map[string]string{"replication": "async", "lag": "1s"}
	if f.Replication() != ReplicationAsync || f.Lag() != time.Second {
		t.Fatalf("got %s %v, want async 1s", f.Replication(), f.Lag())
	}
	for _, k := range DependencyKinds {
		if _, ok := faultSpecs[k]; !ok {
			t.Errorf("dependency kind %s is not in the vocabulary", k)
		}
	}
}

func TestExpectViolationsParse(t *testing.T) {
	tests := []struct {
		name, add, want string
	}{
		{"valid", "expect: fail\nexpect_violations:\n  promises: [2, 5]\n  consequences: [1, 4, 7]\n", ""},
		{"needs expect fail", "expect_violations:\n  promises: [2]\n", "expect_violations needs expect: fail"},
		{"empty", "expect: fail\nexpect_violations:\n  promises: []\n", "expect_violations.promises is empty"},
		{"out of range", "expect: fail\nexpect_violations:\n  promises: [10]\n", "promise 10, want 1..9"},
		{"twice", "expect: fail\nexpect_violations:\n  promises: [2]\n  consequences: [2]\n", "promise 2 listed twice"},
		{"unknown key", "expect: fail\nexpect_violations:\n  promise: [2]\n", `unknown key "promise"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(valid+tt.add))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.want == "" && (s.ExpectViolations == nil || !reflect.DeepEqual(s.ExpectViolations.Promises, []int{2, 5})):
				t.Fatalf("got %+v, want promises [2 5]", s.ExpectViolations)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	loss := Failure{Promise: 2, Reason: "promise 2: acknowledged seq 7 missing"}
	gone := Failure{Promise: 5, Reason: "promise 5: seq 7 never delivered"}
	order := Failure{Promise: 1, Reason: "promise 1: seq 7 held two messages"}
	unread := Failure{Promise: 8, Reason: "promise 8: unread did not converge"}
	counter := Failure{Reason: "required exercised counter db_failovers stayed zero"}
	expectLoss := &Scenario{Expect: Fail, ExpectViolations: &Expectation{Promises: []int{2, 5}, Consequences: []int{1}}}
	tests := []struct {
		name     string
		s        *Scenario
		failures []Failure
		pass     bool
		expected bool
	}{
		{"pass, nothing failed", &Scenario{Expect: Pass}, nil, true, false},
		{"pass, something failed", &Scenario{Expect: Pass}, []Failure{loss}, false, false},
		{"fail, anything", &Scenario{Expect: Fail}, []Failure{unread}, true, true},
		{"fail, but passed", &Scenario{Expect: Fail}, nil, false, false},
		{"the expected loss", expectLoss, []Failure{loss, gone}, true, true},
		{"the expected loss and a consequence", expectLoss, []Failure{loss, order, gone}, true, true},
		{"only part of the expected loss", expectLoss, []Failure{loss}, false, false},
		{"the loss and something else", expectLoss, []Failure{loss, gone, unread}, false, false},
		{"the loss, but the fault never fired", expectLoss, []Failure{loss, gone, counter}, false, false},
		{"the expected failure did not happen", expectLoss, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.s.Judge(tt.failures)
			if j.Pass != tt.pass || j.AsExpected != tt.expected {
				t.Fatalf("got pass %v as expected %v (%s), want %v %v", j.Pass, j.AsExpected, j.Summary(), tt.pass, tt.expected)
			}
			if !j.Pass && len(j.Reasons) == 0 {
				t.Fatalf("a failed judgement with no reason")
			}
		})
	}
}
