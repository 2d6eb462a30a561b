package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/httpentry"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// This file adapts a scenario (scenarios/) to a Config, and judges a run
// the way the scenario asks: its checks, its liveness bound and its
// exercised counters.

// Adapter constants: where the scenario vocabulary says more than the
// simulator models, these are the stand-ins (each is listed in Plan.Notes).
const (
	// restartGap: "restart" is a crash followed by a start this much later
	// (a process restart is never instantaneous).
	restartGap = time.Millisecond
	// registryInconsistentDelay: "registry-inconsistent" is modelled as
	// views reaching each node after its own delay drawn up to this bound,
	// so nodes disagree about who is alive meanwhile.
	registryInconsistentDelay = 3 * time.Second
	// slotsMaxDefault bounds slots per role (scale-out included) when the
	// scenario's topology does not need more.
	slotsMaxDefault = 8
)

// PlanOptions override what the scenario file says.
type PlanOptions struct {
	// Seed: 0 takes the scenario's seed.
	Seed uint64
	// Bugs are added to the scenario's own.
	Bugs bugs.Set
	// Checks in the scenario vocabulary (structural, linearizability,
	// unread, liveness); empty takes the scenario's.
	Checks []string
	// Swarm draws a fault mix from the seed (swarm.go) on top of the
	// scenario's explicit schedule.
	Swarm   bool
	Verbose bool
}

// Plan is one scenario run, ready to go: the Config and how to judge it.
// A Plan is for one run: FromScenario is cheap, make one per seed.
type Plan struct {
	Name     string
	Scenario *scenarios.Scenario
	Config   Config
	// Checks are check package names; LivenessBound enables promise 9.
	Checks        []string
	LivenessBound time.Duration
	// Required are exercised counters that must end non-zero.
	Required []string
	// Swarm describes the drawn fault mix ("" when not a swarm run).
	Swarm string
	// Notes list where the simulator approximates the scenario's vocabulary.
	Notes []string

	clients *clientTracker
}

// clientTracker remembers the long-poll clients of a run, whose reconnects
// the summed client stats cannot tell apart from TCP ones.
type clientTracker struct {
	longPoll []*client.Client
}

// FromScenario builds the Config of one run of sc.
func FromScenario(sc *scenarios.Scenario, opts PlanOptions) (*Plan, error) {
	if sc == nil {
		return nil, errors.New("sim: no scenario")
	}
	p := &Plan{Name: sc.Name, Scenario: sc, clients: &clientTracker{}}
	cfg := DefaultConfig()
	cfg.Seed = sc.Seed
	if opts.Seed != 0 {
		cfg.Seed = opts.Seed
	}
	cfg.Verbose = opts.Verbose
	cfg.Duration = sc.Duration.D()
	if sc.Quiet > 0 {
		cfg.Quiet = sc.Quiet.D()
	}
	p.LivenessBound = sc.LivenessBound.D()
	cfg.Settle = settleFor(cfg.Quiet, p.LivenessBound)
	p.topology(&cfg, sc)
	p.workload(&cfg, sc)
	set, err := bugs.Parse(strings.Join(sc.Bugs, ","))
	if err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", sc.Name, err)
	}
	for b, on := range opts.Bugs {
		if on {
			set[b] = true
		}
	}
	cfg.Bugs = set
	for i, f := range sc.Faults {
		mapped, err := p.fault(f)
		if err != nil {
			return nil, fmt.Errorf("sim: scenario %s fault %d: %w", sc.Name, i, err)
		}
		cfg.Faults = append(cfg.Faults, mapped)
	}
	if opts.Swarm {
		drawn := DrawSwarm(cfg.Seed, cfg, swarmSpecOf(sc))
		cfg.Faults = append(cfg.Faults, drawn...)
		p.Swarm = DescribeFaults(drawn)
	}
	cfg.Services = p.services(sc)
	checks := sc.Checks
	if len(opts.Checks) > 0 {
		checks = opts.Checks
	}
	if p.Checks, p.LivenessBound, err = checksFor(checks, p.LivenessBound); err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", sc.Name, err)
	}
	p.Required = slices.Clone(sc.Exercised)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sim: scenario %s: %w", sc.Name, err)
	}
	p.Config = cfg
	return p, nil
}

// settleFor puts the clients' final sync half way into the liveness bound,
// so a run that converges does so well within it.
func settleFor(quiet, bound time.Duration) time.Duration {
	settle := quiet / 3
	if bound > 0 && bound/2 < settle {
		settle = bound / 2
	}
	return settle
}

// checksFor maps the scenario's check names to the checkers': unread
// convergence is part of the structural pass, liveness is the bound.
func checksFor(names []string, bound time.Duration) ([]string, time.Duration, error) {
	var out []string
	liveness := false
	add := func(c string) {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	for _, n := range names {
		switch n {
		case "structural", "unread":
			add(check.CheckStructural)
		case "linearizability":
			add(check.CheckLinearizability)
		case "liveness":
			add(check.CheckStructural)
			liveness = true
		default:
			return nil, 0, fmt.Errorf("unknown check %q (want structural, linearizability, unread or liveness)", n)
		}
	}
	if !liveness {
		bound = 0
	}
	return out, bound, nil
}

// ParseChecks reads a comma-separated list in the scenario vocabulary.
func ParseChecks(list string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	if _, _, err := checksFor(out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *Plan) topology(cfg *Config, sc *scenarios.Scenario) {
	t := sc.Topology
	cfg.Topology = map[node.Role]int{node.RoleEntry: t.Entry, node.RoleHTTPEntry: t.HTTPEntry,
		node.RoleLogic: t.Logic, node.RoleExtLogic: t.ExtLogic, node.RoleDas: t.Das}
	need := slotsMaxDefault
	for _, n := range cfg.Topology {
		need = max(need, n)
	}
	for _, f := range sc.Faults {
		if f.What == scenarios.ScaleOut {
			need = max(need, slotOf(f.Target)+1)
		}
	}
	cfg.SlotsMax = need + 1
}

func slotOf(target string) int {
	i := strings.LastIndexByte(target, '-')
	n, err := strconv.Atoi(target[i+1:])
	if err != nil {
		return 0
	}
	return n
}

func (p *Plan) workload(cfg *Config, sc *scenarios.Scenario) {
	w := sc.Workload
	cw := &cfg.Workload
	cw.Users = w.Users
	cw.ClientsPerUser = 1
	// The sim makes each user buyer in ConvsPerUser conversations.
	cw.ConvsPerUser = max(1, int(math.Round(float64(w.Conversations)/float64(w.Users))))
	if w.Conversations > 0 && cw.ConvsPerUser*w.Users != w.Conversations {
		p.note("workload.conversations %d: the sim makes %d per user (about %d)", w.Conversations,
			cw.ConvsPerUser, cw.ConvsPerUser*w.Users)
	}
	cw.Rate = w.Rate
	// The shrinker's reductions (shrink.go): only these users and conversations take part.
	cw.KeepUsers, cw.KeepConvs = slices.Clone(w.KeepUsers), slices.Clone(w.KeepConversations)
	cw.LongPollShare = w.LongPollShare
	if cfg.Topology[node.RoleHTTPEntry] == 0 {
		cw.LongPollShare = 0
	}
	if n, room := int(float64(w.Users)*(1-cw.LongPollShare)), cfg.Topology[node.RoleEntry]*entry.ConnsMaxDefault; n > room {
		p.note("about %d TCP clients over %d entries of at most %d connections each: %d cannot stay connected",
			n, cfg.Topology[node.RoleEntry], entry.ConnsMaxDefault, n-room)
	}
	for _, sp := range w.Spikes {
		cw.Spikes = append(cw.Spikes, Spike{At: sp.At.D(), For: sp.For.D(), Factor: sp.Multiplier})
	}
	if c := w.Churn; c != nil && c.Rate > 0 {
		cw.ChurnRate = c.Rate / float64(w.Users*cw.ClientsPerUser)
		cw.OfflineMean = c.Offline.D()
	}
	if ls := w.LoginStorm; ls != nil {
		cw.LoginStorms = append(cw.LoginStorms, LoginStorm{At: ls.At.D(),
			Share: float64(ls.Clients) / float64(w.Users*cw.ClientsPerUser)})
		p.note("login_storm: %d clients drop and reconnect at %s (each client with probability %.2f)",
			ls.Clients, ls.At, cw.LoginStorms[0].Share)
	}
	if n := w.Notices; n != nil {
		cw.NoticeRate = n.Rate
	}
	if b := w.Broadcasts; b != nil {
		for _, at := range b.At {
			cw.BroadcastAt = append(cw.BroadcastAt, at.D())
		}
	}
}

// services wires zzim's services, with the logic business split if the
// scenario has one, and tracks long-poll clients.
func (p *Plan) services(sc *scenarios.Scenario) *Services {
	sv := DefaultServices()
	split := sc.Topology.LogicSplit
	if len(split) > 0 {
		sv.Node[node.RoleLogic] = func(c NodeConfig) node.Node {
			var bs []logic.Business
			if c.Addr.Slot < len(split) {
				bs = businessesOf(split[c.Addr.Slot])
			}
			return logic.New(logic.Config{Topology: c.Topology, Bugs: c.Bugs, Businesses: bs})
		}
		// Entry and httpentry route each request within the slots serving
		// its business: they get the same split.
		perSlot := map[int][]logic.Business{}
		for slot, set := range split {
			perSlot[slot] = businessesOf(set)
		}
		sv.Node[node.RoleEntry] = func(c NodeConfig) node.Node {
			return entry.New(entry.Config{Topology: c.Topology, Secret: c.Secret, LogicBusinesses: perSlot})
		}
		sv.Node[node.RoleHTTPEntry] = func(c NodeConfig) node.Node {
			return httpentry.New(httpentry.Config{Topology: c.Topology, Secret: c.Secret, PlatformKey: c.PlatformKey,
				LogicBusinesses: perSlot})
		}
	}
	tracker := p.clients
	sv.Client = func(c client.Config) ClientDriver {
		cl := client.New(c)
		if c.Transport == client.LongPoll {
			tracker.longPoll = append(tracker.longPoll, cl)
		}
		return cl
	}
	return sv
}

// businessesOf reads one logic_split entry ("login+contact", "all").
func businessesOf(set string) []logic.Business {
	var out []logic.Business
	for _, b := range strings.Split(set, "+") {
		if b == "all" {
			return nil
		}
		out = append(out, logic.Business(b))
	}
	return out
}

func (p *Plan) note(format string, args ...any) {
	p.Notes = append(p.Notes, fmt.Sprintf(format, args...))
}

// fault maps one scenario fault to the simulator's vocabulary.
func (p *Plan) fault(f scenarios.Fault) (Fault, error) {
	out := Fault{At: f.At.D(), For: f.For.D(), Target: nodeTarget(f.Target)}
	prob := func(key string) (float64, error) {
		v, ok := f.Params[key]
		if !ok {
			return 0, nil
		}
		return strconv.ParseFloat(v, 64)
	}
	dur := func(key string) (time.Duration, error) {
		v, ok := f.Params[key]
		if !ok {
			return 0, nil
		}
		return time.ParseDuration(v)
	}
	var err error
	switch f.What {
	case scenarios.Crash, scenarios.Pause, scenarios.ScaleOut, scenarios.ScaleIn:
		out.Kind = FaultKind(f.What)
	case scenarios.Restart:
		out.Kind, out.For = FaultCrash, restartGap
	case scenarios.ClockSkew:
		out.Kind = FaultSkew
		out.Delay, err = dur("skew")
	case scenarios.Partition:
		err = p.partition(f, &out)
	case scenarios.Delay, scenarios.Drop, scenarios.Duplicate, scenarios.Reorder, scenarios.Clog:
		err = p.linkFault(f, &out)
	case scenarios.DBLatency:
		out.Kind, out.Target, out.Business = FaultDBLatency, "", f.Params["business"]
		out.Delay, err = dur("latency")
	case scenarios.DBTimeout:
		out.Kind, out.Target = FaultDBUnknown, ""
		out.Prob, err = prob("probability")
		p.ignored(f, "business", "commit_probability")
	case scenarios.DBDeadlock:
		out.Kind, out.Target = FaultDBDeadlock, ""
		out.Prob, err = prob("probability")
		p.ignored(f, "business")
	case scenarios.DBOutage:
		out.Kind, out.Target = FaultDBOutage, ""
		p.ignored(f, "business")
	case scenarios.PresenceLoss, scenarios.PresenceStale:
		out.Kind, out.Target = FaultPresenceLost, ""
		if f.What == scenarios.PresenceStale {
			out.Kind = FaultPresenceStale
		}
		out.Prob, err = prob("fraction")
	case scenarios.MQRedelivery, scenarios.MQDuplicate:
		out.Kind, out.Target = FaultQueueRedeliver, ""
		if f.What == scenarios.MQDuplicate {
			out.Kind = FaultQueueDuplicate
		}
		out.Prob, err = prob("probability")
	case scenarios.MQOutage:
		out.Kind, out.Target = FaultQueueOutage, ""
	case scenarios.RegistryDelay:
		out.Kind, out.Target = FaultRegistryDelay, ""
		out.Delay, err = dur("delay")
	case scenarios.RegistryInconsistent:
		out.Kind, out.Target, out.Delay = FaultRegistryDelay, "", registryInconsistentDelay
		p.note("registry-inconsistent: modelled as per-node view delays up to %s (probability %s ignored)",
			registryInconsistentDelay, f.Params["probability"])
	case scenarios.DBCrash:
		out.Kind, out.Target = FaultDBCrash, ""
	case scenarios.DBPause:
		out.Kind, out.Target = FaultDBPause, ""
	case scenarios.DBFailover:
		out.Kind, out.Target, out.Delay = FaultDBFailover, "", f.Lag()
		if f.Replication() == scenarios.ReplicationAsync {
			out.Kind = FaultDBFailoverAsync
		}
	case scenarios.NATSKill, scenarios.NATSPartition:
		out.Kind, out.Target = FaultKind(f.What), strings.TrimSpace(f.Target)
	case scenarios.RedisKill:
		out.Kind, out.Target = FaultRedisKill, ""
	default:
		return out, fmt.Errorf("fault kind %q has no simulator mapping", f.What)
	}
	if err != nil {
		return out, fmt.Errorf("%s: %w", f.What, err)
	}
	return out, out.validate()
}

func (p *Plan) ignored(f scenarios.Fault, keys ...string) {
	for _, k := range keys {
		if v, ok := f.Params[k]; ok {
			p.note("%s: param %s=%s is not modelled by the sim (it applies to every business; commits of timed-out ops are a fair coin)", f.What, k, v)
		}
	}
}

// nodeTarget turns "logic-1" or "das-*" into the sim's "logic-1" or "das".
func nodeTarget(t string) string {
	return strings.TrimSuffix(strings.TrimSpace(t), "-*")
}

// linkEnds splits "a<->b" or "a->b".
func linkEnds(t string) (a, b string, oneWay bool) {
	if a, b, ok := strings.Cut(t, "<->"); ok {
		return nodeTarget(a), nodeTarget(b), false
	}
	a, b, _ = strings.Cut(t, "->")
	return nodeTarget(a), nodeTarget(b), true
}

func (p *Plan) partition(f scenarios.Fault, out *Fault) error {
	switch f.Params["mode"] {
	case "isolate":
		out.Kind = FaultIsolate
	case "one-way":
		a, b, _ := linkEnds(f.Target)
		out.Kind, out.Target = FaultPartitionOneWay, a+"|"+b
	default:
		a, b, oneWay := linkEnds(f.Target)
		out.Kind, out.Target = FaultPartition, a+"|"+b
		if oneWay {
			out.Kind = FaultPartitionOneWay
		}
	}
	return nil
}

// linkFault: the sim applies link faults to every link of an instance, so
// a fault on "a<->b" or "a->b" falls on all of a's links.
func (p *Plan) linkFault(f scenarios.Fault, out *Fault) error {
	a, b, _ := linkEnds(f.Target)
	out.Target = a
	p.note("%s %s: the sim applies it to every link of %s, not only those to %s", f.What, f.Target, a, b)
	var err error
	switch f.What {
	case scenarios.Delay:
		out.Kind = FaultDelay
		var lat, jit time.Duration
		if lat, err = time.ParseDuration(f.Params["latency"]); err == nil && f.Params["jitter"] != "" {
			jit, err = time.ParseDuration(f.Params["jitter"])
		}
		out.Delay = lat + jit/2 // the sim's extra delay is fixed: take the jitter's mean
	case scenarios.Drop, scenarios.Duplicate, scenarios.Reorder:
		out.Kind = map[scenarios.FaultKind]FaultKind{scenarios.Drop: FaultDrop, scenarios.Duplicate: FaultDuplicate,
			scenarios.Reorder: FaultReorder}[f.What]
		if v, ok := f.Params["probability"]; ok {
			out.Prob, err = strconv.ParseFloat(v, 64)
		} else {
			out.Prob = 0.1
		}
	case scenarios.Clog:
		out.Kind = FaultClog
	}
	return err
}

// Run runs the plan once.
func (p *Plan) Run() (*Result, error) {
	p.clients.longPoll = p.clients.longPoll[:0]
	return Run(p.Config)
}

// ExercisedCounters names every exercised counter the sim reports, as the
// scenario format spells them, with how it is measured.
var ExercisedCounters = []struct{ Name, Meaning string }{
	{"failover_resends", "requests entry/httpentry resent to a new logic target (or seen reaching a new slot)"},
	{"failbacks", "resends that went back to the user's home slot"},
	{"users_remapped", "users served by a logic slot other than their home"},
	{"unknown_resolved_by_dedup", "unknown append outcomes a resend resolved as Duplicate"},
	{"redeliveries_handled", "queue redeliveries extlogic acknowledged"},
	{"pushes_to_offline", "pushes that took the offline path (PushFailed, offline publish)"},
	{"overloaded_rejections", "requests refused OVERLOADED (sends in the history, syncs and lists the clients counted, and the services' own refusals), plus extlogic deliveries nakked when full"},
	{"clock_skewed_nodes", "clock-skew fault windows that ran"},
	{"das_retries", "das requests retried (logic after an unknown outcome, extlogic store retries)"},
	{"gap_fills", "messages clients lacked and got by sync"},
	{"kicked_sessions", "clients whose session a newer login kicked"},
	{"notices_stored", "platform notices appended to a system conversation"},
	{"broadcast_pushes", "push targets extlogic sent (broadcast fan-out and notices)"},
	{"longpoll_timeouts", "long-polls httpentry answered empty on timeout"},
	{"longpoll_reconnects", "long-poll clients' logins after their first"},
	{"presence_misses", "pushes that found a dead connection (PushFailed from entry/httpentry)"},
	{"membership_changes", "registry views that changed a role's alive slots (start-up included)"},
	{"partitioned_messages", "internal messages a partition dropped"},
	{"storm_reconnects", "clients a login storm dropped, which then logged in again at once"},
	{"db_crash_recoveries", "db-crash windows after which the primary answered again"},
	{"db_failovers", "db-failover promotions of the replica"},
	{"db_lost_acknowledged", "appends das was told committed that a promotion lost (missing from the promoted store)"},
	{"nats_node_restarts", "NATS nodes a nats-kill stopped that were started again"},
	{"nats_leader_changes", "JetStream leader elections a NATS fault caused"},
	{"presence_lost", "live presence entries Redis held when a redis-kill wiped it"},
}

// ExercisedNamesAll lists the names of ExercisedCounters.
func ExercisedNamesAll() []string {
	out := make([]string, len(ExercisedCounters))
	for i, c := range ExercisedCounters {
		out[i] = c.Name
	}
	return out
}

// Counters computes every exercised counter of a run of p.
func (p *Plan) Counters(r *Result) map[string]uint64 {
	st, sm := r.Stats, r.Sim
	var overloaded, kicked, skewed uint64
	for i := range r.History {
		op := &r.History[i]
		switch op.Error {
		case wire.ErrorCode_OVERLOADED.String():
			overloaded++
		case wire.ErrorCode_KICKED.String():
			kicked++
		}
	}
	for _, w := range r.Faults {
		if w.Kind == FaultSkew {
			skewed++
		}
	}
	var lpReconnects uint64
	for _, c := range p.clients.longPoll {
		lpReconnects += uint64(c.Stats().Reconnects)
	}
	e := r.Exercised
	return map[string]uint64{
		"failover_resends":          e.FailoverResends,
		"failbacks":                 e.FailBacks,
		"users_remapped":            e.UsersRemapped,
		"unknown_resolved_by_dedup": e.UnknownResolvedByDedup,
		"redeliveries_handled":      e.RedeliveriesHandled,
		"pushes_to_offline":         e.PushesToOffline,
		// Refusals the clients resent past are not in the history (it records
		// the final ack), so the services' own counts are added.
		"overloaded_rejections": overloaded + st["extlogic.Overloaded"] + st["entry.AdmitRefused"] +
			st["entry.Overloaded"] + st["das.RejectedTotal"] + st["client.Refused"],
		"clock_skewed_nodes":   skewed,
		"storm_reconnects":     sm["storm_reconnects"],
		"das_retries":          st["logic.Retries"] + st["extlogic.StoreRetries"],
		"gap_fills":            st["client.GapFills"],
		"kicked_sessions":      max(kicked, st["client.Kicked"]),
		"notices_stored":       st["extlogic.NoticesStored"],
		"broadcast_pushes":     st["extlogic.Pushes"],
		"longpoll_timeouts":    st["httpentry.PollTimeouts"],
		"longpoll_reconnects":  lpReconnects,
		"presence_misses":      st["entry.PushesFailed"] + st["httpentry.PushesFailed"],
		"membership_changes":   sm["view_changes"],
		"partitioned_messages": sm["partition_drops"],
		"db_crash_recoveries":  r.Deps.DBCrashRecoveries,
		"db_failovers":         r.Deps.DBFailovers,
		"db_lost_acknowledged": uint64(len(r.Deps.LostAcknowledged)),
		"nats_node_restarts":   r.Deps.NATSNodeRestarts,
		"nats_leader_changes":  r.Deps.NATSLeaderChanges,
		"presence_lost":        r.Deps.PresenceLost,
	}
}

// Outcome is the judgement of one run.
type Outcome struct {
	// Word is pass or fail (the simulator runs every fault it is given, so
	// it never says skipped). A run that failed exactly as its scenario
	// expects (expect: fail) is a pass, with AsExpected set.
	Word    string
	Verdict *check.Verdict
	// Reasons say why a run failed, one line each.
	Reasons []string
	// Failures are everything that went wrong, tagged with the promise each
	// breaks (0: none, e.g. a run error or a required counter at zero), as
	// scenarios.Judge reads them.
	Failures []scenarios.Failure
	// AsExpected: the run failed, and exactly as the scenario expects;
	// Expected says how, in one line.
	AsExpected bool
	Expected   string
	Exercised  map[string]uint64
	// Missing are required exercised counters that stayed zero.
	Missing []string
	// LostAcknowledged are the acknowledged appends failovers lost.
	LostAcknowledged []LostAppend
	Panic            *PanicError
}

// Pass reports whether the run passed.
func (o *Outcome) Pass() bool { return o.Word == "pass" }

// JudgeOptions tune the checkers.
type JudgeOptions struct {
	// OutDir receives porcupine's visualizations of violations.
	OutDir string
	// Timeout bounds porcupine's search per conversation (0: check.DefaultTimeout, raised by check.DefaultTimeoutPerOp for a large conversation).
	Timeout time.Duration
}

// Judge runs the checkers the plan asks for, the simulator's counting
// check and the exercised-counter requirement, and decides the run as its
// scenario expects (scenarios.Judge, as the chaos harness does).
func (p *Plan) Judge(r *Result, opts JudgeOptions) (*Outcome, error) {
	o := &Outcome{Exercised: p.Counters(r), LostAcknowledged: r.Deps.LostAcknowledged}
	fail := func(promise int, reason string) {
		o.Failures = append(o.Failures, scenarios.Failure{Promise: promise, Reason: reason})
	}
	if r.Err != nil {
		var pe *PanicError
		if errors.As(r.Err, &pe) {
			o.Panic = pe
		}
		fail(0, "run stopped: "+r.Err.Error())
	}
	v, err := check.Check(&check.History{Ops: r.History}, check.Options{Dump: r.Store, Faults: r.HistoryFaults(),
		Checks: p.Checks, LivenessBound: p.LivenessBound, OutDir: opts.OutDir, Timeout: opts.Timeout})
	if err != nil {
		return nil, fmt.Errorf("sim: check %s: %w", p.Name, err)
	}
	o.Verdict = v
	for _, vi := range v.Violations {
		fail(vi.Promise, violationLine(vi))
	}
	if !v.Pass && len(v.Violations) == 0 {
		fail(0, "checkers: "+v.Word()+": "+v.Summary())
	}
	if d := r.Delivery; d.Missing > 0 {
		fail(check.PromiseNoLoss, fmt.Sprintf("counting check: %d of %d (message, recipient) pairs missing", d.Missing, d.Recipients))
	}
	if d := r.Delivery; d.Duplicated > 0 {
		fail(check.PromiseNoDuplicates, fmt.Sprintf("counting check: %d of %d (message, recipient) pairs duplicated", d.Duplicated, d.Recipients))
	}
	// A run that acknowledged nothing checks nothing: the checkers pass
	// vacuously, so say so (login-storm's split routing did exactly this).
	if p.Config.Workload.Rate > 0 && r.Delivery.Acked == 0 {
		fail(0, "no send was acknowledged: the checkers had nothing to judge")
	}
	for _, name := range p.Required {
		n, known := o.Exercised[name]
		if !known {
			fail(0, "required exercised counter "+name+" is not measured by the sim")
			o.Missing = append(o.Missing, name)
		} else if n == 0 {
			fail(0, "required exercised counter "+name+" stayed zero")
			o.Missing = append(o.Missing, name)
		}
	}
	// Only a scenario that names its failure (expect_violations) can pass
	// by failing; a shrinker's reproducer (expect: fail alone) still says
	// fail and exits 1, since showing the failure is what it is for.
	sc := p.Scenario
	if sc == nil || sc.ExpectViolations == nil {
		sc = &scenarios.Scenario{Expect: scenarios.Pass}
	}
	j := sc.Judge(o.Failures)
	o.Word = "fail"
	switch {
	case j.AsExpected:
		o.Word, o.AsExpected = "pass", true
		o.Expected = "failed as expected: " + Tally(o.Failures, sc.ExpectViolations)
		if len(o.LostAcknowledged) > 0 {
			o.Expected += "; db_lost_acknowledged " + lostList(o.LostAcknowledged)
		}
	case j.Pass:
		o.Word = "pass"
	default:
		o.Reasons = j.Reasons
		if sc.Expect != scenarios.Fail && !v.Pass && len(v.Violations) > 0 {
			// One line for the checkers, as before; the violations follow
			// in the summary.
			o.Reasons = nonChecker(o.Failures, "checkers: "+v.Word()+": "+v.Summary())
		}
	}
	return o, nil
}

// violationLine is a violation's first line (its evidence left out).
func violationLine(v check.Violation) string {
	line, _, _ := strings.Cut(v.String(), "\n")
	return line
}

// nonChecker lists the failures that are not checker violations, after
// the checkers' summary line.
func nonChecker(fs []scenarios.Failure, checkers string) []string {
	out := []string{checkers}
	for _, f := range fs {
		if !strings.HasPrefix(f.Reason, "promise ") {
			out = append(out, f.Reason)
		}
	}
	return out
}

// lostListMax bounds the lost appends named in one line.
const lostListMax = 10

// lostList names lost appends as (conv, seq, client_msg_id).
func lostList(ls []LostAppend) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d:", len(ls))
	for i, l := range ls {
		if i == lostListMax {
			fmt.Fprintf(&b, " (%d more)", len(ls)-i)
			break
		}
		b.WriteString(" " + l.String())
	}
	return b.String()
}

// Tally counts failures by promise, the expected ones first: "promise 2
// (durable before acknowledged) x7, promise 5 (no loss) x8; consequences:
// promise 1 (total order per conversation) x6".
func Tally(fs []scenarios.Failure, e *scenarios.Expectation) string {
	count := map[int]int{}
	for _, f := range fs {
		count[f.Promise]++
	}
	name := func(p int) string {
		if p == 0 {
			return "other"
		}
		return fmt.Sprintf("promise %d (%s)", p, check.PromiseName(p))
	}
	var head, rest []string
	var expected []int
	if e != nil {
		expected = e.Promises
	}
	for _, p := range expected {
		if count[p] > 0 {
			head = append(head, fmt.Sprintf("%s x%d", name(p), count[p]))
		}
	}
	ps := make([]int, 0, len(count))
	for p := range count {
		if !slices.Contains(expected, p) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	for _, p := range ps {
		rest = append(rest, fmt.Sprintf("%s x%d", name(p), count[p]))
	}
	out := strings.Join(head, ", ")
	if len(rest) > 0 {
		if out != "" {
			out += "; consequences: "
		}
		out += strings.Join(rest, ", ")
	}
	return out
}

// SendAckLatency returns the p50 and p99 send-to-ack latency of the
// acknowledged sends in ops (true time, from the client's first write).
func SendAckLatency(ops []check.Op) (p50, p99 time.Duration, n int) {
	var lat []int64
	for i := range ops {
		op := &ops[i]
		if op.Kind == check.KindSend && op.Returned() && !op.Unknown && op.Error == "" && op.Out.Seq > 0 {
			lat = append(lat, *op.Return-op.Call)
		}
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	at := func(q float64) time.Duration { return time.Duration(lat[int(q*float64(len(lat)-1))]) }
	return at(0.50), at(0.99), len(lat)
}

// HistoryFaults are the fault windows on the history's clock. Histories
// record client time (epoch + virtual time, clientEnv.Now) while
// the run's fault schedule is in bare virtual time: given as it is, every
// window would end before the first operation, the liveness deadline
// would never count from a heal, and a swarm run whose partition outlasted
// the bound would fail promise 9 for deliveries made right after the heal.
func (r *Result) HistoryFaults() []check.FaultWindow {
	out := r.virtualFaultWindows()
	base := epoch.UnixNano()
	for i := range out {
		out[i].Start += base
		out[i].End += base
	}
	return out
}
