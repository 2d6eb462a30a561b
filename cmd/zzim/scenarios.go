package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/scenarios"
)

func init() { subcommands = append(subcommands, scenariosCmd) }

// scenariosCmd: zzim scenarios lists the embedded scenario library.
func scenariosCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "list the embedded scenarios (run one with zzim sim run NAME)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := scenarios.List()
			if err != nil {
				return usageErr("%w", err)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%s\n", s.Name, s.Description)
			}
			return w.Flush()
		},
	}
}

// openScenario reads SCENARIO|FILE: an existing file path, else an
// embedded scenario's name.
func openScenario(arg string) (*scenarios.Scenario, error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		data, err := os.ReadFile(arg)
		if err != nil {
			return nil, err
		}
		return scenarios.Parse(arg, data)
	}
	if strings.ContainsAny(arg, `/\`) {
		return nil, fmt.Errorf("scenario file %s: not found", arg)
	}
	return scenarios.Load(arg)
}
