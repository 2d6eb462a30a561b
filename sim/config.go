// Package sim is zzim's deterministic simulator: one goroutine, a
// (time, sequence) event heap, virtual time, and simulated network,
// database, presence, queue and registry. The services (system/entry,
// httpentry, logic, extlogic, das) and the reference client run unchanged
// through sim implementations of node.Env and client.Env, so the simulator
// cannot bypass the system: clients talk only to entry and httpentry, and
// every dependency call completes as an event after a drawn latency.
//
// A seed decides everything. Randomness comes from separate streams derived
// from the seed (workload, faults, network, dependencies, one per node
// incarnation and one per client), so removing a fault does not reshuffle
// the workload. Each run reports a hash of its event trace: same seed, same
// hash, whatever GOMAXPROCS.
package sim

import (
	"errors"
	"fmt"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
)

// Config is one simulator run. The scenario loader (scenarios/) fills it;
// zero fields take the defaults of DefaultConfig.
type Config struct {
	Seed uint64
	// Duration is how long the workload runs (virtual time).
	Duration time.Duration
	// Quiet follows Duration: every fault healed, no new traffic, then each
	// client does a final sync of every conversation (at Duration+Settle)
	// and the run ends by Duration+Quiet.
	Quiet  time.Duration
	Settle time.Duration

	// Topology is the number of slots per role.
	Topology map[node.Role]int
	// SlotsMax bounds slots per role, scale-out included.
	SlotsMax int

	Workload Workload
	// Network is the default for links between service instances;
	// ClientNetwork for client links (app ↔ entry, HTTP).
	Network       LinkOptions
	ClientNetwork LinkOptions
	Deps          DepsConfig
	Faults        []Fault
	Bugs          bugs.Set

	// Secret signs login tokens; PlatformKey guards httpentry's platform API.
	Secret      []byte
	PlatformKey string

	// Services builds the state machines; nil means DefaultServices().
	Services *Services
	// Verbose logs every node's slog output to stderr.
	Verbose bool
	// EventsMax bounds a run: past it Run stops with ErrEventsMax.
	EventsMax uint64
}

// Workload describes the simulated users and what they do.
type Workload struct {
	Users int
	// ConvsPerUser: each user is buyer in about this many conversations with
	// random sellers (so about 2x per user counting both sides).
	ConvsPerUser int
	// ClientsPerUser: devices per user (each its own client and session).
	ClientsPerUser int
	// LongPollShare: the fraction of clients that use HTTP long-poll instead of TCP.
	LongPollShare float64
	// Rate: chat messages per second overall, Poisson arrivals.
	Rate float64
	// Spikes multiply the rate over a window.
	Spikes []Spike
	// ChurnRate: per client, how often per second it goes offline;
	// OfflineMean: how long it stays away (exponential).
	ChurnRate   float64
	OfflineMean time.Duration
	// LoginStorms: at At, Share of the clients drop and reconnect at once.
	LoginStorms []LoginStorm
	// NoticeRate and BroadcastRate: platform notices (to one random user)
	// and broadcasts per second, through httpentry's platform API.
	NoticeRate    float64
	BroadcastRate float64
	// BroadcastAt: platform broadcasts at these fixed times (on top of
	// BroadcastRate's Poisson arrivals).
	BroadcastAt []time.Duration
	// BodySize is the length of generated message bodies.
	BodySize int
	// KeepUsers and KeepConvs, when non-empty, make only these users (by
	// index, "u<i>") and conversations (by index in generation order)
	// active; a conversation is active only if both its users are. The
	// workload still draws for the others and skips what they would do, so
	// removing a user or conversation shifts nothing else in the workload:
	// this is how the shrinker removes clients.
	KeepUsers []int
	KeepConvs []int
}

// Spike multiplies the send rate by Factor over [At, At+For).
type Spike struct {
	At, For time.Duration
	Factor  float64
}

// LoginStorm disconnects Share of all clients at At; they reconnect at once.
type LoginStorm struct {
	At    time.Duration
	Share float64
}

// LinkOptions shape one link, as TigerBeetle's PacketSimulatorOptions do.
type LinkOptions struct {
	// DelayMin plus an exponential with mean DelayMean.
	DelayMin  time.Duration
	DelayMean time.Duration
	// Drop and Duplicate are per-packet probabilities.
	Drop      float64
	Duplicate float64
	// Reorder: the probability that a packet takes an extra exponential
	// delay of mean ReorderMean, escaping the link's FIFO order.
	Reorder     float64
	ReorderMean time.Duration
}

// DepsConfig sets the healthy latencies of the simulated dependencies.
type DepsConfig struct {
	StoreLatencyMin  time.Duration
	StoreLatencyMean time.Duration
	// StoreTimeout: a store op slower than this completes Unknown; it may
	// still commit later (the late-commit case).
	StoreTimeout       time.Duration
	PresenceLatencyMin time.Duration
	PresenceLatency    time.Duration
	QueueLatencyMin    time.Duration
	QueueLatency       time.Duration
	RegistryLatency    time.Duration
	// ViewDelayMean: each node hears a registry change after its own delay.
	ViewDelayMean time.Duration
	// LinkDownDetect: how long a sender takes to learn that its peer is gone.
	LinkDownDetect time.Duration
	// HTTPTimeout bounds a platform API request made by the simulator.
	HTTPTimeout time.Duration
	// MaxAckPending bounds unacknowledged deliveries per queue consumer.
	MaxAckPending int
}

// Fault is one entry of the explicit fault schedule: What happens to
// Target from At for For (0: until the quiet period heals it).
type Fault struct {
	At, For time.Duration
	Kind    FaultKind
	// Target: an address ("logic-1"), a role ("logic": every slot), or for
	// partitions two groups "entry-0,logic-1|logic-0". Empty: everything
	// the kind applies to.
	Target string
	// Prob: a probability (drop, duplicate, reorder, clog, deadlock, unknown
	// commit, presence loss, queue duplication, ...).
	Prob float64
	// Delay: extra latency, clog length, skew, or view delay, by kind.
	Delay time.Duration
	// Business: das business for store slowness ("message", "contact", "unread", "system").
	Business string
}

// FaultKind names a fault.
type FaultKind string

// Fault kinds. Their Target, Prob and Delay meanings are in faults.go.
const (
	FaultCrash           FaultKind = "crash"            // Target down; restarted at the end of the window
	FaultPause           FaultKind = "pause"            // Target slow but alive: its events wait
	FaultScaleOut        FaultKind = "scale-out"        // Target role gets a new slot
	FaultScaleIn         FaultKind = "scale-in"         // Target slot leaves gracefully
	FaultSkew            FaultKind = "skew"             // Target's clock is off by Delay
	FaultPartition       FaultKind = "partition"        // symmetric between the groups of Target
	FaultPartitionOneWay FaultKind = "partition-oneway" // packets from the first group to the second are lost
	FaultIsolate         FaultKind = "isolate"          // Target cut off from every other instance
	FaultCutClients      FaultKind = "cut-clients"      // entry Target's clients disconnected, dials fail
	FaultDelay           FaultKind = "delay"            // links of Target get Delay more latency
	FaultDrop            FaultKind = "drop"             // links of Target drop with Prob
	FaultDuplicate       FaultKind = "duplicate"        // links of Target duplicate with Prob
	FaultReorder         FaultKind = "reorder"          // links of Target reorder with Prob, extra mean Delay
	FaultClog            FaultKind = "clog"             // links of Target hold every packet until the window ends
	FaultDBLatency       FaultKind = "db-latency"       // store ops Delay slower (Business: only that one)
	FaultDBUnknown       FaultKind = "db-unknown"       // store ops time out with Prob; commit decided by a coin
	FaultDBDeadlock      FaultKind = "db-deadlock"      // appends abort with ErrDeadlock with Prob
	FaultDBOutage        FaultKind = "db-outage"        // every store op fails ErrUnavailable
	FaultPresenceLost    FaultKind = "presence-lost"    // at At, each entry is lost with Prob
	FaultPresenceStale   FaultKind = "presence-stale"   // at At, each entry points at an old connection with Prob
	FaultPresenceOutage  FaultKind = "presence-outage"  // presence ops fail with ErrUnavailable
	FaultQueueDuplicate  FaultKind = "queue-duplicate"  // deliveries duplicated with Prob
	FaultQueueOutage     FaultKind = "queue-outage"     // publishes fail, nothing delivered
	FaultQueueRedeliver  FaultKind = "queue-redeliver"  // acks lost with Prob: the message comes back after AckWait
	FaultRegistryDelay   FaultKind = "registry-delay"   // views reach nodes up to Delay late, each its own delay
)

// ErrEventsMax: the run hit Config.EventsMax.
var ErrEventsMax = errors.New("sim: event limit reached")

// DefaultConfig is a small healthy run.
func DefaultConfig() Config {
	return Config{
		Seed:     1,
		Duration: 5 * time.Second,
		Quiet:    60 * time.Second,
		Settle:   20 * time.Second,
		Topology: map[node.Role]int{node.RoleEntry: 2, node.RoleHTTPEntry: 1, node.RoleLogic: 3,
			node.RoleExtLogic: 2, node.RoleDas: 2},
		SlotsMax: 8,
		Workload: Workload{Users: 20, ConvsPerUser: 1, ClientsPerUser: 1, LongPollShare: 0.2,
			Rate: 20, BodySize: 16},
		Network:       LinkOptions{DelayMin: 100 * time.Microsecond, DelayMean: 200 * time.Microsecond},
		ClientNetwork: LinkOptions{DelayMin: 5 * time.Millisecond, DelayMean: 10 * time.Millisecond},
		Deps: DepsConfig{
			StoreLatencyMin: 500 * time.Microsecond, StoreLatencyMean: time.Millisecond, StoreTimeout: time.Second,
			PresenceLatencyMin: 100 * time.Microsecond, PresenceLatency: 200 * time.Microsecond,
			QueueLatencyMin: 200 * time.Microsecond, QueueLatency: 500 * time.Microsecond,
			RegistryLatency: time.Millisecond, ViewDelayMean: 20 * time.Millisecond,
			LinkDownDetect: 2 * time.Millisecond, HTTPTimeout: 5 * time.Second, MaxAckPending: 1000,
		},
		Secret:      []byte("zzim-sim-secret"),
		PlatformKey: "zzim-sim-platform",
		EventsMax:   200_000_000,
	}
}

// Validate reports why c cannot run, without running it.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults fills zero fields from DefaultConfig and validates.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.Duration <= 0 {
		c.Duration = d.Duration
	}
	if c.Quiet <= 0 {
		c.Quiet = d.Quiet
	}
	if c.Settle <= 0 || c.Settle >= c.Quiet {
		c.Settle = c.Quiet / 3
	}
	if len(c.Topology) == 0 {
		c.Topology = d.Topology
	}
	if c.SlotsMax <= 0 {
		c.SlotsMax = d.SlotsMax
	}
	if c.Network == (LinkOptions{}) {
		c.Network = d.Network
	}
	if c.ClientNetwork == (LinkOptions{}) {
		c.ClientNetwork = d.ClientNetwork
	}
	if c.Deps == (DepsConfig{}) {
		c.Deps = d.Deps
	}
	if c.Deps.MaxAckPending <= 0 {
		c.Deps.MaxAckPending = d.Deps.MaxAckPending
	}
	if c.Deps.StoreTimeout <= 0 {
		c.Deps.StoreTimeout = d.Deps.StoreTimeout
	}
	if c.Deps.HTTPTimeout <= 0 {
		c.Deps.HTTPTimeout = d.Deps.HTTPTimeout
	}
	// A zero Workload is a run without clients (runtime tests); the
	// scenario loader starts from DefaultConfig to get the default one.
	if c.Workload.ClientsPerUser <= 0 {
		c.Workload.ClientsPerUser = 1
	}
	if c.Workload.ConvsPerUser <= 0 {
		c.Workload.ConvsPerUser = 1
	}
	if c.Workload.BodySize <= 0 {
		c.Workload.BodySize = d.Workload.BodySize
	}
	if len(c.Secret) == 0 {
		c.Secret = d.Secret
	}
	if c.PlatformKey == "" {
		c.PlatformKey = d.PlatformKey
	}
	if c.EventsMax == 0 {
		c.EventsMax = d.EventsMax
	}
	for role, n := range c.Topology {
		if n < 0 || n > c.SlotsMax {
			return c, fmt.Errorf("sim: topology %s has %d slots, want 0..%d", role, n, c.SlotsMax)
		}
	}
	if c.Topology[node.RoleDas] == 1 {
		return c, fmt.Errorf("sim: das has 1 slot, want 0 or at least 2 (two das instances must share the store)")
	}
	if c.Workload.Users > 0 && c.Workload.Users < 2 {
		return c, fmt.Errorf("sim: %d users, want at least 2 (conversations are pairs)", c.Workload.Users)
	}
	for i, f := range c.Faults {
		if err := f.validate(); err != nil {
			return c, fmt.Errorf("sim: fault %d: %w", i, err)
		}
	}
	return c, nil
}
