package sim

import (
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/node"
)

// Swarm mode (TigerBeetle's VOPR): each seed draws its own fault mix, which
// faults, how many, when, for how long, on which targets and with what
// probabilities, from a stream derived from the fault stream alone, so the
// workload is the same as without the swarm. The quiet period that follows
// the traffic heals everything; the liveness check then requires every
// client to converge within the scenario's bound.

// streamSwarm is the fault stream's child the swarm draws from.
const streamSwarm = streamFaults + "/swarm"

// Swarm bounds.
const (
	// swarmFaultsMax bounds the faults one seed draws when the scenario
	// does not say how many.
	swarmFaultsMax = 8
	// swarmProbMax bounds drawn probabilities: beyond it a link or a
	// dependency is an outage, which the outage kinds already draw.
	swarmProbMax = 0.5
	// swarmSkewMax bounds a drawn clock skew (either sign).
	swarmSkewMax = time.Minute
	// swarmWindowShare: faults start in the first this share of the traffic
	// period, so each has traffic to hurt.
	swarmWindowShare = 0.8
)

// SwarmSpec says what a swarm may draw.
type SwarmSpec struct {
	// Faults: exactly this many faults; 0 draws 1..swarmFaultsMax.
	Faults int
	// Kinds to draw from; empty means every kind in swarmKinds.
	Kinds []FaultKind
	// ForMax bounds a fault's window; 0 means a quarter of the traffic period.
	ForMax time.Duration
}

// swarmKinds is every fault kind a swarm draws. scale-in is drawn only for
// roles that keep a slot afterwards.
var swarmKinds = []FaultKind{
	FaultCrash, FaultPause, FaultScaleOut, FaultScaleIn, FaultSkew,
	FaultPartition, FaultPartitionOneWay, FaultIsolate, FaultCutClients,
	FaultDelay, FaultDrop, FaultDuplicate, FaultReorder, FaultClog,
	FaultDBLatency, FaultDBUnknown, FaultDBDeadlock, FaultDBOutage,
	FaultPresenceLost, FaultPresenceStale, FaultPresenceOutage,
	FaultQueueDuplicate, FaultQueueOutage, FaultQueueRedeliver, FaultRegistryDelay,
}

// swarmSpecOf reads a scenario's swarm section, mapping its kinds to the
// sim's (a kind without a mapping is left out).
func swarmSpecOf(sc *scenarios.Scenario) SwarmSpec {
	if sc.Swarm == nil {
		return SwarmSpec{}
	}
	spec := SwarmSpec{Faults: sc.Swarm.Faults, ForMax: sc.Swarm.ForMax.D()}
	for _, k := range sc.Swarm.Kinds {
		if mapped, ok := scenarioKinds[k]; ok {
			spec.Kinds = append(spec.Kinds, mapped)
		}
	}
	return spec
}

// scenarioKinds maps the scenario vocabulary to the closest sim kind.
var scenarioKinds = map[scenarios.FaultKind]FaultKind{
	scenarios.Crash: FaultCrash, scenarios.Restart: FaultCrash, scenarios.Pause: FaultPause,
	scenarios.ScaleOut: FaultScaleOut, scenarios.ScaleIn: FaultScaleIn, scenarios.ClockSkew: FaultSkew,
	scenarios.Partition: FaultPartition, scenarios.Delay: FaultDelay, scenarios.Drop: FaultDrop,
	scenarios.Duplicate: FaultDuplicate, scenarios.Reorder: FaultReorder, scenarios.Clog: FaultClog,
	scenarios.DBLatency: FaultDBLatency, scenarios.DBTimeout: FaultDBUnknown, scenarios.DBDeadlock: FaultDBDeadlock,
	scenarios.DBOutage: FaultDBOutage, scenarios.PresenceLoss: FaultPresenceLost,
	scenarios.PresenceStale: FaultPresenceStale, scenarios.MQRedelivery: FaultQueueRedeliver,
	scenarios.MQDuplicate: FaultQueueDuplicate, scenarios.MQOutage: FaultQueueOutage,
	scenarios.RegistryDelay: FaultRegistryDelay, scenarios.RegistryInconsistent: FaultRegistryDelay,
}

// swarmDrawer draws one seed's faults against a topology.
type swarmDrawer struct {
	r      *rand.Rand
	cfg    *Config
	forMax time.Duration
	// slots: the current slot count per role as drawn scale-outs and
	// scale-ins change it (so a scale-in never empties a role).
	slots map[node.Role]int
}

// DrawSwarm draws seed's fault mix for cfg's topology and traffic period.
func DrawSwarm(seed uint64, cfg Config, spec SwarmSpec) []Fault {
	d := &swarmDrawer{r: newStream(seed, streamSwarm), cfg: &cfg, forMax: spec.ForMax, slots: map[node.Role]int{}}
	if d.forMax <= 0 {
		d.forMax = cfg.Duration / 4
	}
	for r, n := range cfg.Topology {
		d.slots[r] = n
	}
	kinds := spec.Kinds
	if len(kinds) == 0 {
		kinds = swarmKinds
	}
	n := spec.Faults
	if n <= 0 {
		n = 1 + d.r.IntN(swarmFaultsMax)
	}
	var out []Fault
	for len(out) < n {
		f, ok := d.draw(kinds[d.r.IntN(len(kinds))])
		if !ok {
			continue // no target fits this kind: draw another
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// draw fills one fault of kind k; ok is false when the topology has no target for it.
func (d *swarmDrawer) draw(k FaultKind) (Fault, bool) {
	window := time.Duration(float64(d.cfg.Duration) * swarmWindowShare)
	f := Fault{Kind: k, At: time.Duration(d.r.Int64N(int64(window) + 1))}
	f.For = time.Duration(d.r.Int64N(int64(d.forMax)) + 1)
	if f.At+f.For > d.cfg.Duration {
		f.For = d.cfg.Duration - f.At
	}
	var ok = true
	switch k {
	case FaultCrash, FaultPause, FaultIsolate:
		f.Target, ok = d.anySlot(nil)
	case FaultSkew:
		f.Target, ok = d.anySlot(nil)
		f.Delay = time.Duration(d.r.Int64N(int64(2*swarmSkewMax))) - swarmSkewMax
	case FaultCutClients:
		f.Target, ok = d.anySlot([]node.Role{node.RoleEntry})
	case FaultScaleOut:
		f.Target, ok = d.scaleOut()
		f.For = 0
	case FaultScaleIn:
		f.Target, ok = d.scaleIn()
		f.For = 0
	case FaultPartition, FaultPartitionOneWay:
		f.Target, ok = d.groups()
	case FaultDelay:
		f.Target, ok = d.anySlot(nil)
		f.Delay = time.Duration(d.r.Int64N(int64(500*time.Millisecond))) + time.Millisecond
	case FaultDrop, FaultDuplicate, FaultReorder:
		f.Target, ok = d.anySlot(nil)
		f.Prob = d.prob()
		if k == FaultReorder {
			f.Delay = time.Duration(d.r.Int64N(int64(50*time.Millisecond))) + time.Millisecond
		}
	case FaultClog:
		f.Target, ok = d.anySlot(nil)
		f.For = min(f.For, 5*time.Second)
	case FaultDBLatency:
		f.Delay = time.Duration(d.r.Int64N(int64(2*time.Second))) + time.Millisecond
		if d.r.IntN(2) == 0 {
			f.Business = businesses[d.r.IntN(len(businesses))]
		}
	case FaultDBUnknown, FaultDBDeadlock, FaultQueueDuplicate, FaultQueueRedeliver,
		FaultPresenceLost, FaultPresenceStale:
		f.Prob = d.prob()
	case FaultRegistryDelay:
		f.Delay = time.Duration(d.r.Int64N(int64(10*time.Second))) + time.Millisecond
	}
	return f, ok && f.validate() == nil
}

func (d *swarmDrawer) prob() float64 {
	// Two decimals, so the printed mix is the mix.
	return float64(1+d.r.IntN(int(swarmProbMax*100))) / 100
}

// anySlot picks a live slot of one of roles (nil: any role).
func (d *swarmDrawer) anySlot(roles []node.Role) (string, bool) {
	if roles == nil {
		roles = node.Roles
	}
	var addrs []string
	for _, r := range roles {
		for s := 0; s < d.slots[r]; s++ {
			addrs = append(addrs, node.Addr{Role: r, Slot: s}.String())
		}
	}
	if len(addrs) == 0 {
		return "", false
	}
	return addrs[d.r.IntN(len(addrs))], true
}

// scaleOut adds a slot to logic, extlogic or das (entries are in the
// clients' address lists, so a new entry would never be used).
func (d *swarmDrawer) scaleOut() (string, bool) {
	r := []node.Role{node.RoleLogic, node.RoleExtLogic, node.RoleDas}[d.r.IntN(3)]
	if d.slots[r] == 0 || d.slots[r]+1 >= d.cfg.SlotsMax {
		return "", false
	}
	a := node.Addr{Role: r, Slot: d.slots[r]}
	d.slots[r]++
	return a.String(), true
}

// scaleIn removes the highest slot of logic or extlogic, keeping at least
// one (das keeps its two: two instances must share the store).
func (d *swarmDrawer) scaleIn() (string, bool) {
	r := []node.Role{node.RoleLogic, node.RoleExtLogic}[d.r.IntN(2)]
	if d.slots[r] < 2 {
		return "", false
	}
	d.slots[r]--
	return node.Addr{Role: r, Slot: d.slots[r]}.String(), true
}

// groups splits a random subset of instances into two sides "a,b|c".
func (d *swarmDrawer) groups() (string, bool) {
	var all []string
	for _, r := range node.Roles {
		for s := 0; s < d.cfg.Topology[r]; s++ {
			all = append(all, node.Addr{Role: r, Slot: s}.String())
		}
	}
	if len(all) < 2 {
		return "", false
	}
	d.r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	n := 2 + d.r.IntN(len(all)-1)
	cut := 1 + d.r.IntN(n-1)
	return strings.Join(all[:cut], ",") + "|" + strings.Join(all[cut:n], ","), true
}

// DescribeFaults renders a fault list on one line:
// "crash logic-1@12s for 3s, drop entry-0 p=0.12@20s for 5s".
func DescribeFaults(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		var b strings.Builder
		b.WriteString(string(f.Kind))
		if f.Target != "" {
			b.WriteString(" " + f.Target)
		}
		if f.Business != "" {
			b.WriteString(" business=" + f.Business)
		}
		if f.Prob > 0 {
			b.WriteString(" p=" + strconv.FormatFloat(f.Prob, 'g', 3, 64))
		}
		if f.Delay != 0 {
			b.WriteString(" d=" + f.Delay.Round(time.Millisecond).String())
		}
		b.WriteString("@" + f.At.Round(time.Millisecond).String())
		if f.For > 0 {
			b.WriteString(" for " + f.For.Round(time.Millisecond).String())
		}
		parts[i] = b.String()
	}
	if len(parts) == 0 {
		return "no faults"
	}
	return strings.Join(parts, ", ")
}
