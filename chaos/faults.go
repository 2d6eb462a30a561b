package chaos

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/node"
)

// Fault statuses in the timeline.
const (
	// StatusApplied: the fault ran as the scenario says.
	StatusApplied = "applied"
	// StatusApproximated: the fault ran, but a parameter the real world does
	// not let us choose was not honoured (the note says which).
	StatusApproximated = "approximated"
	// StatusSkipped: only the simulator can do this fault.
	StatusSkipped = "skipped"
	// StatusFailed: the injector returned an error.
	StatusFailed = "failed"
)

// forMin is the shortest window a scaled fault gets. Failure detection
// does not scale with the scenario: a slot is seen dead by everyone, and
// seen again when it is back (which is what makes callers fail back), only
// when its registry key expires, RegistryTTLDefault after its last
// heartbeat. A shorter window would make a scenario's pause or partition a
// different fault from the simulator's.
const forMin = node.RegistryTTLDefault + 2*node.RegistryHeartbeatDefault

// depForMin is the shortest window of a dependency fault.
const depForMin = time.Second

// dbTimeoutFlap is the on and off period of db-timeout's toxic: a
// transaction in flight when it comes on loses its remaining answers, so
// some committed and some did not (see planDBTimeout).
const dbTimeoutFlap = 400 * time.Millisecond

// dbRoundTrips is about how many statements an append transaction sends
// (mysqlstore: begin, lock, find duplicates, messages, last_seq, user rows,
// commit): the simulator's db-latency delays a store call, toxiproxy's
// delays each answer, so the latter gets the scenario's latency divided by
// this.
const dbRoundTrips = 7

// FaultRecord is one line of the fault timeline.
type FaultRecord struct {
	What   string        `json:"what"`
	Target string        `json:"target"`
	At     time.Duration `json:"at"`  // after the traffic starts, scaled
	For    time.Duration `json:"for"` // scaled; 0: until the heal (or instantaneous)
	Status string        `json:"status"`
	Note   string        `json:"note,omitempty"`
	// Start and End are on the history's clock (ns); End is 0 until healed.
	Start int64  `json:"start,omitempty"`
	End   int64  `json:"end,omitempty"`
	Err   string `json:"error,omitempty"`
	// AcksResumed is how long after End the first send was acknowledged
	// (0: none was, or the fault has not ended).
	AcksResumed time.Duration `json:"acks_resumed_after_end,omitempty"`
}

// injection is what a fault does: prepare the environment before the
// traffic (nil: nothing to prepare), start it, and end it (nil: nothing to
// undo).
type injection struct {
	prepare func(ctx context.Context) error
	start   func(ctx context.Context) error
	stop    func(ctx context.Context) error
}

// faultPlan is the scaled fault schedule of one run.
type faultPlan struct {
	env     *Env
	records []*FaultRecord
	inj     []injection
	// dep is what the dependency faults did (depfaults.go).
	dep depState
	mu  sync.Mutex // guards the records' notes while faults run
}

// scaleTime maps a scenario time to the run's.
func scaleTime(d time.Duration, scale float64) time.Duration {
	return time.Duration(float64(d) * scale)
}

// planFaults maps each scenario fault to an injection, or to skipped.
func planFaults(env *Env, faults []scenarios.Fault, scale float64) *faultPlan {
	p := &faultPlan{env: env}
	for i, f := range faults {
		r := &FaultRecord{What: string(f.What), Target: f.Target, At: scaleTime(f.At.D(), scale)}
		if f.For > 0 {
			r.For = max(scaleTime(f.For.D(), scale), forMin)
			if slices.Contains(depKinds, f.What) {
				// A dependency's own failure is not one zzim's slots must
				// be seen dead for: it scales like the traffic (an outage
				// of a dependency is what clients see, election and
				// promotion take their real time on top).
				r.For = max(scaleTime(f.For.D(), scale), depForMin)
			}
		}
		inj, status, note := p.injection(f, "chaos"+strconv.Itoa(i), r)
		r.Status, r.Note = status, note
		p.records = append(p.records, r)
		p.inj = append(p.inj, inj)
	}
	return p
}

// injection maps one fault; name labels its toxics, r is its record.
func (p *faultPlan) injection(f scenarios.Fault, name string, r *FaultRecord) (injection, string, string) {
	e := p.env
	if inj, status, note, ok := p.depInjection(f, r); ok {
		return inj, status, note
	}
	nodes := func() []string { return e.expand(f.Target) }
	each := func(op func(context.Context, string) error) func(context.Context) error {
		return func(ctx context.Context) error {
			for _, n := range nodes() {
				if err := op(ctx, n); err != nil {
					return fmt.Errorf("%s: %w", n, err)
				}
			}
			return nil
		}
	}
	switch f.What {
	case scenarios.Crash:
		return injection{start: each(e.Kill), stop: each(e.Start)}, StatusApplied, "SIGKILL, start again at the end"
	case scenarios.Restart:
		return injection{start: func(ctx context.Context) error {
			if err := each(e.Kill)(ctx); err != nil {
				return err
			}
			return each(e.Start)(ctx)
		}}, StatusApplied, "SIGKILL then start (same ports)"
	case scenarios.Pause:
		return injection{start: each(e.Pause), stop: each(e.Unpause)}, StatusApplied, "docker pause (cgroup freeze)"
	case scenarios.Partition:
		return p.partition(f, name)
	case scenarios.Delay:
		a, b, oneWay := linkEnds(f.Target)
		paths := e.proxies.match(a, b, !oneWay)
		lat, jit := msParam(f.Params["latency"]), msParam(f.Params["jitter"])
		return p.toxicInjection(paths, name, "latency", "upstream", 1,
			toxiproxy.Attributes{"latency": lat, "jitter": jit}), StatusApplied, fmt.Sprintf("toxiproxy latency on %d paths", len(paths))
	case scenarios.Clog:
		a, b, oneWay := linkEnds(f.Target)
		paths := e.proxies.match(a, b, !oneWay)
		return p.toxicInjection(paths, name, "latency", "upstream", 1,
				toxiproxy.Attributes{"latency": int64(max(f.For.D(), forMin) / time.Millisecond)}),
			StatusApproximated, "clog as a latency toxic as long as the window (new data waits, old connections keep theirs)"
	case scenarios.DBLatency:
		paths := e.proxies.match("das-*", depMariaDB, false)
		perTrip := msParam(f.Params["latency"]) / dbRoundTrips
		return p.toxicInjection(paths, name, "latency", "downstream", 1, toxiproxy.Attributes{"latency": perTrip}),
			StatusApproximated, fmt.Sprintf("%dms on every answer of every das->mariadb path: an append transaction's %d round trips take the scenario's %s (params.business not honoured: one pool serves every business)",
				perTrip, dbRoundTrips, f.Params["latency"])
	case scenarios.DBTimeout:
		return p.dbTimeout(f, name)
	case scenarios.DBOutage:
		paths := e.proxies.match("das-*", depMariaDB, false)
		return p.toxicInjection(paths, name, "timeout", "upstream", 1, toxiproxy.Attributes{"timeout": 0}),
			StatusApproximated, "every das->mariadb path blackholed (the database itself keeps running)"
	case scenarios.MQOutage:
		paths := e.proxies.match("*", depNATS+"-*", false) // "nats", or every node of a cluster
		return p.toxicInjection(paths, name, "timeout", "upstream", 1, toxiproxy.Attributes{"timeout": 0}),
			StatusApproximated, "every path to NATS blackholed (queue and registry both: one connection carries them)"
	}
	return injection{}, StatusSkipped, "only the simulator can do " + string(f.What)
}

// partition: symmetric and one-way cut toxiproxy paths (a timeout toxic
// with no timeout drops every byte; removing it closes the connections, so
// the links redial); isolate takes the container off the network.
func (p *faultPlan) partition(f scenarios.Fault, name string) (injection, string, string) {
	e := p.env
	if f.Params["mode"] == "isolate" {
		target := strings.TrimSpace(f.Target)
		return injection{
			start: func(ctx context.Context) error { return e.Disconnect(ctx, target) },
			stop:  func(ctx context.Context) error { return e.Reconnect(ctx, target) },
		}, StatusApplied, "docker network disconnect (reconnect with its alias); an isolated entry loses its clients too"
	}
	a, b, oneWay := linkEnds(f.Target)
	if f.Params["mode"] == "one-way" {
		oneWay = true
	}
	paths := e.proxies.match(a, b, !oneWay)
	inj := injection{
		start: func(ctx context.Context) error {
			if err := e.proxies.toxic(paths, name+"-up", "timeout", "upstream", 1, toxiproxy.Attributes{"timeout": 0}); err != nil {
				return err
			}
			return e.proxies.toxic(paths, name+"-down", "timeout", "downstream", 1, toxiproxy.Attributes{"timeout": 0})
		},
		stop: func(ctx context.Context) error {
			err := e.proxies.removeToxic(paths, name+"-up")
			if err2 := e.proxies.removeToxic(paths, name+"-down"); err == nil {
				err = err2
			}
			return err
		},
	}
	return inj, StatusApplied, fmt.Sprintf("toxiproxy blackhole on %s", strings.Join(paths, ", "))
}

// dbTimeout: the das->mariadb paths' answers are dropped on a share
// (params.probability, as toxicity: drawn per connection) of connections,
// switched on and off every dbTimeoutFlap. A transaction caught when it
// comes on times out at das with its outcome unknown; whether it committed
// depends on how far it had got, so params.commit_probability cannot be
// chosen: only the simulator can.
func (p *faultPlan) dbTimeout(f scenarios.Fault, name string) (injection, string, string) {
	e := p.env
	paths := e.proxies.match("das-*", depMariaDB, false)
	prob := 1.0
	if v, err := strconv.ParseFloat(f.Params["probability"], 64); err == nil && v > 0 {
		prob = v
	}
	var mu sync.Mutex
	var stopFlap context.CancelFunc
	var done chan struct{}
	inj := injection{
		start: func(ctx context.Context) error {
			fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
			mu.Lock()
			stopFlap, done = cancel, make(chan struct{})
			d := done
			mu.Unlock()
			go func() {
				defer close(d)
				for fctx.Err() == nil {
					_ = e.proxies.toxic(paths, name, "timeout", "downstream", float32(prob), toxiproxy.Attributes{"timeout": 0})
					sleepCtx(fctx, dbTimeoutFlap)
					_ = e.proxies.removeToxic(paths, name)
					sleepCtx(fctx, dbTimeoutFlap)
				}
			}()
			return nil
		},
		stop: func(ctx context.Context) error {
			mu.Lock()
			cancel, d := stopFlap, done
			mu.Unlock()
			if cancel != nil {
				cancel()
				<-d
			}
			return nil
		},
	}
	note := fmt.Sprintf("answers dropped on das->mariadb connections (toxicity %.2f, on/off every %s); commit_probability %s not honoured, the caught transaction's progress decides",
		prob, dbTimeoutFlap, f.Params["commit_probability"])
	if b := f.Params["business"]; b != "" {
		note += "; business " + b + " not honoured (one pool serves every business)"
	}
	return inj, StatusApproximated, note
}

func (p *faultPlan) toxicInjection(paths []string, name, kind, stream string, toxicity float32, attrs toxiproxy.Attributes) injection {
	return injection{
		start: func(context.Context) error { return p.env.proxies.toxic(paths, name, kind, stream, toxicity, attrs) },
		stop:  func(context.Context) error { return p.env.proxies.removeToxic(paths, name) },
	}
}

// allSkipped reports whether the schedule had faults and none could run.
func (p *faultPlan) allSkipped() bool {
	if len(p.records) == 0 {
		return false
	}
	for _, r := range p.records {
		if r.Status != StatusSkipped {
			return false
		}
	}
	return true
}

// prepare runs every fault's preparation before the traffic; a failure
// marks the fault failed (the run then fails) and skips its start.
func (p *faultPlan) prepare(ctx context.Context) {
	for i, r := range p.records {
		if r.Status == StatusSkipped || p.inj[i].prepare == nil {
			continue
		}
		if err := p.inj[i].prepare(ctx); err != nil {
			r.Status, r.Err = StatusFailed, "prepare: "+err.Error()
		}
	}
}

// scheduledAction is one start or stop of a fault.
type scheduledAction struct {
	at    time.Duration
	fault int
	stop  bool
}

// run applies the schedule from t0 until ctx ends or heal closes; at the
// heal every fault still active is undone. now reads the history clock.
func (p *faultPlan) run(ctx context.Context, t0 time.Time, heal <-chan struct{}, now func() int64) {
	var acts []scheduledAction
	for i, r := range p.records {
		if r.Status == StatusSkipped || r.Status == StatusFailed {
			continue
		}
		acts = append(acts, scheduledAction{at: r.At, fault: i})
		if r.For > 0 && p.inj[i].stop != nil {
			acts = append(acts, scheduledAction{at: r.At + r.For, fault: i, stop: true})
		}
	}
	sort.SliceStable(acts, func(i, j int) bool { return acts[i].at < acts[j].at })
	active := map[int]bool{}
	for _, a := range acts {
		select {
		case <-time.After(time.Until(t0.Add(a.at))):
		case <-heal:
			p.healAll(ctx, active, now)
			return
		case <-ctx.Done():
			p.healAll(context.WithoutCancel(ctx), active, now)
			return
		}
		r := p.records[a.fault]
		if a.stop {
			if active[a.fault] {
				p.stop(ctx, a.fault, now)
				delete(active, a.fault)
			}
			continue
		}
		r.Start = now()
		if err := p.inj[a.fault].start(ctx); err != nil {
			r.Status, r.Err = StatusFailed, err.Error()
		}
		if p.inj[a.fault].stop != nil && r.Status != StatusFailed {
			active[a.fault] = true
		} else {
			r.End = now()
		}
	}
	select {
	case <-heal:
	case <-ctx.Done():
	}
	p.healAll(context.WithoutCancel(ctx), active, now)
}

func (p *faultPlan) stop(ctx context.Context, i int, now func() int64) {
	r := p.records[i]
	if err := p.inj[i].stop(ctx); err != nil {
		r.Status, r.Err = StatusFailed, "heal: "+err.Error()
	}
	r.End = now()
}

func (p *faultPlan) healAll(ctx context.Context, active map[int]bool, now func() int64) {
	var idx []int
	for i := range active {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		p.stop(ctx, i, now)
	}
}

// windows are the faults that ran, for the checkers' reports and the
// liveness bound.
func (p *faultPlan) windows() []check.FaultWindow {
	var out []check.FaultWindow
	for _, r := range p.records {
		if r.Start == 0 {
			continue
		}
		end := r.End
		if end < r.Start {
			end = r.Start
		}
		out = append(out, check.FaultWindow{Start: r.Start, End: end, What: r.What + " " + r.Target})
	}
	return out
}

// expand turns "logic-1" or "das-*" into services.
func (e *Env) expand(target string) []string {
	target = strings.TrimSpace(target)
	if !strings.HasSuffix(target, "-*") {
		return []string{target}
	}
	var out []string
	for _, s := range e.order {
		if sideMatch(target, s) {
			out = append(out, s)
		}
	}
	return out
}

// linkEnds splits "a<->b" or "a->b".
func linkEnds(t string) (a, b string, oneWay bool) {
	if a, b, ok := strings.Cut(t, "<->"); ok {
		return strings.TrimSpace(a), strings.TrimSpace(b), false
	}
	a, b, _ = strings.Cut(t, "->")
	return strings.TrimSpace(a), strings.TrimSpace(b), true
}

// msParam reads a duration parameter as toxiproxy's milliseconds.
func msParam(v string) int64 {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0
	}
	return int64(d / time.Millisecond)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
