package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/sim"
)

func init() { simSubcommands = append(simSubcommands, simMergeCmd) }

// simMergeCmd: zzim sim merge FILE... [--junit FILE].
func simMergeCmd() *cobra.Command {
	var junit string
	cmd := &cobra.Command{
		Use:   "merge RESULTS|DIR...",
		Short: "combine the --results files of a sweep's shards into one summary",
		Long: `merge reads the --results files that the shards of one sweep wrote
(zzim sim sweep ... --shard K/N --results FILE; a directory stands for
every *.jsonl file in it), prints every failing seed's
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
			names, err := resultsFileNames(args)
			if err != nil {
				return usageErr("%w", err)
			}
			var files []*sim.ResultsFile
			for _, name := range names {
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
			// Both problems are told: a failing seed must not hide a lost
			// shard, whose seeds nobody has judged.
			totals := sim.TotalsOf(m.Records)
			var problems []string
			if totals.Failed > 0 {
				problems = append(problems, fmt.Sprintf("%d of %d seeds failed", totals.Failed, totals.Seeds))
			}
			if len(m.Missing) > 0 {
				lost := ""
				if len(m.MissingShards) > 0 {
					lost = " (lost shards: " + strings.Join(m.MissingShards, " ") + ")"
				}
				problems = append(problems, fmt.Sprintf("%d seeds of %d-%d have no result%s", len(m.Missing), m.Header.First, m.Header.Last, lost))
			}
			if len(problems) > 0 {
				return &exitError{code: 1, err: errors.New(strings.Join(problems, "; "))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&junit, "junit", "", "write a merged JUnit XML report to this file (a missing seed is an error case)")
	return cmd
}

// resultsFileNames expands each directory argument to the *.jsonl files in
// it (sorted), so a step that collected every shard's files in one place
// needs no shell glob.
func resultsFileNames(args []string) ([]string, error) {
	var names []string
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			names = append(names, arg)
			continue
		}
		found, err := filepath.Glob(filepath.Join(arg, "*.jsonl"))
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: no *.jsonl results files in this directory", arg)
		}
		names = append(names, found...) // Glob sorts
	}
	return names, nil
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
