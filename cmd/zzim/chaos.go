package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/chaos"
	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/bugs"
)

func init() { subcommands = append(subcommands, chaosCmd) }

func chaosCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "run scenarios on real containers (Docker) with real faults, judged by the same checkers",
	}
	cmd.AddCommand(chaosRunCmd())
	return cmd
}

const chaosRunLong = `run starts the scenario's topology on real containers (testcontainers-go,
local images from docker/build.sh, nothing pulled) on one private network:
MariaDB, Redis, NATS (JetStream, sync always), toxiproxy, and every zzim
service in its own container. Internal links and dependency connections go
through toxiproxy, one proxy per path, so a fault can take one path.
Reference clients on this host record a history on one monotonic clock;
after the run the store's contents (MariaDB) are the ground truth and the
checkers judge. Every container and network is removed at the end, also on
failure and on Ctrl-C.

Time: scenario times are multiplied by --scale (a 2m scenario's traffic
runs 30s at 0.25), fault windows last at least 10s (the registry TTL plus
two heartbeats: failure detection does not scale); rates are not scaled.
Faults only the simulator can do (clock skew, presence loss, queue
redelivery, ...) are skipped; a run whose faults were all skipped says
verdict=skipped and starts nothing. The output ends with one line:

  verdict=pass|fail|skipped seed=N trace=- events=E sim_seconds=S wall_seconds=W

where events are history operations, sim_seconds the real seconds under
test (traffic and settle) and wall_seconds the whole run.

Exit status: 0 pass, 1 fail, 2 usage or setup error (skipped exits 0).`

func chaosRunCmd() *cobra.Command {
	var (
		bug   string
		out   string
		seed  uint64
		scale float64
		o     = chaos.Options{}
	)
	cmd := &cobra.Command{
		Use:   "run SCENARIO|FILE",
		Short: "run one scenario on real containers and check it",
		Long:  chaosRunLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Before the first testcontainers call: no Ryuk, Docker on localhost.
			testdeps.Setup()
			sc, err := chaos.LoadScenario(args[0])
			if err != nil {
				return usageErr("%w", err)
			}
			if bug == "" {
				bug = os.Getenv("ZZIM_BUG")
			}
			set, err := bugs.Parse(bug)
			if err != nil {
				return usageErr("--bug: %w", err)
			}
			o.Scenario, o.Bugs, o.Seed, o.Scale, o.OutDir = sc, set, seed, scale, out
			o.Progress = cmd.ErrOrStderr()
			rep, err := chaos.Run(cmd.Context(), o)
			if err != nil {
				return usageErr("%w", err)
			}
			if err := rep.WriteText(cmd.OutOrStdout()); err != nil {
				return usageErr("%w", err)
			}
			if rep.Word == "fail" {
				return &exitError{code: 1, err: fmt.Errorf("%s seed %d: %s", rep.Scenario, rep.Seed, strings.Join(rep.Reasons, "; "))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&bug, "bug", "", "bug switches, comma-separated (also ZZIM_BUG): "+strings.Join(bugs.Names(), ", "))
	f.StringVar(&out, "out", "", "directory for history.jsonl, store.jsonl, faults.jsonl, report.txt, report.json, porcupine's HTML and logs/")
	f.Uint64Var(&seed, "seed", 0, "workload seed (default: the scenario's)")
	f.Float64Var(&scale, "scale", chaos.ScaleDefault, "scenario time to real time")
	f.DurationVar(&o.CheckTimeout, "timeout", check.DefaultTimeout, "bound on porcupine's search per conversation")
	return cmd
}
