package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/wire"
)

func tokenCmd() *cobra.Command {
	var secret string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token USER",
		Short: "print a login token for USER, signed with the cluster's secret",
		Long: `Print a login token (HMAC-SHA256 over user id and expiry) that entry and
httpentry accept when they run with the same --secret. The secret is also
read from ZZIM_SECRET. Apps send it in LOGIN (TCP) or as
"Authorization: Bearer TOKEN" (HTTP).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cluster.Layer(cmd.Flags(), "", os.Getenv); err != nil {
				return usageErr("%v", err)
			}
			if err := wire.ValidUserID(args[0]); err != nil {
				return usageErr("user: %v", err)
			}
			if ttl <= 0 {
				return usageErr("--ttl must be positive")
			}
			fmt.Fprintln(cmd.OutOrStdout(), wire.SignToken([]byte(secret), args[0], time.Now().Add(ttl)))
			return nil
		},
	}
	cmd.Flags().StringVar(&secret, "secret", devSecret, "HMAC secret of the cluster (as given to serve/up)")
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	return cmd
}
