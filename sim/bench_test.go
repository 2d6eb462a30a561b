package sim

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/node"
)

// benchConfig is the standard topology: 2 entry, 1 httpentry, 3 logic,
// 2 extlogic, 2 das; 1,000 users; 200 messages/s.
func benchConfig(seed uint64, d time.Duration) Config {
	cfg := DefaultConfig()
	cfg.Seed = seed
	cfg.Topology = map[node.Role]int{node.RoleEntry: 2, node.RoleHTTPEntry: 1, node.RoleLogic: 3,
		node.RoleExtLogic: 2, node.RoleDas: 2}
	cfg.Duration = d
	cfg.Quiet = 30 * time.Second
	cfg.Settle = 10 * time.Second
	cfg.Workload.Users = 1000
	cfg.Workload.ConvsPerUser = 1
	cfg.Workload.Rate = 200
	return cfg
}

// BenchmarkStandard reports events per wall second and simulated seconds
// per wall second for the standard topology.
func BenchmarkStandard(b *testing.B) {
	var events uint64
	var simSec, wallSec float64
	for i := 0; i < b.N; i++ {
		res, err := Run(benchConfig(uint64(i+1), 60*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		if res.Err != nil {
			b.Fatalf("run failed: %v", res.Err)
		}
		events += res.Counters.Events
		simSec += res.Counters.SimSeconds
		wallSec += res.Counters.WallSeconds
	}
	b.ReportMetric(float64(events)/wallSec, "events/s")
	b.ReportMetric(simSec/wallSec, "sim-s/wall-s")
	b.ReportMetric(float64(events)/float64(b.N), "events/run")
}
