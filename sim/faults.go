package sim

import (
	"fmt"
	"sort"
	"strings"

	"github.com/zzim/zzim/system/node"
)

// FaultWindow is when a fault was in force, for reports and porcupine
// annotations. Times are virtual ns since the start of the run.
type FaultWindow struct {
	Kind   FaultKind
	Target string
	Start  int64
	End    int64
}

var faultKinds = map[FaultKind]bool{
	FaultCrash: true, FaultPause: true, FaultScaleOut: true, FaultScaleIn: true, FaultSkew: true,
	FaultPartition: true, FaultPartitionOneWay: true, FaultIsolate: true, FaultCutClients: true,
	FaultDelay: true, FaultDrop: true, FaultDuplicate: true, FaultReorder: true, FaultClog: true,
	FaultDBLatency: true, FaultDBUnknown: true, FaultDBDeadlock: true, FaultDBOutage: true,
	FaultPresenceLost: true, FaultPresenceStale: true, FaultPresenceOutage: true,
	FaultQueueDuplicate: true, FaultQueueOutage: true, FaultQueueRedeliver: true, FaultRegistryDelay: true,
	FaultDBCrash: true, FaultDBPause: true, FaultDBFailover: true, FaultDBFailoverAsync: true,
	FaultNATSKill: true, FaultNATSPartition: true, FaultRedisKill: true,
}

// FaultKinds lists every fault kind, sorted, for scenario validation and help.
func FaultKinds() []FaultKind {
	out := make([]FaultKind, 0, len(faultKinds))
	for k := range faultKinds {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (f Fault) validate() error {
	if !faultKinds[f.Kind] {
		return fmt.Errorf("unknown fault kind %q", f.Kind)
	}
	if f.At < 0 || f.For < 0 {
		return fmt.Errorf("%s: negative at (%v) or for (%v)", f.Kind, f.At, f.For)
	}
	if f.Prob < 0 || f.Prob > 1 {
		return fmt.Errorf("%s: prob %v not in [0, 1]", f.Kind, f.Prob)
	}
	if f.Business != "" {
		known := false
		for _, b := range businesses {
			known = known || b == f.Business
		}
		if !known {
			return fmt.Errorf("%s: unknown business %q", f.Kind, f.Business)
		}
	}
	switch f.Kind {
	case FaultPartition, FaultPartitionOneWay:
		if strings.Count(f.Target, "|") != 1 {
			return fmt.Errorf("%s: target %q, want two groups \"a,b|c\"", f.Kind, f.Target)
		}
	case FaultCrash, FaultPause, FaultScaleIn, FaultSkew, FaultIsolate, FaultCutClients, FaultScaleOut:
		if f.Target == "" {
			return fmt.Errorf("%s: needs a target", f.Kind)
		}
	case FaultNATSKill, FaultNATSPartition:
		if err := validNATSTarget(f.Target); err != nil {
			return fmt.Errorf("%s: %w", f.Kind, err)
		}
	case FaultDBFailover, FaultDBFailoverAsync:
		if f.Delay < 0 {
			return fmt.Errorf("%s: negative replication lag %v", f.Kind, f.Delay)
		}
	}
	return nil
}

// isFailover tells the two db-failover kinds.
func isFailover(k FaultKind) bool { return k == FaultDBFailover || k == FaultDBFailoverAsync }

// faultState tracks the schedule and the aggregate effect of active faults.
type faultState struct {
	s       *sim
	list    []Fault
	active  []bool
	started []int64
	// instances each fault applied to when it started (partitions: group a then b).
	applied [][]int32
	groupB  [][]int32
	windows []FaultWindow

	// Aggregates, recomputed whenever a fault starts or ends.
	netBy       []netFault
	cut         []int16
	dbExtraBy   map[string]int64
	dbUnknownP  float64
	dbDeadlockP float64
	dbDown      int
	presDown    int
	queueDown   int
	queueDupP   float64
	lostAckP    float64
	viewDelay   int64

	// nats is the JetStream cluster (runs with a NATS fault only).
	nats *simNATS
}

func newFaultState(s *sim) (*faultState, error) {
	f := &faultState{s: s, list: s.cfg.Faults, dbExtraBy: map[string]int64{}}
	n := len(f.list)
	f.active, f.started = make([]bool, n), make([]int64, n)
	f.applied, f.groupB = make([][]int32, n), make([][]int32, n)
	if err := f.setupDeps(); err != nil {
		return nil, err
	}
	for i, flt := range f.list {
		if flt.At >= s.cfg.Duration {
			continue // the quiet period has no faults
		}
		s.schedule(int64(flt.At), event{kind: evFault, a: uint64(i)})
		if flt.For > 0 {
			s.schedule(int64(flt.At+flt.For), event{kind: evFault, a: uint64(i), b: 1})
		}
	}
	return f, nil
}

// resolve turns a target ("logic-1", "logic", "a,b", "") into instances.
func (f *faultState) resolve(target string) []int32 {
	s := f.s
	var out []int32
	if target == "" {
		for _, in := range s.instances {
			out = append(out, in.idx)
		}
		return out
	}
	for _, part := range strings.Split(target, ",") {
		part = strings.TrimSpace(part)
		if a, err := node.ParseAddr(part); err == nil {
			if idx, ok := s.byAddr[a]; ok {
				out = append(out, idx)
			}
			continue
		}
		for _, in := range s.instances {
			if string(in.addr.Role) == part {
				out = append(out, in.idx)
			}
		}
	}
	return out
}

// apply starts (end=false) or ends fault i.
func (f *faultState) apply(i int, end bool) {
	if i >= len(f.list) {
		// Past the schedule: the end of a NATS election (deps_nats.go).
		if n := f.nats; n != nil {
			was := n.unavailable()
			if n.elected(uint64(i - len(f.list))) {
				f.natsChange(was)
			}
		}
		return
	}
	if end {
		f.stop(i)
		return
	}
	if f.active[i] || f.s.phase != phaseTraffic {
		return
	}
	f.active[i] = true
	f.started[i] = f.s.now
	f.s.obs.faultsStarted++
	flt := f.list[i]
	s := f.s
	switch flt.Kind {
	case FaultPartition, FaultPartitionOneWay:
		groups := strings.SplitN(flt.Target, "|", 2)
		f.applied[i], f.groupB[i] = f.resolve(groups[0]), f.resolve(groups[1])
		s.block(f.applied[i], f.groupB[i], flt.Kind == FaultPartitionOneWay, 1)
	case FaultIsolate:
		f.applied[i] = f.resolve(flt.Target)
		f.groupB[i] = f.others(f.applied[i])
		s.block(f.applied[i], f.groupB[i], false, 1)
	default:
		f.applied[i] = f.resolve(flt.Target)
	}
	f.startEffect(i, flt)
	f.recompute()
}

func (f *faultState) startEffect(i int, flt Fault) {
	s := f.s
	switch flt.Kind {
	case FaultCrash:
		for _, idx := range f.applied[i] {
			s.crash(s.instances[idx])
		}
	case FaultPause:
		until := s.now + int64(flt.For)
		if flt.For == 0 {
			until = int64(s.cfg.Duration)
		}
		for _, idx := range f.applied[i] {
			s.instances[idx].pausedUntil = until
		}
	case FaultSkew:
		for _, idx := range f.applied[i] {
			s.instances[idx].skew = int64(flt.Delay)
		}
	case FaultCutClients:
		for _, idx := range f.applied[i] {
			s.disconnectAll(idx, true)
		}
	case FaultScaleOut:
		s.scaleOut(node.Role(strings.SplitN(flt.Target, "-", 2)[0]))
	case FaultScaleIn:
		for _, idx := range f.applied[i] {
			s.scaleIn(s.instances[idx])
		}
	case FaultPresenceLost:
		s.presence.lose(probOr(flt.Prob, 1))
	case FaultPresenceStale:
		s.presence.stale(probOr(flt.Prob, 1))
	case FaultRedisKill:
		s.presence.kill()
	case FaultDBCrash:
		s.store.dbDie(false)
	case FaultDBFailover, FaultDBFailoverAsync:
		s.store.dbDie(true)
	case FaultDBPause:
		until := s.now + int64(flt.For)
		if flt.For == 0 {
			until = int64(s.cfg.Duration)
		}
		s.store.pauseUntil = max(s.store.pauseUntil, until)
	case FaultNATSKill, FaultNATSPartition:
		was := f.nats.unavailable()
		f.nats.lose(i, flt.Target)
		f.natsChange(was)
	}
}

func probOr(p, def float64) float64 {
	if p == 0 {
		return def
	}
	return p
}

// stop ends fault i and undoes what it did.
func (f *faultState) stop(i int) {
	if !f.active[i] {
		return
	}
	f.active[i] = false
	s := f.s
	flt := f.list[i]
	f.windows = append(f.windows, FaultWindow{Kind: flt.Kind, Target: flt.Target, Start: f.started[i], End: s.now})
	switch flt.Kind {
	case FaultPartition, FaultPartitionOneWay:
		s.block(f.applied[i], f.groupB[i], flt.Kind == FaultPartitionOneWay, -1)
	case FaultIsolate:
		s.block(f.applied[i], f.groupB[i], false, -1)
	case FaultCrash:
		for _, idx := range f.applied[i] {
			if !s.instances[idx].retired {
				s.restart(s.instances[idx])
			}
		}
	case FaultPause:
		for _, idx := range f.applied[i] {
			s.instances[idx].pausedUntil = min(s.instances[idx].pausedUntil, s.now)
		}
	case FaultSkew:
		for _, idx := range f.applied[i] {
			s.instances[idx].skew = 0
		}
	case FaultDBCrash:
		s.store.dbRecover(false)
	case FaultDBFailover, FaultDBFailoverAsync:
		s.store.dbRecover(true)
	case FaultDBPause:
		s.store.pauseUntil = min(s.store.pauseUntil, s.now)
	case FaultNATSKill, FaultNATSPartition:
		was := f.nats.unavailable()
		f.nats.back(i, flt.Kind == FaultNATSKill)
		f.natsChange(was)
	}
	f.recompute()
	if flt.Kind == FaultQueueOutage {
		s.queue.wakeAll()
	}
}

func (f *faultState) others(group []int32) []int32 {
	in := map[int32]bool{}
	for _, x := range group {
		in[x] = true
	}
	var out []int32
	for _, inst := range f.s.instances {
		if !in[inst.idx] {
			out = append(out, inst.idx)
		}
	}
	return out
}

// healAll ends every fault and restarts every crashed instance that was
// not scaled in: the quiet period starts healthy.
func (f *faultState) healAll() {
	for i := range f.list {
		f.stop(i)
	}
	for _, in := range f.s.instances {
		in.pausedUntil = min(in.pausedUntil, f.s.now)
		if !in.up && !in.retired {
			f.s.restart(in)
		}
	}
}

// recompute rebuilds the aggregates from the active faults.
func (f *faultState) recompute() {
	s := f.s
	n := len(s.instances)
	f.netBy = make([]netFault, n)
	f.cut = make([]int16, n)
	clear(f.dbExtraBy)
	f.dbUnknownP, f.dbDeadlockP, f.dbDown, f.presDown, f.queueDown = 0, 0, 0, 0, 0
	f.queueDupP, f.lostAckP, f.viewDelay = 0, 0, 0
	for i, flt := range f.list {
		if !f.active[i] {
			continue
		}
		for _, idx := range f.applied[i] {
			nf := &f.netBy[idx]
			switch flt.Kind {
			case FaultDelay:
				nf.delay += int64(flt.Delay)
			case FaultDrop:
				nf.drop += flt.Prob
			case FaultDuplicate:
				nf.dup += flt.Prob
			case FaultReorder:
				nf.reorder += probOr(flt.Prob, 0.5)
				nf.reorderMean = max(nf.reorderMean, int64(flt.Delay))
			case FaultClog:
				end := f.started[i] + int64(flt.For)
				if flt.For == 0 {
					end = int64(s.cfg.Duration)
				}
				nf.clogUntil = max(nf.clogUntil, end)
			case FaultCutClients:
				f.cut[idx]++
			}
		}
		switch flt.Kind {
		case FaultDBLatency:
			if flt.Business == "" {
				for _, b := range businesses {
					f.dbExtraBy[b] += int64(flt.Delay)
				}
			} else {
				f.dbExtraBy[flt.Business] += int64(flt.Delay)
			}
		case FaultDBUnknown:
			f.dbUnknownP += probOr(flt.Prob, 1)
		case FaultDBDeadlock:
			f.dbDeadlockP += probOr(flt.Prob, 1)
		case FaultDBOutage:
			f.dbDown++
		case FaultPresenceOutage, FaultRedisKill:
			f.presDown++
		case FaultQueueOutage:
			f.queueDown++
		case FaultQueueDuplicate:
			f.queueDupP += probOr(flt.Prob, 1)
		case FaultQueueRedeliver:
			f.lostAckP += probOr(flt.Prob, 1)
		case FaultRegistryDelay:
			f.viewDelay = max(f.viewDelay, int64(flt.Delay))
		}
	}
	if f.nats != nil && f.nats.unavailable() {
		f.queueDown++
	}
}

// setupDeps builds what the dependency faults of the schedule need: the
// replica (one replication setup per run: the failovers must agree on it)
// and the NATS cluster.
func (f *faultState) setupDeps() error {
	var repl *Fault
	for i := range f.list {
		flt := &f.list[i]
		switch {
		case isFailover(flt.Kind):
			if repl != nil && (repl.Kind != flt.Kind || repl.Delay != flt.Delay) {
				return fmt.Errorf("sim: %s lag %v and %s lag %v: a run has one replication setup", repl.Kind, repl.Delay,
					flt.Kind, flt.Delay)
			}
			repl = flt
		case natsFaultTarget(flt.Kind) && f.nats == nil:
			f.nats = newSimNATS(f.s)
		}
	}
	if repl != nil {
		f.s.store.enableReplication(repl.Kind == FaultDBFailoverAsync, repl.Delay)
	}
	return nil
}

func (f *faultState) net(idx int32) *netFault {
	if int(idx) < len(f.netBy) {
		return &f.netBy[idx]
	}
	return &noNetFault
}

var noNetFault netFault

func (f *faultState) clientsCut(idx int32) bool { return int(idx) < len(f.cut) && f.cut[idx] > 0 }
func (f *faultState) dbExtra(business string) int64 {
	if len(f.dbExtraBy) == 0 {
		return 0
	}
	return f.dbExtraBy[business]
}
func (f *faultState) dbUnknown() float64      { return f.dbUnknownP }
func (f *faultState) dbDeadlock() float64     { return f.dbDeadlockP }
func (f *faultState) dbOutage() bool          { return f.dbDown > 0 }
func (f *faultState) presenceOutage() bool    { return f.presDown > 0 }
func (f *faultState) queueOutage() bool       { return f.queueDown > 0 }
func (f *faultState) queueDuplicate() float64 { return f.queueDupP }
func (f *faultState) queueLostAck() float64   { return f.lostAckP }

// viewExtra draws one node's extra view delay, uniform in [0, Delay].
func (f *faultState) viewExtra() int64 {
	if f.viewDelay <= 0 {
		return 0
	}
	return f.s.deps.Int64N(f.viewDelay + 1)
}

// scaleOut adds the next slot of role and starts it.
func (s *sim) scaleOut(role node.Role) {
	slot := 0
	for _, in := range s.instances {
		if in.addr.Role == role && in.addr.Slot >= slot {
			slot = in.addr.Slot + 1
		}
	}
	if slot >= s.cfg.SlotsMax {
		s.obs.scaleOutRefused++
		return
	}
	in := s.addInstance(node.Addr{Role: role, Slot: slot})
	s.faults.recompute()
	s.start(in)
	s.obs.scaleOuts++
}

// scaleIn removes a slot gracefully: its key is deleted (views update at
// once), then it stops.
func (s *sim) scaleIn(in *instance) {
	if in.retired {
		return
	}
	delete(s.registry.expires, in.idx)
	s.registry.publish(in.addr.Role, false)
	s.crash(in)
	in.retired = true
	s.obs.scaleIns++
}

// windowsAt returns the fault windows, closing any still open at now.
func (f *faultState) windowsAt(now int64) []FaultWindow {
	out := append([]FaultWindow(nil), f.windows...)
	for i, flt := range f.list {
		if f.active[i] {
			out = append(out, FaultWindow{Kind: flt.Kind, Target: flt.Target, Start: f.started[i], End: now})
		}
	}
	return out
}
