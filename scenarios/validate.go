package scenarios

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/system/bugs"
)

// FaultKind names a fault; the vocabulary is in the package doc.
type FaultKind string

// Fault kinds.
const (
	Crash                FaultKind = "crash"
	Restart              FaultKind = "restart"
	Pause                FaultKind = "pause"
	ScaleOut             FaultKind = "scale-out"
	ScaleIn              FaultKind = "scale-in"
	Partition            FaultKind = "partition"
	Delay                FaultKind = "delay"
	Drop                 FaultKind = "drop"
	Duplicate            FaultKind = "duplicate"
	Reorder              FaultKind = "reorder"
	Clog                 FaultKind = "clog"
	DBLatency            FaultKind = "db-latency"
	DBTimeout            FaultKind = "db-timeout"
	DBDeadlock           FaultKind = "db-deadlock"
	DBOutage             FaultKind = "db-outage"
	PresenceLoss         FaultKind = "presence-loss"
	PresenceStale        FaultKind = "presence-stale"
	MQRedelivery         FaultKind = "mq-redelivery"
	MQDuplicate          FaultKind = "mq-duplicate"
	MQOutage             FaultKind = "mq-outage"
	RegistryDelay        FaultKind = "registry-delay"
	RegistryInconsistent FaultKind = "registry-inconsistent"
	ClockSkew            FaultKind = "clock-skew"

	// Faults of a dependency itself, not of the paths to it.
	DBCrash       FaultKind = "db-crash"       // SIGKILL of the primary database, restarted after For
	DBFailover    FaultKind = "db-failover"    // the primary dies, the replica is promoted after For
	DBPause       FaultKind = "db-pause"       // the primary freezes for For (connections stay open)
	NATSKill      FaultKind = "nats-kill"      // SIGKILL of one NATS node, restarted after For
	NATSPartition FaultKind = "nats-partition" // one NATS node cut off for For
	RedisKill     FaultKind = "redis-kill"     // Redis dies; it comes back empty after For
)

// DependencyKinds are the faults of a dependency itself.
var DependencyKinds = []FaultKind{DBCrash, DBFailover, DBPause, NATSKill, NATSPartition, RedisKill}

// Replication modes of db-failover (params.replication).
const (
	// ReplicationSemiSync: the primary acknowledges a commit once the
	// replica has it (MariaDB semi-sync, AFTER_SYNC): a failover loses
	// nothing acknowledged.
	ReplicationSemiSync = "semisync"
	// ReplicationAsync: the primary acknowledges at once; what the replica
	// had not received when the primary died is lost by the failover.
	ReplicationAsync = "async"
)

// LagDefault is db-failover's replication lag when params.lag is not given.
const LagDefault = 200 * time.Millisecond

// NATSLeader is the nats-kill / nats-partition target that resolves, when
// the fault fires, to the JetStream meta leader; NATSFollower to the
// lowest-named node that is not the leader (the cluster elects at random,
// so a fixed name may hit the leader).
const (
	NATSLeader   = "nats-leader"
	NATSFollower = "nats-follower"
)

// natsNodes is the size of the JetStream cluster the NATS faults target.
const natsNodes = 3

// Replication is a db-failover's replication mode (semisync by default).
func (f Fault) Replication() string {
	if m := f.Params["replication"]; m != "" {
		return m
	}
	return ReplicationSemiSync
}

// Lag is a db-failover's replication lag (LagDefault by default).
func (f Fault) Lag() time.Duration {
	if v, ok := f.Params["lag"]; ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return LagDefault
}

// target kinds a fault accepts.
type targetKind int

const (
	targetNode targetKind = iota + 1 // "logic-1" or "das-*"
	targetLink                       // "a<->b", "a->b" (or a node, for partition mode isolate)
	targetDB
	targetPresence
	targetMQ
	targetRegistry
	targetNATSNode // "nats-0".."nats-2", "nats-leader" or "nats-follower"
)

// paramKind is how a fault parameter's value is checked.
type paramKind int

const (
	paramDuration       paramKind = iota + 1 // >= 0
	paramSignedDuration                      // clock skew may be negative
	paramProbability                         // 0..1
	paramBusiness
	paramPartitionMode
	paramReplication
)

type faultSpec struct {
	target   targetKind
	params   map[string]paramKind
	required []string
}

var (
	probability = map[string]paramKind{"probability": paramProbability}
	business    = map[string]paramKind{"business": paramBusiness}
)

// faultSpecs is the fault vocabulary: what each kind targets and takes.
var faultSpecs = map[FaultKind]faultSpec{
	Crash:                {target: targetNode},
	Restart:              {target: targetNode},
	Pause:                {target: targetNode},
	ScaleOut:             {target: targetNode},
	ScaleIn:              {target: targetNode},
	ClockSkew:            {target: targetNode, params: map[string]paramKind{"skew": paramSignedDuration}, required: []string{"skew"}},
	Partition:            {target: targetLink, params: map[string]paramKind{"mode": paramPartitionMode}},
	Delay:                {target: targetLink, params: map[string]paramKind{"latency": paramDuration, "jitter": paramDuration}, required: []string{"latency"}},
	Drop:                 {target: targetLink, params: probability},
	Duplicate:            {target: targetLink, params: probability},
	Reorder:              {target: targetLink, params: probability},
	Clog:                 {target: targetLink},
	DBLatency:            {target: targetDB, params: map[string]paramKind{"latency": paramDuration, "business": paramBusiness}, required: []string{"latency"}},
	DBTimeout:            {target: targetDB, params: map[string]paramKind{"business": paramBusiness, "commit_probability": paramProbability, "probability": paramProbability}},
	DBDeadlock:           {target: targetDB, params: map[string]paramKind{"business": paramBusiness, "probability": paramProbability}},
	DBOutage:             {target: targetDB, params: business},
	PresenceLoss:         {target: targetPresence, params: map[string]paramKind{"fraction": paramProbability}},
	PresenceStale:        {target: targetPresence, params: map[string]paramKind{"fraction": paramProbability}},
	MQRedelivery:         {target: targetMQ, params: probability},
	MQDuplicate:          {target: targetMQ, params: probability},
	MQOutage:             {target: targetMQ},
	RegistryDelay:        {target: targetRegistry, params: map[string]paramKind{"delay": paramDuration}, required: []string{"delay"}},
	RegistryInconsistent: {target: targetRegistry, params: probability},
	DBCrash:              {target: targetDB},
	DBFailover:           {target: targetDB, params: map[string]paramKind{"replication": paramReplication, "lag": paramDuration}},
	DBPause:              {target: targetDB},
	NATSKill:             {target: targetNATSNode},
	NATSPartition:        {target: targetNATSNode},
	RedisKill:            {target: targetPresence},
}

// FaultKinds lists the vocabulary, sorted.
func FaultKinds() []FaultKind {
	out := make([]FaultKind, 0, len(faultSpecs))
	for k := range faultSpecs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (k *FaultKind) parseScalar(s string) error {
	if _, ok := faultSpecs[FaultKind(s)]; !ok {
		return fmt.Errorf("unknown fault kind (known: %s)", joinKinds(FaultKinds()))
	}
	*k = FaultKind(s)
	return nil
}

func joinKinds(ks []FaultKind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	return strings.Join(s, ", ")
}

// Vocabularies.
var (
	// Checks are the checker passes a scenario may ask for.
	Checks = []string{"structural", "linearizability", "unread", "liveness"}
	// Counters are the exercised counters a run reports (package doc).
	Counters = []string{
		"broadcast_pushes", "clock_skewed_nodes", "das_retries", "db_crash_recoveries", "db_failovers",
		"db_lost_acknowledged", "failbacks", "failover_resends",
		"gap_fills", "kicked_sessions", "longpoll_reconnects", "longpoll_timeouts",
		"membership_changes", "nats_leader_changes", "nats_node_restarts", "notices_stored",
		"overloaded_rejections", "partitioned_messages", "presence_lost", "presence_misses", "pushes_to_offline", "redeliveries_handled", "storm_reconnects",
		"unknown_resolved_by_dedup", "users_remapped",
	}
	businesses     = []string{"message", "contact", "unread", "system"}
	partitionModes = []string{"symmetric", "one-way", "isolate"}
	replications   = []string{ReplicationSemiSync, ReplicationAsync}
	logicServices  = []string{"login", "msg", "contact"}
	roles          = []string{"entry", "httpentry", "logic", "extlogic", "das"}
)

// Bounds on what a scenario may ask for: a scenario is a test, not a fleet.
const (
	slotsMax = 64
	usersMax = 10_000_000
	rateMax  = 1e6
)

func (s *Scenario) applyDefaults() {
	if s.Seed == 0 {
		s.Seed = SeedDefault
	}
	if s.Expect == "" {
		s.Expect = Pass
	}
	if len(s.Checks) == 0 {
		s.Checks = slices.Clone(ChecksDefault)
	}
	if s.Quiet > 0 && s.LivenessBound == 0 {
		s.LivenessBound = Duration(LivenessBoundDefault)
	}
}

// Validate checks a Scenario built in code (Parse already does).
func (s *Scenario) Validate() error { return s.validate(func(string) int { return 0 }) }

// validate checks everything the decoder cannot: ranges, vocabularies and
// cross-references. lineOf maps a field path to its line.
func (s *Scenario) validate(lineOf func(path string) int) error {
	bad := func(path, format string, args ...any) error {
		return &Error{File: s.Name + ".yaml", Line: lineOf(path), Msg: fmt.Sprintf(format, args...)}
	}
	if s.Name == "" {
		return bad("", "missing name")
	}
	if s.Duration <= 0 {
		return bad("duration", "duration must be > 0")
	}
	if s.Quiet > 0 && s.LivenessBound > s.Quiet {
		return bad("liveness_bound", "liveness_bound %s exceeds quiet %s", s.LivenessBound, s.Quiet)
	}
	checks := []func() error{
		func() error { return s.Topology.validate(bad) },
		func() error { return s.Workload.validate(s.Duration, bad) },
		func() error { return s.validateFaults(bad) },
		func() error { return s.validateLists(bad) },
	}
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

type badFunc func(path, format string, args ...any) error

func (t *Topology) validate(bad badFunc) error {
	counts := []struct {
		key string
		n   int
		min int
	}{{"entry", t.Entry, 0}, {"httpentry", t.HTTPEntry, 0}, {"logic", t.Logic, 1}, {"extlogic", t.ExtLogic, 0}, {"das", t.Das, 1}}
	for _, c := range counts {
		if c.n < c.min || c.n > slotsMax {
			return bad("topology."+c.key, "topology.%s = %d, want %d..%d", c.key, c.n, c.min, slotsMax)
		}
	}
	if t.Entry+t.HTTPEntry == 0 {
		return bad("topology", "topology needs at least one entry or httpentry")
	}
	if t.LogicSplit == nil {
		return nil
	}
	if len(t.LogicSplit) != t.Logic {
		return bad("topology.logic_split", "logic_split has %d entries, want one per logic slot (%d)", len(t.LogicSplit), t.Logic)
	}
	served := map[string]bool{}
	for i, set := range t.LogicSplit {
		for _, svc := range strings.Split(set, "+") {
			switch {
			case svc == "all":
				served["login"], served["msg"], served["contact"] = true, true, true
			case slices.Contains(logicServices, svc):
				served[svc] = true
			default:
				return bad(fmt.Sprintf("topology.logic_split[%d]", i), "bad value %q in logic_split: want all, login, msg, contact or a + of them", set)
			}
		}
	}
	for _, svc := range logicServices {
		if !served[svc] {
			return bad("topology.logic_split", "no logic slot serves %s", svc)
		}
	}
	return nil
}

func (w *Workload) validate(dur Duration, bad badFunc) error {
	switch {
	case w.Users < 2 || w.Users > usersMax:
		return bad("workload.users", "workload.users = %d, want 2..%d", w.Users, usersMax)
	case w.Conversations < 0 || w.Conversations > usersMax:
		return bad("workload.conversations", "workload.conversations = %d, want 0..%d", w.Conversations, usersMax)
	case w.Rate < 0 || w.Rate > rateMax:
		return bad("workload.rate", "workload.rate = %g, want 0..%g", w.Rate, rateMax)
	case w.LongPollShare < 0 || w.LongPollShare > 1:
		return bad("workload.long_poll_share", "workload.long_poll_share = %g, want 0..1", w.LongPollShare)
	}
	if c := w.Churn; c != nil && (c.Rate < 0 || c.Rate > rateMax) {
		return bad("workload.churn.rate", "workload.churn.rate = %g, want 0..%g", c.Rate, rateMax)
	}
	for i, sp := range w.Spikes {
		p := fmt.Sprintf("workload.spikes[%d]", i)
		if sp.Multiplier <= 0 || sp.Multiplier > 1000 {
			return bad(p+".multiplier", "spike multiplier %g, want > 0 and <= 1000", sp.Multiplier)
		}
		if sp.For <= 0 || sp.At+sp.For > dur {
			return bad(p, "spike [%s, +%s] must have for > 0 and end within duration %s", sp.At, sp.For, dur)
		}
	}
	if ls := w.LoginStorm; ls != nil {
		if ls.Clients < 1 || ls.Clients > w.Users {
			return bad("workload.login_storm.clients", "login_storm.clients = %d, want 1..users (%d)", ls.Clients, w.Users)
		}
		if ls.At >= dur {
			return bad("workload.login_storm.at", "login_storm.at %s is not within duration %s", ls.At, dur)
		}
	}
	if n := w.Notices; n != nil && (n.Rate < 0 || n.Rate > rateMax) {
		return bad("workload.notices.rate", "notices.rate = %g, want 0..%g", n.Rate, rateMax)
	}
	if b := w.Broadcasts; b != nil {
		for i, at := range b.At {
			if at >= dur {
				return bad(fmt.Sprintf("workload.broadcasts.at[%d]", i), "broadcast at %s is not within duration %s", at, dur)
			}
		}
	}
	if err := validateKeep("workload.keep_users", w.KeepUsers, w.Users, bad); err != nil {
		return err
	}
	return validateKeep("workload.keep_conversations", w.KeepConversations, usersMax, bad)
}

// validateKeep: indices distinct and in 0..n-1.
func validateKeep(path string, keep []int, n int, bad badFunc) error {
	seen := map[int]bool{}
	for i, k := range keep {
		p := fmt.Sprintf("%s[%d]", path, i)
		if k < 0 || k >= n {
			return bad(p, "%s index %d, want 0..%d", path, k, n-1)
		}
		if seen[k] {
			return bad(p, "%s index %d listed twice", path, k)
		}
		seen[k] = true
	}
	return nil
}

func (s *Scenario) validateLists(bad badFunc) error {
	for i, c := range s.Checks {
		if !slices.Contains(Checks, c) {
			return bad(fmt.Sprintf("checks[%d]", i), "unknown check %q (known: %s)", c, strings.Join(Checks, ", "))
		}
	}
	for i, c := range s.Exercised {
		if !slices.Contains(Counters, c) {
			return bad(fmt.Sprintf("exercised[%d]", i), "unknown counter %q (known: %s)", c, strings.Join(Counters, ", "))
		}
	}
	if _, err := bugs.Parse(strings.Join(s.Bugs, ",")); err != nil {
		return bad("bugs", "%v", err)
	}
	if err := s.validateExpectation(bad); err != nil {
		return err
	}
	if sw := s.Swarm; sw != nil {
		if sw.Faults < 0 || sw.Faults > sequenceMax {
			return bad("swarm.faults", "swarm.faults = %d, want 0..%d", sw.Faults, sequenceMax)
		}
	}
	return nil
}

func (s *Scenario) validateFaults(bad badFunc) error {
	scaleOuts := map[string]int{} // role → scale-out faults, which may name slots past the topology
	for _, f := range s.Faults {
		if f.What == ScaleOut {
			if r, _, ok := strings.Cut(f.Target, "-"); ok {
				scaleOuts[r]++
			}
		}
	}
	for i, f := range s.Faults {
		p := fmt.Sprintf("faults[%d]", i)
		if f.At >= s.Duration || f.At+f.For > s.Duration {
			return bad(p, "fault %s at %s for %s does not fit in duration %s", f.What, f.At, f.For, s.Duration)
		}
		spec, ok := faultSpecs[f.What]
		if !ok {
			return bad(p+".what", "unknown fault kind %q", f.What)
		}
		if err := s.validateTarget(f, spec, scaleOuts); err != nil {
			return bad(p+".target", "%s: %v", f.What, err)
		}
		if err := validateParams(f, spec, p, bad); err != nil {
			return err
		}
	}
	return nil
}

func validateParams(f Fault, spec faultSpec, path string, bad badFunc) error {
	keys := make([]string, 0, len(f.Params))
	for k := range f.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error reported must not depend on map order
	for _, k := range keys {
		kind, ok := spec.params[k]
		if !ok {
			return bad(path+".params."+k, "unknown param %q for %s", k, f.What)
		}
		if err := checkParam(kind, f.Params[k]); err != nil {
			return bad(path+".params."+k, "bad value %q for param %s: %v", f.Params[k], k, err)
		}
	}
	for _, k := range spec.required {
		if _, ok := f.Params[k]; !ok {
			return bad(path, "%s needs param %s", f.What, k)
		}
	}
	return nil
}

func checkParam(kind paramKind, v string) error {
	switch kind {
	case paramDuration, paramSignedDuration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration like \"30s\"")
		}
		if d < 0 && kind == paramDuration {
			return fmt.Errorf("want a duration >= 0")
		}
	case paramProbability:
		p, err := strconv.ParseFloat(v, 64)
		if err != nil || !(p >= 0 && p <= 1) {
			return fmt.Errorf("want a number in 0..1")
		}
	case paramBusiness:
		if !slices.Contains(businesses, v) {
			return fmt.Errorf("want one of %s", strings.Join(businesses, ", "))
		}
	case paramPartitionMode:
		if !slices.Contains(partitionModes, v) {
			return fmt.Errorf("want one of %s", strings.Join(partitionModes, ", "))
		}
	case paramReplication:
		if !slices.Contains(replications, v) {
			return fmt.Errorf("want one of %s", strings.Join(replications, ", "))
		}
	}
	return nil
}

func (s *Scenario) validateTarget(f Fault, spec faultSpec, scaleOuts map[string]int) error {
	want := map[targetKind]string{targetDB: "db", targetPresence: "presence", targetMQ: "mq", targetRegistry: "registry"}
	switch spec.target {
	case targetNode:
		return s.validateNode(f.Target, scaleOuts)
	case targetLink:
		if f.Params["mode"] == "isolate" {
			return s.validateNode(f.Target, scaleOuts)
		}
		a, b, ok := strings.Cut(f.Target, "<->")
		if !ok {
			a, b, ok = strings.Cut(f.Target, "->")
		}
		if !ok {
			return fmt.Errorf("target %q: want a link \"a<->b\" or \"a->b\"", f.Target)
		}
		if f.Params["mode"] == "one-way" && strings.Contains(f.Target, "<->") {
			return fmt.Errorf("target %q: a one-way partition names a direction \"a->b\"", f.Target)
		}
		if err := s.validateNode(a, scaleOuts); err != nil {
			return err
		}
		return s.validateNode(b, scaleOuts)
	case targetNATSNode:
		return validateNATSNode(f.Target)
	}
	if f.Target != want[spec.target] {
		return fmt.Errorf("target %q: want %q", f.Target, want[spec.target])
	}
	return nil
}

// validateNATSNode checks "nats-K" (K < natsNodes) or "nats-leader".
func validateNATSNode(t string) error {
	if t == NATSLeader || t == NATSFollower {
		return nil
	}
	if k, err := strconv.Atoi(strings.TrimPrefix(t, "nats-")); err == nil && strings.HasPrefix(t, "nats-") && k >= 0 && k < natsNodes {
		return nil
	}
	return fmt.Errorf("target %q: want nats-0..nats-%d, %s or %s", t, natsNodes-1, NATSLeader, NATSFollower)
}

// validateNode checks "role-slot" or "role-*" against the topology.
func (s *Scenario) validateNode(t string, scaleOuts map[string]int) error {
	i := strings.LastIndexByte(t, '-')
	if i <= 0 {
		return fmt.Errorf("target %q: want role-slot or role-*", t)
	}
	role, slot := t[:i], t[i+1:]
	if !slices.Contains(roles, role) {
		return fmt.Errorf("target %q: unknown role %q (known: %s)", t, role, strings.Join(roles, ", "))
	}
	n := s.Topology.slots(role)
	if slot == "*" {
		if n == 0 {
			return fmt.Errorf("target %q: the topology has no %s", t, role)
		}
		return nil
	}
	k, err := strconv.Atoi(slot)
	if err != nil || k < 0 {
		return fmt.Errorf("target %q: bad slot %q", t, slot)
	}
	if k >= n+scaleOuts[role] {
		return fmt.Errorf("target %q: the topology has %d %s slots (plus %d scaled out)", t, n, role, scaleOuts[role])
	}
	return nil
}

func (t Topology) slots(role string) int {
	switch role {
	case "entry":
		return t.Entry
	case "httpentry":
		return t.HTTPEntry
	case "logic":
		return t.Logic
	case "extlogic":
		return t.ExtLogic
	case "das":
		return t.Das
	}
	return 0
}
