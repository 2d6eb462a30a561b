package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/sim"
	"github.com/zzim/zzim/system/bugs"
)

func init() { simSubcommands = append(simSubcommands, simShrinkCmd) }

// simShrinkCmd: zzim sim shrink SCENARIO --seed N [--bug NAME] [--checks
// LIST] --out FILE. Exit 0 when the file is written and reproduces, 1 when
// the run does not fail to begin with, 2 on usage or I/O errors.
func simShrinkCmd() *cobra.Command {
	var (
		seed          uint64
		bugList, list string
		out           string
		quiet         bool
	)
	cmd := &cobra.Command{
		Use:   "shrink SCENARIO --seed N [--bug NAME] --out FILE",
		Short: "reduce a failing run to a 1-minimal scenario that breaks the same promise",
		Long: `shrink runs SCENARIO (an embedded name or a YAML file) with --seed and the
bug switches, takes the first promise its checks find broken, and reduces the
run by delta debugging over its fault schedule and workload (faults, users and
their clients, conversations, spikes, login storm, notices, broadcasts, churn)
and by cutting its duration, always with the same seed. The result is
1-minimal: removing any one remaining fault or client makes the run pass. It
is written to --out as a scenario carrying the seed, bug switches and checks,
so that 'zzim sim run FILE --seed N' reproduces it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErr("--out is required")
			}
			set, err := bugs.Parse(bugList)
			if err != nil {
				return usageErr("--bug: %w", err)
			}
			checks, err := sim.ParseChecks(list)
			if err != nil {
				return usageErr("--checks: %w", err)
			}
			sc, err := openScenario(args[0])
			if err != nil {
				return usageErr("%w", err)
			}
			w := cmd.OutOrStdout()
			var progress func(string)
			if !quiet {
				progress = func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), "shrink:", s) }
			}
			return runShrink(w, sc, sim.PlanOptions{Seed: seed, Bugs: set, Checks: checks}, out, progress)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&seed, "seed", 0, "seed of the failing run (0: the scenario's)")
	f.StringVar(&bugList, "bug", "", "bug switches to turn on, comma-separated ("+strings.Join(bugs.Names(), ", ")+")")
	f.StringVar(&list, "checks", "", "checks, comma-separated (structural, linearizability, unread, liveness; default: the scenario's)")
	f.StringVar(&out, "out", "", "file to write the shrunk scenario to")
	f.BoolVar(&quiet, "quiet", false, "do not print progress to stderr")
	return cmd
}

func runShrink(w io.Writer, sc *scenarios.Scenario, opts sim.PlanOptions, out string, progress func(string)) error {
	res, err := sim.ShrinkScenario(sc, opts, progress)
	if errors.Is(err, sim.ErrNotFailing) {
		return &exitError{code: 1, err: fmt.Errorf("scenario %s seed %d: the run breaks no promise, nothing to shrink", sc.Name, seedOf(sc, opts))}
	}
	if res == nil {
		return usageErr("shrink: %w", err)
	}
	if err != nil {
		// The budget ran out: what is written still fails, maybe not 1-minimal.
		fmt.Fprintf(w, "warning: %v: the result fails but may not be 1-minimal\n", err)
	}
	data, err := scenarios.Marshal(res.Scenario)
	if err != nil {
		return usageErr("%w", err)
	}
	if err := os.WriteFile(out, data, 0o644); err != nil {
		return usageErr("write: %w", err)
	}
	fmt.Fprintf(w, "promise %d (%s) broken by %s seed %d\n", res.Promise, check.PromiseName(res.Promise), sc.Name,
		res.Scenario.Seed)
	fmt.Fprintf(w, "before: %s\n", res.Before)
	fmt.Fprintf(w, "after:  %s\n", res.After)
	fmt.Fprintf(w, "runs: %d in %.1fs\n", res.Runs, res.Wall.Seconds())
	if res.Verdict != nil {
		fmt.Fprintln(w, res.Verdict.Line())
		for i, v := range res.Verdict.Violations {
			if i == 3 {
				fmt.Fprintf(w, "(%d more)\n", len(res.Verdict.Violations)-i)
				break
			}
			fmt.Fprintln(w, v.String())
		}
	}
	fmt.Fprintf(w, "wrote %s: zzim sim run %s --seed %d\n", out, out, res.Scenario.Seed)
	return nil
}

func seedOf(sc *scenarios.Scenario, opts sim.PlanOptions) uint64 {
	if opts.Seed != 0 {
		return opts.Seed
	}
	return sc.Seed
}
