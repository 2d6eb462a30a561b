package sim

import (
	"reflect"
	"sort"
	"strconv"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Result is everything a run produced: what the checkers read (History,
// Store, Faults) and what the verdict line reports (counters, hash).
type Result struct {
	Seed      uint64
	TraceHash uint64
	History   []check.Op
	Store     []store.Message
	Faults    []FaultWindow
	Counters  Counters
	Exercised Exercised
	// Stats sums every numeric field of every service's and client's
	// Stats() by role ("entry.Failovers", "client.Resends", ...), including
	// instances that crashed.
	Stats map[string]uint64
	// Sim counts the simulator's own observations by name, sorted on output.
	Sim map[string]uint64
	// Deps: what the dependencies' own faults did (deps_replica.go).
	Deps DepsReport
	// Delivery is the counting check: every acknowledged message reached
	// each recipient's application exactly once.
	Delivery DeliveryCheck
	// Err is set when the run stopped early (event limit).
	Err error
}

// Counters measure the run itself.
type Counters struct {
	Events      uint64
	SimSeconds  float64
	WallSeconds float64
	// EventsPerSecond and Speedup (simulated seconds per wall second).
	EventsPerSecond float64
	Speedup         float64
	Clients         int
	Ops             int
}

// Exercised counts the recovery paths that actually ran, so a scenario can
// require that its faults mattered.
type Exercised struct {
	FailoverResends        uint64
	FailBacks              uint64
	UnknownResolvedByDedup uint64
	RedeliveriesHandled    uint64
	PushesToOffline        uint64
	UsersRemapped          uint64
}

// Map names the exercised counters as scenarios spell them.
func (e Exercised) Map() map[string]uint64 {
	return map[string]uint64{
		"failover_resends":          e.FailoverResends,
		"fail_backs":                e.FailBacks,
		"unknown_resolved_by_dedup": e.UnknownResolvedByDedup,
		"redeliveries_handled":      e.RedeliveriesHandled,
		"pushes_to_offline":         e.PushesToOffline,
		"users_remapped":            e.UsersRemapped,
	}
}

// ExercisedNames lists the names of Exercised.Map in a fixed order.
var ExercisedNames = []string{"failover_resends", "fail_backs", "unknown_resolved_by_dedup",
	"redeliveries_handled", "pushes_to_offline", "users_remapped"}

// DeliveryCheck is the counting check the simulator runs itself.
type DeliveryCheck struct {
	Acked      int      // acknowledged sends
	Recipients int      // (message, recipient client) pairs checked
	Missing    int      // pairs never delivered
	Duplicated int      // pairs delivered more than once
	Examples   []string // the first few violations, for the report
}

// OK reports whether the counting check passed.
func (d DeliveryCheck) OK() bool { return d.Missing == 0 && d.Duplicated == 0 }

// deliveryExamplesMax bounds DeliveryCheck.Examples.
const deliveryExamplesMax = 10

func (s *sim) result(wall time.Duration, runErr error) (*Result, error) {
	r := &Result{Seed: s.cfg.Seed, TraceHash: uint64(s.trace), History: s.recorder.Ops(), Err: runErr}
	dump, err := s.storeDump()
	if err != nil {
		return nil, err
	}
	r.Store = dump
	r.Faults = s.faults.windowsAt(s.now)
	r.Counters = Counters{Events: s.events, SimSeconds: float64(s.now) / 1e9, WallSeconds: wall.Seconds(),
		Clients: s.activeClients(), Ops: len(r.History)}
	if wall > 0 {
		r.Counters.EventsPerSecond = float64(s.events) / wall.Seconds()
		r.Counters.Speedup = r.Counters.SimSeconds / wall.Seconds()
	}
	r.Stats = s.stats
	r.Sim = s.obs.named()
	r.Deps = s.depsReport()
	o := &s.obs
	r.Exercised = Exercised{
		// Entry and httpentry count every request they resend on a target
		// change; the sim sees only those that reached a logic instance.
		FailoverResends:        max(o.failoverResends, r.Stats["entry.Resends"]+r.Stats["httpentry.Resends"]),
		FailBacks:              max(o.failBacks, r.Stats["entry.Failbacks"]+r.Stats["httpentry.Failbacks"]),
		UnknownResolvedByDedup: o.unknownResolvedByDedup,
		RedeliveriesHandled:    o.redeliveriesHandled,
		PushesToOffline:        o.pushFailed + o.offlinePublishes,
		UsersRemapped:          uint64(len(o.remapped)),
	}
	r.Delivery = countDeliveries(r.History)
	return r, nil
}

// activeClients counts the clients that took part (Workload.KeepUsers).
func (s *sim) activeClients() int {
	n := 0
	for _, c := range s.clients {
		if !c.inactive {
			n++
		}
	}
	return n
}

// countDeliveries checks that every acknowledged send was handed to each
// recipient client's application exactly once (after its dedup).
func countDeliveries(ops []check.Op) DeliveryCheck {
	type msgKey struct {
		conv string
		seq  uint64
	}
	type recvKey struct {
		client int
		m      msgKey
	}
	userClients := map[string][]int{}
	seenClient := map[int]bool{}
	n := 0
	for i := range ops {
		if ops[i].Kind == check.KindDeliver {
			n += len(ops[i].Out.Msgs)
		}
	}
	delivered := make(map[recvKey]int, n) // made at its size: growing it was most of this pass
	for i := range ops {
		op := &ops[i]
		if !seenClient[op.Client] {
			seenClient[op.Client] = true
			userClients[op.User] = append(userClients[op.User], op.Client)
		}
		if op.Kind == check.KindDeliver {
			for _, m := range op.Out.Msgs {
				delivered[recvKey{op.Client, msgKey{op.Conv, m.Seq}}]++
			}
		}
	}
	var d DeliveryCheck
	for i := range ops {
		op := &ops[i]
		if op.Kind != check.KindSend || !op.Returned() || op.Unknown || op.Error != "" || op.Out.Seq == 0 {
			continue
		}
		d.Acked++
		conv, err := wire.ParseConvID(op.Conv)
		if err != nil {
			continue
		}
		peer, _ := conv.Participant(op.User)
		for _, c := range userClients[peer] {
			d.Recipients++
			n := delivered[recvKey{c, msgKey{op.Conv, op.Out.Seq}}]
			switch {
			case n == 0:
				d.Missing++
				d.example("missing: " + op.Conv + " seq " + strconv.FormatUint(op.Out.Seq, 10) + " at client " + strconv.Itoa(c))
			case n > 1:
				d.Duplicated++
				d.example("delivered " + strconv.Itoa(n) + " times: " + op.Conv + " seq " +
					strconv.FormatUint(op.Out.Seq, 10) + " at client " + strconv.Itoa(c))
			}
		}
	}
	return d
}

func (d *DeliveryCheck) example(s string) {
	if len(d.Examples) < deliveryExamplesMax {
		d.Examples = append(d.Examples, s)
	}
}

// collectStats adds a node's Stats() to the run's totals (at crash and at
// the end). Reflection runs only here, never per event.
func (s *sim) collectStats(in *instance) {
	if in.node != nil {
		s.addStats(string(in.addr.Role), in.node)
	}
}

func (s *sim) collectAllStats() {
	for _, in := range s.instances {
		if in.up {
			s.collectStats(in)
		}
	}
	for _, c := range s.clients {
		s.addStats("client", c.drv)
	}
}

func (s *sim) addStats(prefix string, v any) {
	if s.stats == nil {
		s.stats = map[string]uint64{}
	}
	m := reflect.ValueOf(v).MethodByName("Stats")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
		return
	}
	out := m.Call(nil)[0]
	if out.Kind() != reflect.Struct {
		return
	}
	t := out.Type()
	for i := 0; i < t.NumField(); i++ {
		f := out.Field(i)
		name := prefix + "." + t.Field(i).Name
		switch f.Kind() {
		case reflect.Int, reflect.Int64, reflect.Int32:
			if f.Int() > 0 {
				s.stats[name] += uint64(f.Int())
			}
		case reflect.Uint, reflect.Uint64, reflect.Uint32:
			s.stats[name] += f.Uint()
		case reflect.Bool:
			if f.Bool() {
				s.stats[name]++
			}
		}
	}
}

// named lists the observer's counters by name.
func (o *observer) named() map[string]uint64 {
	return map[string]uint64{
		"crashes": o.crashes, "scale_outs": o.scaleOuts, "scale_ins": o.scaleIns, "faults_started": o.faultsStarted,
		"link_downs": o.linkDowns, "partition_drops": o.partitionDrops, "packet_drops": o.packetDrops,
		"reordered": o.reordered, "duplicated": o.duplicated, "dials": o.dials, "dials_refused": o.dialsRefused,
		"clients_disconnected": o.clientsDisconnected, "http_timeouts": o.httpTimeouts,
		"store_ops": o.storeOps, "deadlocks": o.deadlocks, "late_commits": o.lateCommits,
		"presence_ops": o.presenceOps, "presence_lost": o.presenceLost, "presence_stale": o.presenceStale,
		"publishes": o.publishes, "publish_deduped": o.publishDeduped, "offline_publishes": o.offlinePublishes,
		"redeliveries": o.redeliveries, "queue_duplicates": o.queueDuplicates, "lost_acks": o.lostAcks,
		"naks": o.naks, "dead_letters": o.deadLetters, "registry_expiries": o.registryExpiries,
		"view_changes": o.viewChanges, "sends": o.sends, "sends_refused": o.sendsRefused, "churns": o.churns,
		"login_storms": o.loginStorms, "storm_reconnects": o.stormReconnects, "platform_accepted": o.platformAccepted,
		"platform_failed": o.platformFailed, "platform_retries": o.platformRetries, "push_failed": o.pushFailed,
	}
}

// SortedNames returns m's keys in order, for stable printing.
func SortedNames(m map[string]uint64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// virtualFaultWindows are the fault windows in bare virtual time (since
// the run's start). The checkers need them on the history's clock:
// HistoryFaults.
func (r *Result) virtualFaultWindows() []check.FaultWindow {
	out := make([]check.FaultWindow, len(r.Faults))
	for i, f := range r.Faults {
		what := string(f.Kind)
		if f.Target != "" {
			what += " " + f.Target
		}
		out[i] = check.FaultWindow{Start: f.Start, End: f.End, What: what}
	}
	return out
}

// Check runs the checkers on the run's history with its store dump and
// fault windows filled in (opts' own Dump and Faults are replaced).
func (r *Result) Check(opts check.Options) (*check.Verdict, error) {
	opts.Dump = r.Store
	opts.Faults = r.HistoryFaults()
	return check.Check(&check.History{Ops: r.History}, opts)
}
