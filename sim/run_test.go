package sim

import (
	"testing"
	"time"
)

func smallConfig(seed uint64) Config {
	cfg := DefaultConfig()
	cfg.Seed = seed
	cfg.Duration = 3 * time.Second
	cfg.Quiet = 30 * time.Second
	cfg.Settle = 10 * time.Second
	cfg.Workload.Users = 10
	cfg.Workload.Rate = 20
	return cfg
}

func TestRunHealthy(t *testing.T) {
	res, err := Run(smallConfig(1))
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Err != nil {
		t.Fatalf("run stopped: %v", res.Err)
	}
	t.Logf("events=%d sim=%.1fs wall=%.3fs ops=%d store=%d hash=%016x", res.Counters.Events,
		res.Counters.SimSeconds, res.Counters.WallSeconds, len(res.History), len(res.Store), res.TraceHash)
	t.Logf("delivery: %+v", res.Delivery)
	for _, k := range SortedNames(res.Sim) {
		if res.Sim[k] > 0 {
			t.Logf("sim.%s=%d", k, res.Sim[k])
		}
	}
	for _, k := range SortedNames(res.Stats) {
		if res.Stats[k] > 0 {
			t.Logf("%s=%d", k, res.Stats[k])
		}
	}
	if len(res.Store) == 0 {
		t.Fatalf("got no stored messages, want some")
	}
	if !res.Delivery.OK() {
		t.Errorf("delivery check: %+v", res.Delivery)
	}
}
