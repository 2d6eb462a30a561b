// Package scenarios is zzim's scenario format: one YAML file describes a run
// for the simulator (sim/) and the chaos harness (chaos/): the topology
// (slots per role), the workload, an explicit fault schedule, the checks to
// run, the exercised counters that must be non-zero, and the expected
// verdict. The library of scenarios is embedded, so `zzim sim run
// logic-failover` works anywhere.
//
// Parsing is strict: an unknown key, a value of the wrong type, an unknown
// fault kind or parameter, a target outside the topology or a fault outside
// the run is an error naming the file and line, e.g.
//
//	logic-failover.yaml:12: unknown key "fautls"
//
// Durations are Go duration strings ("30s", "2m30s"); clock-skew's skew may
// be negative. A run lasts Duration with the fault schedule, then Quiet: every
// fault is healed and the liveness check requires every queue to drain and
// every client to converge within LivenessBound.
//
// # Fault vocabulary
//
// Node faults, target a node ("logic-1") or every slot of a role ("das-*"):
//   - crash: the node stops; it restarts after For (For 0: at the heal).
//   - restart: crash and start at once (a fresh incarnation).
//   - pause: slow but alive: events wait For before being handled (params: none).
//   - clock-skew: the node's clock is off by params.skew (e.g. "-3s", "1m").
//   - scale-out: a new slot starts (target its address, e.g. "logic-3").
//   - scale-in: the slot deregisters gracefully and stops.
//
// Link faults, target "a<->b" (both directions), "a->b" (one direction) or,
// for partition mode isolate, one node; either side may be "role-*":
//   - partition (params.mode: symmetric | one-way | isolate)
//   - delay (params.latency, params.jitter: durations)
//   - drop, duplicate, reorder (params.probability: 0..1)
//   - clog: the link queues everything for For, then releases it.
//
// Faults of a dependency itself (the chaos harness kills, freezes or cuts
// off the real container; the simulator models what it can):
//   - db-crash (target db): SIGKILL of the primary database, restarted after
//     For (InnoDB crash recovery); db-pause (target db): the primary freezes.
//   - db-failover (target db; params.replication: semisync | async,
//     params.lag: the replication delay, default 200ms): the primary dies
//     and after For the replica is promoted. Asynchronous replication loses
//     what the replica had not received: acknowledged messages.
//   - nats-kill, nats-partition (target nats-0..nats-2, nats-leader: the
//     JetStream meta leader when the fault fires, or nats-follower: the
//     lowest-named node that is not): one node of the 3-node cluster dies
//     (restarted after For) or is cut off.
//   - redis-kill (target presence): Redis dies and comes back empty after For.
//
// Dependency path faults, target "db", "presence", "mq" or "registry":
//   - db-latency (params.latency, params.business), db-timeout (params.business,
//     params.commit_probability: a timed-out transaction commits with this
//     probability, so the caller cannot know), db-deadlock (params.probability,
//     params.business), db-outage.
//   - presence-loss (params.fraction of entries lost), presence-stale
//     (params.fraction of entries left pointing at a dead connection).
//   - mq-redelivery (params.probability of a delivery not acked in time),
//     mq-duplicate (params.probability), mq-outage.
//   - registry-delay (params.delay: how late views reach nodes),
//     registry-inconsistent (params.probability that one node's view is wrong).
//
// params.business is one of message, contact, unread, system.
//
// # Checks
//
// structural, linearizability, unread, liveness (see check/).
//
// # Expected failures
//
// A scenario that exists to show a failure says expect: fail and names it:
//
//	expect: fail
//	expect_violations:
//	  promises: [2, 5]        # each must be violated
//	  consequences: [1, 4, 7] # tolerated alongside them
//
// Such a run passes only when it fails for that reason alone: every listed
// promise broken, no other promise broken, and nothing else wrong (a run
// error, an exercised counter that stayed zero). See Judge.
//
// # Exercised counters
//
// A run reports these; a scenario lists the ones that must be non-zero, so a
// fault that fired but never mattered is visible:
//
//	failover_resends           requests entry resent to a new logic target
//	failbacks                  sessions moved back to their home slot
//	unknown_resolved_by_dedup  unknown append outcomes a resend resolved as Duplicate
//	redeliveries_handled       queue deliveries with NumDelivered > 1 that extlogic finished
//	pushes_to_offline          pushes that took the offline path (PushFailed, presence miss)
//	users_remapped             users served by a slot other than their home
//	overloaded_rejections      requests refused OVERLOADED by a bounded queue
//	clock_skewed_nodes         nodes that ran with a skewed clock
//	das_retries                das requests retried on another das
//	gap_fills                  client syncs that filled a seq gap
//	kicked_sessions            older sessions kicked by a newer login
//	notices_stored             platform notices appended to a system conversation
//	broadcast_pushes           broadcast push targets sent
//	longpoll_timeouts          long-polls answered empty on timeout
//	longpoll_reconnects        long-poll clients that logged in again after httpentry restarted
//	presence_misses            pushes skipped or lost because presence was lost or stale
//	membership_changes         views that changed a role's alive slots
//	partitioned_messages       internal messages a partition dropped
//	storm_reconnects           clients a login storm dropped (they log in again at once)
//	db_crash_recoveries        the primary database was restarted after a crash and answered again
//	db_failovers               the replica was promoted and das followed it
//	db_lost_acknowledged       acknowledged messages a failover lost (missing from the promoted store)
//	nats_node_restarts         a killed NATS node was started again and caught up
//	nats_leader_changes        the JetStream meta leader changed because of a fault
//	presence_lost              presence entries Redis held when it was killed
package scenarios

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed *.yaml
var library embed.FS

// Scenario is one parsed scenario file.
type Scenario struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Seed is used when the run is not given one.
	Seed     uint64   `yaml:"seed,omitempty"`
	Duration Duration `yaml:"duration"`
	// Quiet is the final heal period: no faults, traffic stops, queues drain.
	Quiet    Duration `yaml:"quiet,omitempty"`
	Topology Topology `yaml:"topology"`
	Workload Workload `yaml:"workload"`
	Faults   []Fault  `yaml:"faults,omitempty"`
	Swarm    *Swarm   `yaml:"swarm,omitempty"`
	// Bugs are bug switches (system/bugs) enabled for the run; such a
	// scenario usually expects fail.
	Bugs      []string `yaml:"bugs,omitempty"`
	Checks    []string `yaml:"checks,omitempty"`
	Exercised []string `yaml:"exercised,omitempty"`
	Expect    Verdict  `yaml:"expect,omitempty"`
	// ExpectViolations, with expect: fail, names the failure the scenario
	// exists to show: the run passes only when it fails for that reason
	// alone (see Judge).
	ExpectViolations *Expectation `yaml:"expect_violations,omitempty"`
	// LivenessBound: after the heal, every client converges within it.
	LivenessBound Duration `yaml:"liveness_bound,omitempty"`
}

// Topology is the number of configured slots per role.
type Topology struct {
	Entry     int `yaml:"entry"`
	HTTPEntry int `yaml:"httpentry,omitempty"`
	Logic     int `yaml:"logic"`
	ExtLogic  int `yaml:"extlogic,omitempty"`
	Das       int `yaml:"das"`
	// LogicSplit, when set, has one entry per logic slot naming the business
	// it serves: all, login, msg, contact, or a "+"-joined set ("login+contact").
	LogicSplit []string `yaml:"logic_split,omitempty"`
}

// Workload is the simulated clients' behaviour.
type Workload struct {
	Users         int `yaml:"users"`
	Conversations int `yaml:"conversations"`
	// Rate: chat messages per second, across all users.
	Rate float64 `yaml:"rate"`
	// LongPollShare: the fraction of users on httpentry long-poll instead of TCP.
	LongPollShare float64     `yaml:"long_poll_share,omitempty"`
	Churn         *Churn      `yaml:"churn,omitempty"`
	Spikes        []Spike     `yaml:"spikes,omitempty"`
	LoginStorm    *LoginStorm `yaml:"login_storm,omitempty"`
	Notices       *Notices    `yaml:"notices,omitempty"`
	Broadcasts    *Broadcasts `yaml:"broadcasts,omitempty"`
	// KeepUsers and KeepConversations, when non-empty, make only these
	// users (user i is "u<i>", with its clients) and conversations (by
	// index in the simulator's generation order) take part; the others are
	// still drawn, so the rest of the workload does not move. The shrinker
	// (zzim sim shrink) writes them.
	KeepUsers         []int `yaml:"keep_users,omitempty,flow"`
	KeepConversations []int `yaml:"keep_conversations,omitempty,flow"`
}

// Churn: clients disconnecting and coming back.
type Churn struct {
	// Rate: disconnects per second across all users.
	Rate float64 `yaml:"rate"`
	// Offline: how long a churned client stays away before reconnecting.
	Offline Duration `yaml:"offline,omitempty"`
}

// Spike multiplies the message rate for a while.
type Spike struct {
	At         Duration `yaml:"at"`
	For        Duration `yaml:"for"`
	Multiplier float64  `yaml:"multiplier"`
}

// LoginStorm: Clients log in at once at At.
type LoginStorm struct {
	At      Duration `yaml:"at"`
	Clients int      `yaml:"clients"`
}

// Notices: platform notices per second (through the platform API and queue).
type Notices struct {
	Rate float64 `yaml:"rate"`
}

// Broadcasts: one platform broadcast at each time.
type Broadcasts struct {
	At []Duration `yaml:"at"`
}

// Fault is one entry of the fault schedule.
type Fault struct {
	At     Duration          `yaml:"at"`
	For    Duration          `yaml:"for,omitempty"`
	What   FaultKind         `yaml:"what"`
	Target string            `yaml:"target"`
	Params map[string]string `yaml:"params,omitempty"`
}

// Swarm draws a fault mix per seed in addition to the explicit schedule.
type Swarm struct {
	// Faults: how many faults to draw.
	Faults int `yaml:"faults"`
	// Kinds to draw from; empty means every kind.
	Kinds []FaultKind `yaml:"kinds,omitempty"`
	// ForMax bounds a drawn fault's For.
	ForMax Duration `yaml:"for_max,omitempty"`
}

// Verdict is the expected outcome of a run.
type Verdict string

const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
)

func (v *Verdict) parseScalar(s string) error {
	if s != string(Pass) && s != string(Fail) {
		return fmt.Errorf("want pass or fail")
	}
	*v = Verdict(s)
	return nil
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is the shortest Go duration string: "10m", not "10m0s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

func (d *Duration) parseScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like \"30s\"")
	}
	if v < 0 {
		return fmt.Errorf("want a duration >= 0")
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Defaults applied by Parse to fields left out.
const (
	SeedDefault = 1
	// LivenessBoundDefault is used when a scenario has a quiet period but no bound.
	LivenessBoundDefault = 30 * time.Second
)

// ChecksDefault are run when a scenario names none.
var ChecksDefault = []string{"structural", "linearizability", "unread", "liveness"}

// Info names one embedded scenario.
type Info struct {
	Name        string
	Description string
}

// List returns the embedded scenarios, sorted by name.
func List() ([]Info, error) {
	names, err := fs.Glob(library, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("scenarios: %w", err)
	}
	sort.Strings(names)
	out := make([]Info, 0, len(names))
	for _, n := range names {
		s, err := Load(n)
		if err != nil {
			return nil, err
		}
		out = append(out, Info{Name: s.Name, Description: s.Description})
	}
	return out, nil
}

// Load parses an embedded scenario by name ("logic-failover" or "logic-failover.yaml").
func Load(name string) (*Scenario, error) {
	file := strings.TrimSuffix(name, ".yaml") + ".yaml"
	data, err := library.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("scenarios: no embedded scenario %q: %w", name, err)
	}
	return Parse(file, data)
}

// Marshal writes s as YAML that Parse reads back to an equal Scenario (the
// shrinker writes reduced scenarios with it).
func Marshal(s *Scenario) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("scenarios: marshal %s: %w", s.Name, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("scenarios: marshal %s: %w", s.Name, err)
	}
	return buf.Bytes(), nil
}
