package sim

import (
	"testing"
	"time"
)

func logResult(t *testing.T, res *Result) {
	t.Helper()
	t.Logf("events=%d sim=%.1fs wall=%.3fs ops=%d store=%d hash=%016x err=%v", res.Counters.Events,
		res.Counters.SimSeconds, res.Counters.WallSeconds, len(res.History), len(res.Store), res.TraceHash, res.Err)
	t.Logf("delivery: %+v", res.Delivery)
	t.Logf("exercised: %+v", res.Exercised)
	for _, k := range SortedNames(res.Sim) {
		if res.Sim[k] > 0 {
			t.Logf("sim.%s=%d", k, res.Sim[k])
		}
	}
}

// TestFaultsExercised: each fault makes its recovery path run, and the
// system still delivers every acknowledged message exactly once.
func TestFaultsExercised(t *testing.T) {
	base := func() Config {
		cfg := smallConfig(3)
		cfg.Duration = 6 * time.Second
		cfg.Workload.Users = 20
		cfg.Workload.Rate = 40
		return cfg
	}
	tests := []struct {
		name    string
		faults  []Fault
		counter string
	}{
		{"logic crash", []Fault{{At: time.Second, For: 3 * time.Second, Kind: FaultCrash, Target: "logic-0"}}, "users_remapped"},
		// A crash is seen at once (LinkDown) so little is pending; a partition
		// makes requests time out in flight, and entry resends them.
		{"logic partition failover", []Fault{{At: time.Second, For: 3 * time.Second, Kind: FaultPartition, Target: "entry|logic-0"}}, "failover_resends"},
		{"logic crash failback", []Fault{{At: time.Second, For: 2 * time.Second, Kind: FaultCrash, Target: "logic-0"}}, "fail_backs"},
		{"db unknown", []Fault{{At: time.Second, For: 3 * time.Second, Kind: FaultDBUnknown, Prob: 0.3}}, "unknown_resolved_by_dedup"},
		{"lost acks", []Fault{{At: time.Second, For: 3 * time.Second, Kind: FaultQueueRedeliver, Prob: 0.5}}, "redeliveries_handled"},
		{"stale presence", []Fault{{At: 2 * time.Second, Kind: FaultPresenceStale, Prob: 1}}, "pushes_to_offline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base()
			cfg.Faults = tt.faults
			res, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Err != nil {
				t.Fatalf("run failed: %v", res.Err)
			}
			if got := res.Exercised.Map()[tt.counter]; got == 0 {
				logResult(t, res)
				t.Errorf("%s = 0, want > 0", tt.counter)
			}
			if !res.Delivery.OK() {
				logResult(t, res)
				t.Errorf("delivery check failed: %v", res.Delivery.Examples)
			}
		})
	}
}

// TestEveryFaultKind: each kind runs, the system survives it, and after
// the quiet period every acknowledged message was delivered exactly once.
func TestEveryFaultKind(t *testing.T) {
	s, l := time.Second, 2*time.Second
	tests := []Fault{
		{At: s, For: l, Kind: FaultCrash, Target: "das-1"},
		{At: s, For: l, Kind: FaultCrash, Target: "entry-0"},
		{At: s, For: l, Kind: FaultCrash, Target: "httpentry-0"},
		{At: s, For: l, Kind: FaultCrash, Target: "extlogic-0"},
		{At: s, For: l, Kind: FaultPause, Target: "logic-2"},
		{At: s, Kind: FaultScaleOut, Target: "logic"},
		{At: s, Kind: FaultScaleIn, Target: "logic-2"},
		{At: s, For: l, Kind: FaultSkew, Target: "logic-0", Delay: 30 * time.Second},
		{At: s, For: l, Kind: FaultPartition, Target: "entry|logic-0,logic-1"},
		{At: s, For: l, Kind: FaultPartitionOneWay, Target: "logic|das-0"},
		{At: s, For: l, Kind: FaultIsolate, Target: "das-0"},
		{At: s, For: l, Kind: FaultCutClients, Target: "entry-1"},
		{At: s, For: l, Kind: FaultDelay, Target: "das", Delay: 200 * time.Millisecond},
		{At: s, For: l, Kind: FaultDrop, Target: "logic", Prob: 0.2},
		{At: s, For: l, Kind: FaultDuplicate, Prob: 0.3},
		{At: s, For: l, Kind: FaultReorder, Prob: 0.5, Delay: 20 * time.Millisecond},
		{At: s, For: l, Kind: FaultClog, Target: "logic-1"},
		{At: s, For: l, Kind: FaultDBLatency, Delay: 2 * time.Second, Business: "message"},
		{At: s, For: l, Kind: FaultDBUnknown, Prob: 0.5},
		{At: s, For: l, Kind: FaultDBDeadlock, Prob: 0.5},
		{At: s, For: l, Kind: FaultDBOutage},
		{At: s, Kind: FaultPresenceLost, Prob: 1},
		{At: s, For: l, Kind: FaultPresenceOutage},
		{At: s, For: l, Kind: FaultQueueOutage},
		{At: s, For: l, Kind: FaultQueueDuplicate, Prob: 0.5},
		{At: s, For: l, Kind: FaultRegistryDelay, Delay: time.Second},
	}
	for _, f := range tests {
		t.Run(string(f.Kind)+" "+f.Target, func(t *testing.T) {
			cfg := smallConfig(11)
			cfg.Duration = 5 * time.Second
			cfg.Workload.Users = 16
			cfg.Workload.Rate = 30
			cfg.Workload.NoticeRate = 1
			cfg.Faults = []Fault{f}
			res, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Err != nil {
				t.Fatalf("run failed: %v", res.Err)
			}
			if res.Sim["faults_started"] != 1 {
				t.Errorf("faults started %d, want 1", res.Sim["faults_started"])
			}
			if !res.Delivery.OK() {
				logResult(t, res)
				t.Errorf("delivery check failed: %v", res.Delivery.Examples)
			}
		})
	}
}
