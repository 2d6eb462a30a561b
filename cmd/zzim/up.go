package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/web"
)

type upFlags struct {
	clusterFlags
	host     string
	appPort  int
	httpPort int
	dataDir  string
	tcpLinks bool
	devLogin bool
}

const upLong = `Run a whole zzim cluster in one process on 127.0.0.1: every role of
--topology (default 2 entry, 1 httpentry, 3 logic, 2 extlogic, 2 das), an
embedded NATS server with JetStream (queue and registry), the in-memory
store and in-memory presence. --mysql, --redis and --nats switch to real
dependencies.

It prints the TCP addresses apps connect to, the HTTP address of the
long-poll API, the metrics address, and how to get a login token.
Options take flags, ZZIM_* environment variables or a --config YAML file,
as for 'zzim serve' (docs/configuration.md).`

func upCmd() *cobra.Command {
	f := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "run a whole cluster in one process on 127.0.0.1",
		Long:  upLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cluster.Layer(cmd.Flags(), f.config, os.Getenv); err != nil {
				return usageErr("%v", err)
			}
			return runUp(cmd.Context(), f, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.register(fs, "", cluster.Memory)
	fs.Lookup("nats").Usage = "NATS JetStream URL (default: an embedded server; \"memory\": queue and registry in this process, not durable)"
	fs.StringVar(&f.host, "host", "127.0.0.1", "address the app and HTTP listeners bind")
	fs.IntVar(&f.appPort, "app-port", appPortDefault, "entry slot i listens for apps on this port + i (0: free ports)")
	fs.IntVar(&f.httpPort, "http-port", httpPortDefault, "httpentry slot i listens on this port + i (0: free ports)")
	fs.StringVar(&f.metrics, "metrics", "127.0.0.1:9100", "address of /metrics, /healthz, /readyz (\"off\" disables)")
	fs.StringVar(&f.dataDir, "data-dir", "", "embedded NATS storage (default: a temporary directory, removed on exit)")
	fs.BoolVar(&f.tcpLinks, "tcp-links", false, "carry internal messages over loopback TCP (ports 17000+) instead of handing them over in memory")
	fs.BoolVar(&f.devLogin, "dev-login", true, "serve the web client's development login (POST /v1/dev/login: a token for any user id) on httpentry")
	return cmd
}

func runUp(ctx context.Context, f *upFlags, stdout, stderr io.Writer) error {
	log, err := f.logger(stderr)
	if err != nil {
		return err
	}
	cfg, closeNotifier, err := f.clusterConfig(log)
	if err != nil {
		return err
	}
	defer closeNotifier()
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{
		NATS: f.nats, NATSDir: f.dataDir, Redis: f.redis, MySQL: f.mysql, NeedStore: true, Bugs: cfg.Bugs,
		Name: "zzim-up", Logger: log,
	})
	if err != nil {
		return fmt.Errorf("dependencies: %w", err)
	}
	defer deps.Close()
	opts := cluster.LocalOptions{
		Host: f.host, AppPort: f.appPort, HTTPPort: f.httpPort, Deps: deps.Deps, DepTimeout: f.depTimeout, Logger: log,
	}
	if f.tcpLinks {
		opts.Internal = cluster.InternalPattern(cfg.Topology, "127.0.0.1:{port}")
	}
	// The web client (package web) is served on httpentry; its development
	// login only under --dev-login.
	opts.HTTPExtra = web.Routes(cfg.Secret, f.devLogin)
	l, err := cluster.StartLocal(cfg, opts)
	if err != nil {
		return err
	}
	stopOps, boundOps, err := serveOps(f.metrics, l, deps, log, f.opsExtra()...)
	if err != nil {
		l.Shutdown(context.Background(), 0)
		return err
	}
	defer stopOps()
	printUp(stdout, f, cfg, l, deps, boundOps)
	log.Info("cluster up", cfg.LogAttrs()...)
	<-ctx.Done()
	log.Info("shutting down", "drain", f.drain.String())
	l.Shutdown(context.Background(), f.drain)
	return nil
}

func printUp(w io.Writer, f *upFlags, cfg cluster.Config, l *cluster.Local, deps *cluster.Deps, metrics string) {
	natsNote := "embedded"
	if f.nats == cluster.Memory {
		natsNote = "queue and registry in this process"
	} else if f.nats != "" {
		natsNote = "external"
	}
	var https []string
	for _, h := range l.HTTPEntries() {
		https = append(https, "http://"+h)
	}
	token := "zzim token alice"
	if f.secret != devSecret { // the token command's default is the same development secret
		token += " --secret " + shellQuote(f.secret)
	}
	fmt.Fprintf(w, "zzim up: %s\n", cluster.FormatTopology(cfg.Topology))
	fmt.Fprintf(w, "  apps (TCP):        %s\n", strings.Join(l.Entries(), " "))
	fmt.Fprintf(w, "  long-poll (HTTP):  %s\n", strings.Join(https, " "))
	if len(https) > 0 && f.devLogin {
		fmt.Fprintf(w, "  web client:        %s/ (log in as any user id)\n", https[0])
	}
	if metrics != "off" {
		fmt.Fprintf(w, "  metrics:           http://%s/metrics\n", metrics)
	}
	fmt.Fprintf(w, "  NATS:              %s (%s)\n", deps.NATSURL, natsNote)
	fmt.Fprintf(w, "  store:             %s, presence: %s\n", storeNote(f.mysql), presenceNote(f.redis))
	fmt.Fprintf(w, "  a login token:     %s\n", token)
	fmt.Fprintf(w, "Ctrl-C stops (in-flight work drains for %s).\n", f.drain)
}

func storeNote(dsns []string) string {
	if len(dsns) == 0 {
		return "in memory"
	}
	return fmt.Sprintf("MySQL (%d shard(s))", len(dsns))
}

func presenceNote(redis string) string {
	if redis == "" || redis == cluster.Memory {
		return "in memory"
	}
	return "Redis " + redis
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
