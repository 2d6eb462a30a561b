package sim

import (
	"syscall"
	"testing"
	"time"

	"github.com/zzim/zzim/scenarios"
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
// per wall second for the standard topology. On a shared machine the wall
// clock also counts time spent waiting for a core, so it reports the same
// rates per CPU second of this process as well (events/cpu-s,
// sim-s/cpu-s): what one dedicated core would give.
func BenchmarkStandard(b *testing.B) {
	benchRuns(b, func(seed uint64) (*Result, error) { return Run(benchConfig(seed, 60*time.Second)) })
}

// BenchmarkScenarioBenchStandard runs the shipped bench-standard scenario
// (2 entry, 1 httpentry, 3 logic, 2 extlogic, 2 das; 1,000 users; 200
// messages/s; 10 simulated minutes plus its quiet and settle phases) as
// `zzim sim run bench-standard` does, without the checkers. One op is one
// whole run (about 10 s here): use -benchtime 1x or 3x.
func BenchmarkScenarioBenchStandard(b *testing.B) {
	sc, err := scenarios.Load("bench-standard")
	if err != nil {
		b.Fatal(err)
	}
	benchRuns(b, func(seed uint64) (*Result, error) {
		plan, err := FromScenario(sc, PlanOptions{Seed: seed})
		if err != nil {
			return nil, err
		}
		return plan.Run()
	})
}

// benchRuns runs seeds 1..b.N with the simulator's GC setting and reports
// events and simulated seconds per wall second and per CPU second.
func benchRuns(b *testing.B, run func(seed uint64) (*Result, error)) {
	defer TuneGC()()
	var events uint64
	var simSec, wallSec float64
	cpu0 := cpuSeconds(b)
	for i := 0; i < b.N; i++ {
		res, err := run(uint64(i + 1))
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
	cpuSec := cpuSeconds(b) - cpu0
	b.ReportMetric(float64(events)/wallSec, "events/s")
	b.ReportMetric(simSec/wallSec, "sim-s/wall-s")
	b.ReportMetric(float64(events)/float64(b.N), "events/run")
	b.ReportMetric(float64(events)/cpuSec, "events/cpu-s")
	b.ReportMetric(simSec/cpuSec, "sim-s/cpu-s")
}

// cpuSeconds is the user and system CPU time this process has used. It
// includes the result building and GC that Counters.WallSeconds leaves out,
// so the per-CPU-second rates are, if anything, low.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
