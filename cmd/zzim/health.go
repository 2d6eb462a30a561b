package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, healthCmd) }

// healthBodyMax bounds how much of a failing answer is echoed: enough for
// /readyz's reason, never a whole page.
const healthBodyMax = 512

// healthCmd is the container health check: the images hold no curl or wget,
// so the zzim binary probes its own /healthz or /readyz.
func healthCmd() *cobra.Command {
	timeout := 2 * time.Second
	cmd := &cobra.Command{
		Use:   "health URL",
		Short: "GET URL and exit 0 on 200 (a container health check: zzim health http://127.0.0.1:9100/readyz)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return probe(ctx, args[0])
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "give up after this long")
	return cmd
}

// probe is one GET: nil on 200, exit code 1 on any other answer or none.
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return usageErr("health %q: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("health %s: %w", url, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyMax))
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, err: fmt.Errorf("health %s: %s: %s", url, resp.Status, body)}
	}
	return nil
}
