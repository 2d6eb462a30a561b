package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/notify"
	"github.com/zzim/zzim/web"
)

func init() { subcommands = append(subcommands, serveCmd, upCmd, tokenCmd) }

// devSecret is the default token secret: fine on one machine, never in
// production (a warning says so at startup).
const devSecret = "zzim-dev-secret"

// Ports of the one-machine layout.
const (
	appPortDefault     = 7400 // entry slot i: 7400+i
	httpPortDefault    = 8080 // httpentry slot i: 8080+i
	metricsPortDefault = 9100 // serve: 9100 + 100*role index + slot
)

// clusterFlags are the options serve and up share.
type clusterFlags struct {
	pprof           bool // serve Go's profiles on the metrics address
	config          string
	topology        string
	secret          string
	platformKey     string
	bugs            []string
	logicBusinesses string
	logicTimeout    time.Duration
	pushAckTimeout  time.Duration
	dasTimeout      time.Duration
	storeTimeout    time.Duration
	dasLinger       time.Duration
	sendRate        int
	sendBurst       int
	depTimeout      time.Duration
	notifyWebhook   string
	mysql           []string
	redis           string
	nats            string
	metrics         string
	drain           time.Duration
	logLevel        string
	logFormat       string
}

func (f *clusterFlags) register(fs *pflag.FlagSet, natsDefault, redisDefault string) {
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go's profiles (net/http/pprof) under /debug/pprof/ on the metrics address: for measuring, not production")
	fs.StringVar(&f.config, "config", "", "YAML file of options (keys are these flag names; lists for repeatable flags; unknown keys are errors)")
	fs.StringVar(&f.topology, "topology", cluster.FormatTopology(cluster.DefaultTopology()), "slots per role, role=count,... (every process of a cluster must agree)")
	fs.StringVar(&f.secret, "secret", devSecret, "HMAC secret of login tokens (the default is for one machine only)")
	fs.StringVar(&f.platformKey, "platform-key", "", "X-Platform-Key of httpentry's platform API (empty disables the API)")
	fs.StringArrayVar(&f.bugs, "bug", nil, "enable a bug switch (repeatable; "+strings.Join(bugs.Names(), ", ")+"): for checker tests only")
	fs.StringVar(&f.logicBusinesses, "logic-businesses", "", "restrict logic slots to businesses, e.g. 0=login,1=msg+contact (default: every slot serves all)")
	fs.DurationVar(&f.logicTimeout, "logic-timeout", 0, "entry/httpentry: one attempt at logic before failing over (0: service default 2s)")
	fs.DurationVar(&f.pushAckTimeout, "push-ack-timeout", 0, "entry/httpentry: a push without PUSH_ACK takes the offline path after this (0: 5s)")
	fs.DurationVar(&f.dasTimeout, "das-timeout", 0, "logic: one attempt at das (0: 1s)")
	fs.DurationVar(&f.dasLinger, "das-linger", 0, "das: hold a non-full append batch until its oldest append has waited this long, for fewer commits at up to this much more latency (0: off; at most 50ms)")
	fs.DurationVar(&f.storeTimeout, "store-timeout", 0, "extlogic: one attempt at das (0: service default)")
	fs.IntVar(&f.sendRate, "send-rate", 0, "logic: sends per second per user (token bucket; 0: 20/s default, -1: no limit)")
	fs.IntVar(&f.sendBurst, "send-burst", 0, "logic: burst of the per-user send bucket (0: 40)")
	fs.DurationVar(&f.depTimeout, "dep-timeout", 0, "every dependency request (store, presence, queue, registry) before its outcome is unknown (0: 2s)")
	fs.StringVar(&f.notifyWebhook, "notify-webhook", "", "extlogic: POST offline notifications as JSON to this URL (default: log them)")
	fs.StringArrayVar(&f.mysql, "mysql", nil, "das: MySQL/MariaDB DSN, one per shard in shard order (repeatable; none: in-memory store)")
	fs.StringVar(&f.redis, "redis", redisDefault, "presence in Redis at host:port, or \"memory\" for in-process presence")
	fs.StringVar(&f.nats, "nats", natsDefault, "NATS JetStream URL (queue and registry)")
	fs.DurationVar(&f.drain, "drain", 5*time.Second, "on SIGTERM/SIGINT: how long in-flight work may take to finish")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or text (slog handlers, to stderr)")
}

func (f *clusterFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageErr("--log-level %q: %v", f.logLevel, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: want json or text", f.logFormat)
}

// clusterConfig builds the shared configuration; closeFn releases the notifier.
func (f *clusterFlags) clusterConfig(log *slog.Logger) (cfg cluster.Config, closeFn func(), err error) {
	topo, err := cluster.ParseTopology(f.topology, nil)
	if err != nil {
		return cfg, nil, usageErr("--topology: %v", err)
	}
	bs, err := bugs.Parse(strings.Join(f.bugs, ","))
	if err != nil {
		return cfg, nil, usageErr("--bug: %v", err)
	}
	biz, err := cluster.ParseBusinesses(f.logicBusinesses)
	if err != nil {
		return cfg, nil, usageErr("--logic-businesses: %v", err)
	}
	if f.dasLinger < 0 || f.dasLinger > das.AppendLingerMax {
		return cfg, nil, usageErr("--das-linger %s: want 0 (off) up to %s", f.dasLinger, das.AppendLingerMax)
	}
	cfg = cluster.Config{
		DasAppendLinger: f.dasLinger,
		Topology:        topo, Secret: []byte(f.secret), PlatformKey: f.platformKey, Bugs: bs, LogicBusinesses: biz,
		LogicTimeout: f.logicTimeout, PushAckTimeout: f.pushAckTimeout, DasTimeout: f.dasTimeout, StoreTimeout: f.storeTimeout,
		SendRatePerSecond: f.sendRate, SendBurst: f.sendBurst,
	}
	closeFn = func() {}
	if f.notifyWebhook != "" {
		w := notify.NewWebhookNotifier(notify.WebhookConfig{URL: f.notifyWebhook, Log: log})
		cfg.Notifier = w
		closeFn = func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = w.Close(ctx)
			cancel()
		}
	} else {
		cfg.Notifier = notify.LogNotifier{Log: log.With("component", "notifier")}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, usageErr("%v", err)
	}
	if f.secret == devSecret {
		log.Warn("using the development token secret: pass --secret (or ZZIM_SECRET) outside one machine")
	}
	if len(bs) > 0 {
		log.Warn("bug switches enabled: zzim will break its promises on purpose", "bugs", strings.Join(f.bugs, ","))
	}
	return cfg, closeFn, nil
}

type serveFlags struct {
	clusterFlags
	slot           int
	listen         string
	http           string
	internalListen string
	peers          []string
	peerPattern    string
	devLogin       bool
}

const serveLong = `Run one instance (ROLE-SLOT) of a zzim cluster: entry, httpentry, logic,
extlogic or das.

Every option can be given three more ways than its default, in this order
of precedence:
  1. the flag:               --peer-pattern '{role}-{slot}:7000'
  2. the environment:        ZZIM_PEER_PATTERN='{role}-{slot}:7000'
                             (ZZIM_ + the flag name in upper case, dashes as
                             underscores; repeatable flags take a comma list)
  3. a YAML file (--config): peer-pattern: '{role}-{slot}:7000'
                             (keys are flag names, lists for repeatable flags;
                             unknown keys are errors, with the line)
docs/configuration.md describes every option with examples.

The defaults run a cluster on one machine: internal links on
127.0.0.1:17000 + 100*role + slot (roles in the order entry, httpentry,
logic, extlogic, das), entry apps on 127.0.0.1:7400+slot, httpentry on
127.0.0.1:8080+slot, metrics on 127.0.0.1:9100 + 100*role + slot, NATS at
nats://127.0.0.1:4222 and Redis at 127.0.0.1:6379. A das without --mysql
keeps messages in memory, which is only correct with one das slot.

Metrics: GET /metrics (Prometheus), /healthz (the process is up), /readyz
(the node runs, a registry view arrived, Redis answers). SIGTERM or SIGINT
stops gracefully: listeners close, in-flight work drains for --drain, the
registry key is deleted.`

func serveCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve ROLE",
		Short: "run one instance of a role (entry, httpentry, logic, extlogic, das)",
		Long:  serveLong,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := cluster.Layer(cmd.Flags(), f.config, os.Getenv); err != nil {
				return usageErr("%v", err)
			}
			return runServe(cmd.Context(), f, args[0], cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	f.register(fs, "nats://127.0.0.1:4222", "127.0.0.1:6379")
	fs.IntVar(&f.slot, "slot", 0, "this instance's slot (0..count-1 of its role in --topology)")
	fs.StringVar(&f.listen, "listen", "", "entry: TCP address for apps (default 127.0.0.1:7400+slot)")
	fs.StringVar(&f.http, "http", "", "httpentry: HTTP address (default 127.0.0.1:8080+slot)")
	fs.BoolVar(&f.devLogin, "dev-login", false, "httpentry: serve the web client's development login (POST /v1/dev/login issues a token for any user id): never in production")
	fs.StringVar(&f.internalListen, "internal-listen", "", "address of this instance's internal link listener (default: --peer-pattern for itself, e.g. :7000 in containers)")
	fs.StringArrayVar(&f.peers, "peer", nil, "internal address of one instance, role-slot=host:port (repeatable; overrides --peer-pattern)")
	fs.StringVar(&f.peerPattern, "peer-pattern", "127.0.0.1:{port}", "internal address of every instance: {role}, {slot}, {addr} (role-slot), {port} (17000+100*role+slot)")
	fs.StringVar(&f.metrics, "metrics", "", "address of /metrics, /healthz, /readyz (default 127.0.0.1:9100+100*role+slot; \"off\" disables)")
	return cmd
}

func roleIndex(r node.Role) int {
	for i, x := range node.Roles {
		if x == r {
			return i
		}
	}
	return 0
}

func runServe(ctx context.Context, f *serveFlags, roleArg string, stderr io.Writer) error {
	log, err := f.logger(stderr)
	if err != nil {
		return err
	}
	role, err := cluster.ParseRole(roleArg)
	if err != nil {
		return usageErr("%v", err)
	}
	cfg, closeNotifier, err := f.clusterConfig(log)
	if err != nil {
		return err
	}
	defer closeNotifier()
	self := node.Addr{Role: role, Slot: f.slot}
	if f.slot < 0 || f.slot >= cfg.Topology[role] {
		return usageErr("--slot %d: %s has %d slots in --topology", f.slot, role, cfg.Topology[role])
	}
	internal, err := f.internal(cfg.Topology, self)
	if err != nil {
		return err
	}
	if role == node.RoleDas && len(f.mysql) == 0 && cfg.Topology[node.RoleDas] > 1 {
		return usageErr("das without --mysql keeps messages in this process's memory: with %d das slots they would disagree; pass --mysql or run das=1", cfg.Topology[node.RoleDas])
	}
	log = log.With("node", self.String())
	deps, err := cluster.OpenDeps(ctx, cluster.DepsOptions{
		NATS: f.nats, Redis: f.redis, MySQL: f.mysql, NeedStore: role == node.RoleDas, Bugs: cfg.Bugs,
		Name: "zzim-" + self.String(), Logger: log,
	})
	if err != nil {
		return fmt.Errorf("dependencies: %w", err)
	}
	defer deps.Close()
	if f.redis == cluster.Memory || f.redis == "" {
		log.Warn("presence is in this process's memory: only correct when every logic and extlogic shares it")
	}
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{
		Only: func(a node.Addr) bool { return a == self }, Internal: internal,
		AppPort: appPortDefault, HTTPPort: httpPortDefault,
		AppListen: map[node.Addr]string{self: f.listen}, HTTPListen: map[node.Addr]string{self: f.http},
		Deps: deps.Deps, DepTimeout: f.depTimeout, Logger: log,
		HTTPExtra: web.Routes(cfg.Secret, f.devLogin),
	})
	if err != nil {
		return err
	}
	metricsAddr := f.metrics
	if metricsAddr == "" {
		metricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPortDefault+100*roleIndex(role)+f.slot))
	}
	stopOps, boundOps, err := serveOps(metricsAddr, l, deps, log, f.opsExtra()...)
	if err != nil {
		l.Shutdown(context.Background(), 0)
		return err
	}
	defer stopOps()
	log.Info("serving", append(cfg.LogAttrs(), "internal", internal[self], "app", l.AppAddr(self), "http", l.HTTPAddr(self),
		"metrics", boundOps, "nats", deps.NATSURL)...)
	<-ctx.Done()
	log.Info("shutting down", "drain", f.drain.String())
	l.Shutdown(context.Background(), f.drain)
	log.Info("stopped")
	return nil
}

// internal is every instance's internal address: the pattern, then --peer
// overrides, then this instance's own listen address.
func (f *serveFlags) internal(topo map[node.Role]int, self node.Addr) (map[node.Addr]string, error) {
	internal := cluster.InternalPattern(topo, f.peerPattern)
	peers, err := cluster.ParsePeers(f.peers)
	if err != nil {
		return nil, usageErr("--peer: %v", err)
	}
	for a, hp := range peers {
		internal[a] = hp
	}
	if f.internalListen != "" {
		internal[self] = f.internalListen
	}
	for a, hp := range internal {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return nil, usageErr("internal address of %s %q: %v", a, hp, err)
		}
	}
	return internal, nil
}

// serveOps serves /metrics, /healthz and /readyz on addr ("off": nothing),
// and whatever extra adds to the same mux.
func serveOps(addr string, l *cluster.Local, deps *cluster.Deps, log *slog.Logger, extra ...func(*http.ServeMux)) (stop func(), bound string, err error) {
	if addr == "off" {
		return func() {}, "off", nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listen %s: %w", addr, err)
	}
	var h http.Handler = cluster.OpsHandler(l.Registry(), l.ReadyCheck(deps.Pings...))
	if len(extra) > 0 {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		for _, add := range extra {
			add(mux)
		}
		h = mux
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, ln.Addr().String(), nil
}

// opsExtra is what the metrics address serves besides /metrics and the
// health checks: Go's profiles under --pprof.
func (f *clusterFlags) opsExtra() []func(*http.ServeMux) {
	if f.pprof {
		return []func(*http.ServeMux){servePprof}
	}
	return nil
}

// servePprof adds net/http/pprof's handlers (--pprof).
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
