package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/check"
)

func init() { subcommands = append(subcommands, checkCmd) }

// checkCmd: zzim check HISTORY [--store DUMP] [--checks LIST] [--out DIR]
// [--timeout D] [--faults FILE] [--liveness D]. Exit 0 on pass, 1 on a
// violation or an undecided (unknown) verdict, 2 on usage or I/O errors.
func checkCmd() *cobra.Command {
	var (
		storePath, checks, out, faultsPath string
		timeout, liveness                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check HISTORY",
		Short: "check a recorded history against zzim's promises (structural pass + linearizability)",
		Long: `check reads a history (JSON lines, see check/history.go) and judges it:
a structural pass (promises 1-6, 8, 9) and porcupine's linearizability check
per conversation (promise 7). It prints the verdict line, then each violation.
Exit status: 0 pass, 1 violation or unknown (porcupine timed out), 2 usage or I/O error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := check.ParseChecks(checks)
			if err != nil {
				return usageErr("--checks: %w", err)
			}
			opts := check.Options{Checks: list, OutDir: out, Timeout: timeout, LivenessBound: liveness}
			h, err := readWith(args[0], check.ReadHistory)
			if err != nil {
				return usageErr("%w", err)
			}
			if storePath != "" {
				if opts.Dump, err = readWith(storePath, check.ReadStoreDump); err != nil {
					return usageErr("--store: %w", err)
				}
			}
			if faultsPath != "" {
				if opts.Faults, err = readWith(faultsPath, check.ReadFaultWindows); err != nil {
					return usageErr("--faults: %w", err)
				}
			}
			v, err := check.Check(h, opts)
			if err != nil {
				return usageErr("check: %w", err)
			}
			if err := v.Report(cmd.OutOrStdout()); err != nil {
				return usageErr("%w", err)
			}
			if !v.Pass {
				return &exitError{code: 1, err: fmt.Errorf("verdict %s", v.Word())}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&storePath, "store", "", "the store's final contents (JSON lines of store messages) to check against")
	f.StringVar(&checks, "checks", "structural,linearizability", "checks to run, comma-separated")
	f.StringVar(&out, "out", "", "directory for porcupine's HTML visualizations of violations")
	f.DurationVar(&timeout, "timeout", 0, "bound on porcupine's search per conversation; one not decided in time is reported unknown (default 10s, or 20µs per operation where that is more)")
	f.StringVar(&faultsPath, "faults", "", "fault windows (JSON lines of {start,end,what}) to annotate and to time liveness from")
	f.DurationVar(&liveness, "liveness", 0, "liveness bound after the last fault window (0: liveness not checked)")
	return cmd
}

// readWith opens path and parses it with read.
func readWith[T any](path string, read func(io.Reader) (T, error)) (T, error) {
	var zero T
	file, err := os.Open(path)
	if err != nil {
		return zero, err
	}
	defer file.Close()
	v, err := read(file)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
