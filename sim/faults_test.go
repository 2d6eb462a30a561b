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
		{"logic crash failover", []Fault{{At: time.Second, For: 3 * time.Second, Kind: FaultCrash, Target: "logic-0"}}, "failover_resends"},
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
