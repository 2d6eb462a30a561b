package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/sim"
)

func init() { simSubcommands = append(simSubcommands, simMergeCmd) }

// simMergeCmd: zzim sim merge FILE... [--junit FILE].
func simMergeCmd() *cobra.Command {
	var junit string
	cmd := &cobra.Command{
		Use:   "merge RESULTS...",
		Short: "combine the --results files of a sweep's shards into one summary",
		Long: `merge reads the --results files that the shards of one sweep wrote
(zzim sim sweep ... --shard K/N --results FILE), prints every failing seed's
verdict line with its reasons and replay command, and ends with the line the
unsplit sweep would have printed:

  seeds=N failed=F first_failure=SEED

Every file says the sweep's whole range and its shard, so merge reports seeds
no file has (a lost or interrupted shard) and seeds in more than one file.

Exit status: 0 when every seed of the range passed, 1 when any failed or is
missing (or two results of one seed disagree), 2 when the files are
unreadable or not of one sweep.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var files []*sim.ResultsFile
			for _, name := range args {
				f, err := readResultsFile(name)
				if err != nil {
					return usageErr("%w", err)
				}
				files = append(files, f)
			}
			m, err := sim.Merge(files)
			if err != nil {
				return usageErr("%w", err)
			}
			if err := printMerged(cmd.OutOrStdout(), m); err != nil {
				return usageErr("%w", err)
			}
			if junit != "" {
				why := "no results file has it (lost or interrupted shard)"
				report := sim.JUnit(m.Header, m.Records, m.Missing, why)
				if err := writeFile(junit, func(w io.Writer) error { return sim.WriteJUnit(w, report) }); err != nil {
					return usageErr("--junit: %w", err)
				}
			}
			totals := sim.TotalsOf(m.Records)
			switch {
			case totals.Failed > 0:
				return &exitError{code: 1, err: fmt.Errorf("%d of %d seeds failed", totals.Failed, totals.Seeds)}
			case len(m.Missing) > 0:
				return &exitError{code: 1, err: fmt.Errorf("%d seeds of %d-%d have no result", len(m.Missing), m.Header.First, m.Header.Last)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&junit, "junit", "", "write a merged JUnit XML report to this file (a missing seed is an error case)")
	return cmd
}

func readResultsFile(name string) (*sim.ResultsFile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return sim.ReadResults(f, name)
}

// printMerged writes the merged summary; the totals line comes last.
func printMerged(w io.Writer, m *sim.MergedSweep) error {
	ew := &errWriter{w: w}
	h := m.Header
	ew.printf("sweep %s seeds %d-%d bugs=%s swarm=%v\n", h.Scenario, h.First, h.Last, orNone(h.Bugs), h.Swarm)
	for _, r := range m.Records {
		if !r.Failed() {
			continue
		}
		if r.Swarm != "" {
			ew.printf("seed=%d swarm: %s\n", r.Seed, r.Swarm)
		}
		ew.printf("%s: %s\n", r.Line, strings.Join(r.Reasons, "; "))
		ew.printf("  replay: %s\n", h.ReplayCommand(r.Seed))
	}
	for _, name := range m.Truncated {
		ew.printf("truncated: %s: its last line was cut short (the shard was stopped while writing); left out\n", name)
	}
	if len(m.Overlap) > 0 {
		ew.printf("overlap: %d seeds are in more than one file (counted once): %s\n", len(m.Overlap), sim.SeedRanges(m.Overlap))
	}
	for _, c := range m.Conflicts {
		ew.printf("conflict: %s\n", c)
	}
	if len(m.MissingShards) > 0 {
		ew.printf("missing shards: %s (no file from them)\n", strings.Join(m.MissingShards, " "))
	}
	if len(m.Missing) > 0 {
		ew.printf("missing: %d of %d seeds have no result: %s\n", len(m.Missing), h.Last-h.First+1, sim.SeedRanges(m.Missing))
	}
	ew.printf("%s\n", sim.TotalsOf(m.Records))
	return ew.err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
