// Command zzim is the one binary of zzim: services, the simulator, the chaos
// harness, the load generator and the checkers. main is glue: each
// subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

// exitError carries a process exit code out of a subcommand: 1 for a
// violation or failed check, 2 for usage or setup errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func root() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "zzim",
		Short:         "zzim: a marketplace instant-messaging backend, its simulator and its checkers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.AddCommand(versionCmd())
	for _, add := range subcommands {
		cmd.AddCommand(add())
	}
	return cmd
}

// subcommands register themselves from their own files' init functions.
var subcommands []func() *cobra.Command

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "zzim", version)
		},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "zzim:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(2)
}
