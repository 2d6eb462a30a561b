package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/zzim/zzim/loadgen"
)

func init() { subcommands = append(subcommands, loadCmd) }

type loadFlags struct {
	tcp            []string
	http           string
	profile        string
	rate           float64
	users          int
	duration       time.Duration
	drain          time.Duration
	verify         bool
	out            string
	thresholds     []string
	secret         string
	prometheus     string
	seed           uint64
	userPrefix     string
	clientNumBase  int
	sourceNet      string
	connectTimeout time.Duration
	quiet          bool
}

// sourceAddrsMax bounds the local addresses --source-net expands to.
const sourceAddrsMax = 1 << 16

const loadLong = `Drive a running zzim cluster with an open-loop load profile: every send
has an intended time, and latency is measured from it (no coordinated
omission) as well as from when it went on the wire. Users are reference
clients over TCP (--tcp) and long-poll HTTP (--http).

Profiles: an embedded name (` + "%s" + `) or a YAML file in the scenario
workload vocabulary. --rate scales the profile's rates, --duration its
times, --users its users.

Every second a progress line goes to stderr; at the end a summary table to
stdout. --out DIR writes summary.json (per-second offered and achieved
rates and latency percentiles), HDR histograms (*.hgrm), plot.png and, with
--verify, history.jsonl and verdict.txt.

Exit status: 0; 1 when a --threshold is broken or --verify finds a
violation (or cannot decide); 2 for usage errors.`

func loadCmd() *cobra.Command {
	f := &loadFlags{}
	cmd := &cobra.Command{
		Use:   "load --tcp HOST:PORT[,HOST:PORT] [--http URL] --profile NAME|FILE",
		Short: "open-loop load generator with latency from intended times, thresholds and verification",
		Long:  fmt.Sprintf(loadLong, strings.Join(loadgen.Names(), ", ")),
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLoad(cmd, f)
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&f.tcp, "tcp", nil, "entry TCP addresses (comma-separated or repeated)")
	fs.StringVar(&f.http, "http", "", "httpentry URL for long-poll users (e.g. http://127.0.0.1:8080)")
	fs.StringVar(&f.profile, "profile", "steady", "embedded profile name or YAML file")
	fs.Float64Var(&f.rate, "rate", 0, "baseline sends per second (scales the profile's rates; 0: the profile's)")
	fs.IntVar(&f.users, "users", 0, "users (0: the profile's)")
	fs.DurationVar(&f.duration, "duration", 0, "traffic duration (scales the profile's times; 0: the profile's)")
	fs.DurationVar(&f.drain, "drain", 0, "after traffic: how long outstanding sends may take (0: the profile's)")
	fs.BoolVar(&f.verify, "verify", false, "record histories and run the checkers after the drain; a violation exits 1")
	fs.StringVar(&f.out, "out", "", "directory for summary.json, histograms, plot.png (and history with --verify)")
	fs.StringArrayVar(&f.thresholds, "threshold", nil, "fail (exit 1) unless EXPR holds, e.g. p99_deliver<50ms, p99_ack<20ms, errors<0.1%, achieved_rate>900 (repeatable)")
	fs.StringVar(&f.secret, "secret", devSecret, "HMAC secret of login tokens (the cluster's --secret)")
	fs.StringVar(&f.prometheus, "prometheus", "", "serve the generator's metrics on ADDR/metrics")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of conversations, senders and churn (0: random)")
	fs.StringVar(&f.userPrefix, "user-prefix", "", "prefix of user names (generator processes sharing a cluster use different ones)")
	fs.IntVar(&f.clientNumBase, "client-num-base", 0, "offset of history client numbers")
	fs.StringVar(&f.sourceNet, "source-net", "", "spread client connections over the local addresses of this CIDR (e.g. 127.1.0.0/16), past the ephemeral port limit")
	fs.DurationVar(&f.connectTimeout, "connect-timeout", 0, "bound on waiting for the users' first logins (0: 30s)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress line")
	return cmd
}

func runLoad(cmd *cobra.Command, f *loadFlags) error {
	stderr, stdout := cmd.ErrOrStderr(), cmd.OutOrStdout()
	cfg, ths, err := f.config(stderr)
	if err != nil {
		return err
	}
	if f.prometheus != "" {
		p, err := loadgen.ServePrometheus(f.prometheus)
		if err != nil {
			return usageErr("--prometheus: %v", err)
		}
		defer p.Close()
		cfg.OnSecond = p.OnSecond
		fmt.Fprintf(stderr, "prometheus: http://%s/metrics\n", p.Addr)
	}
	res, err := loadgen.Run(cmd.Context(), cfg)
	if err != nil && res == nil {
		return usageErr("load: %v", err)
	}
	ok := loadgen.JudgeAll(ths, res.Summary)
	if werr := res.Summary.WriteTable(stdout); werr != nil {
		return werr
	}
	if f.out != "" {
		if werr := res.WriteOut(f.out); werr != nil {
			return werr
		}
	}
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if res.Verdict != nil && !res.Verdict.Pass {
		_ = res.Verdict.Report(stderr)
		return &exitError{code: 1, err: fmt.Errorf("verify: %s", res.Verdict.Word())}
	}
	if !ok {
		return &exitError{code: 1, err: fmt.Errorf("thresholds broken")}
	}
	if cmd.Context().Err() != nil {
		return &exitError{code: 1, err: fmt.Errorf("interrupted")}
	}
	return nil
}

// config checks the flags (usage errors exit 2) and builds the run.
func (f *loadFlags) config(stderr io.Writer) (loadgen.Config, []loadgen.Threshold, error) {
	var cfg loadgen.Config
	var tcp []string
	for _, a := range f.tcp {
		if a = strings.TrimSpace(a); a != "" {
			tcp = append(tcp, a)
		}
	}
	if len(tcp) == 0 && f.http == "" {
		return cfg, nil, usageErr("load: give --tcp HOST:PORT and/or --http URL")
	}
	prof, err := loadgen.LoadProfile(f.profile)
	if err != nil {
		return cfg, nil, usageErr("%v", err)
	}
	if f.rate < 0 || f.users < 0 || f.duration < 0 || f.drain < 0 {
		return cfg, nil, usageErr("load: --rate, --users, --duration and --drain must not be negative")
	}
	if f.rate > 0 {
		prof.SetRate(f.rate)
	}
	if f.users > 0 {
		prof.Workload.Users = f.users
	}
	if f.duration > 0 {
		prof.SetDuration(f.duration)
	}
	if f.drain > 0 {
		prof.Drain = loadgen.Duration(f.drain)
	}
	if err := prof.Validate(); err != nil {
		return cfg, nil, usageErr("profile %s: %v", prof.Name, err)
	}
	var ths []loadgen.Threshold
	for _, e := range f.thresholds {
		t, err := loadgen.ParseThreshold(e)
		if err != nil {
			return cfg, nil, usageErr("--threshold: %v", err)
		}
		ths = append(ths, t)
	}
	srcs, err := sourceAddrs(f.sourceNet)
	if err != nil {
		return cfg, nil, usageErr("--source-net: %v", err)
	}
	cfg = loadgen.Config{
		TCP: tcp, HTTP: f.http, Secret: []byte(f.secret), Profile: prof, Verify: f.verify,
		UserPrefix: f.userPrefix, ClientNumBase: f.clientNumBase, SourceAddrs: srcs, Seed: f.seed,
		ConnectTimeout: f.connectTimeout,
	}
	if !f.quiet {
		cfg.Progress = stderr
	}
	return cfg, ths, nil
}

// sourceAddrs expands a CIDR to its host addresses (at most sourceAddrsMax).
func sourceAddrs(cidr string) ([]netip.Addr, error) {
	if cidr == "" {
		return nil, nil
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for a := p.Masked().Addr().Next(); p.Contains(a) && len(out) < sourceAddrsMax; a = a.Next() {
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no host addresses", cidr)
	}
	return out, nil
}
