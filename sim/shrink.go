package sim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
)

// Shrinking reduces a failing run to a 1-minimal one by delta debugging
// (Zeller's ddmin) over named lists of parts: the explicit faults, the
// users (each user's clients), the conversations, the spikes, login
// storms, broadcasts, notices and churn, and by cutting the duration.
// Every candidate runs with the same seed; the PRNG streams are separate
// and the workload still draws for removed users and conversations, so
// removing a part leaves the rest of the workload where it was.

// Shrink dimensions: the names of Kept.Lists.
const (
	DimFaults     = "faults"
	DimUsers      = "users"
	DimConvs      = "convs"
	DimSpikes     = "spikes"
	DimStorms     = "storms"
	DimBroadcasts = "broadcasts"
	DimNotices    = "notices"
	DimChurn      = "churn"
)

// shrinkDims is the order dimensions are reduced in: the ones that make
// runs cheaper first.
var shrinkDims = []string{DimUsers, DimConvs, DimFaults, DimSpikes, DimStorms, DimBroadcasts, DimNotices, DimChurn}

// nonEmptyDims cannot fail when empty (no user, no conversation: nothing
// runs), so an empty candidate counts as passing without a run.
var nonEmptyDims = map[string]bool{DimUsers: true, DimConvs: true}

// Kept is a reduction of a run: the duration and, per dimension, the
// indices (into the original run's lists) that remain.
type Kept struct {
	Duration time.Duration
	Lists    map[string][]int
}

func (k Kept) clone() Kept {
	c := Kept{Duration: k.Duration, Lists: make(map[string][]int, len(k.Lists))}
	for name, l := range k.Lists {
		c.Lists[name] = slices.Clone(l)
	}
	return c
}

// key identifies k for the cache of tried reductions.
func (k Kept) key() string {
	var b strings.Builder
	b.WriteString(k.Duration.String())
	for _, name := range shrinkDims {
		b.WriteString("|")
		for _, i := range k.Lists[name] {
			b.WriteString(strconv.Itoa(i))
			b.WriteByte(',')
		}
	}
	return b.String()
}

// Reducer describes what is shrunk: the full reduction, how to build the
// run of a reduction, and which parts still fit in a cut duration.
type Reducer struct {
	Full  Kept
	Build func(Kept) (Config, error)
	// Fits reports whether part i of dimension dim happens within d (a
	// fault or spike starting at or after the end is dropped with it).
	Fits func(dim string, i int, d time.Duration) bool
	// DurationMin bounds the duration cut from below.
	DurationMin time.Duration
}

// ShrinkSize is how big a run is.
type ShrinkSize struct {
	Faults, Users, Convs int
	Duration             time.Duration
	Other                int // spikes, storms, broadcasts, notices and churn left
}

func (s ShrinkSize) String() string {
	return fmt.Sprintf("faults=%d clients(users)=%d conversations=%d duration=%s other=%d",
		s.Faults, s.Users, s.Convs, s.Duration, s.Other)
}

// SizeOf measures a reduction.
func SizeOf(k Kept) ShrinkSize {
	s := ShrinkSize{Faults: len(k.Lists[DimFaults]), Users: len(k.Lists[DimUsers]),
		Convs: len(k.Lists[DimConvs]), Duration: k.Duration}
	for _, d := range []string{DimSpikes, DimStorms, DimBroadcasts, DimNotices, DimChurn} {
		s.Other += len(k.Lists[d])
	}
	return s
}

// Shrunk is the outcome of a shrink.
type Shrunk struct {
	Kept   Kept
	Config Config
	Result *Result
	Before ShrinkSize
	After  ShrinkSize
	// Runs counts simulator runs (cached candidates are not rerun).
	Runs int
	Wall time.Duration
}

// ErrNotFailing: the run to shrink does not fail to begin with.
var ErrNotFailing = errors.New("sim: the run to shrink does not fail")

// shrinkRunsMax bounds a shrink; past it the best reduction so far is
// returned (still failing, but maybe not 1-minimal) with ErrShrinkBudget.
const shrinkRunsMax = 5000

// ErrShrinkBudget: the shrink stopped at shrinkRunsMax runs.
var ErrShrinkBudget = errors.New("sim: shrink run budget exhausted")

// Shrink reduces cfg, which must fail, to a 1-minimal failing
// configuration: removing any one remaining fault, user (client),
// conversation, spike, storm, notice stream or broadcast stream makes
// fails false. fails decides "still breaks the same promise" (see
// FailsPromise).
func Shrink(cfg Config, fails func(*Result) bool) (*Shrunk, error) {
	return ShrinkWith(ConfigReducer(cfg), fails, nil)
}

// ShrinkWith runs the shrink of r. progress, if set, hears each step.
func ShrinkWith(r Reducer, fails func(*Result) bool, progress func(string)) (*Shrunk, error) {
	start := time.Now() // determinism-ok: wall time is only reported
	sh := &shrinker{r: r, fails: fails, tried: map[string]bool{}, progress: progress}
	cur := r.Full.clone()
	ok, err := sh.test(cur)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFailing
	}
	out := &Shrunk{Before: SizeOf(cur)}
	cur, err = sh.reduce(cur)
	out.Kept, out.After, out.Runs = cur, SizeOf(cur), sh.runs
	out.Result = sh.lastFail
	out.Wall = time.Since(start) // determinism-ok: reported only
	if cfg, berr := r.Build(cur); berr == nil {
		out.Config = cfg
	}
	return out, err
}

type shrinker struct {
	r        Reducer
	fails    func(*Result) bool
	tried    map[string]bool
	runs     int
	progress func(string)
	lastFail *Result
	lastKey  string
}

func (sh *shrinker) logf(format string, args ...any) {
	if sh.progress != nil {
		sh.progress(fmt.Sprintf(format, args...))
	}
}

// test runs k (once: results are cached) and reports whether it fails.
func (sh *shrinker) test(k Kept) (bool, error) {
	key := k.key()
	if v, ok := sh.tried[key]; ok {
		return v, nil
	}
	if sh.runs >= shrinkRunsMax {
		return false, ErrShrinkBudget
	}
	for name := range nonEmptyDims {
		if l, ok := k.Lists[name]; ok && len(l) == 0 && len(sh.r.Full.Lists[name]) > 0 {
			sh.tried[key] = false // nothing left to run
			return false, nil
		}
	}
	cfg, err := sh.r.Build(k)
	if err != nil {
		return false, fmt.Errorf("sim: shrink candidate: %w", err)
	}
	sh.runs++
	res, err := Run(cfg)
	if err != nil {
		return false, fmt.Errorf("sim: shrink candidate: %w", err)
	}
	f := res.Err == nil && sh.fails(res)
	sh.tried[key] = f
	if f {
		sh.lastFail, sh.lastKey = res, key
	}
	return f, nil
}

// reduce cuts the duration, then ddmin over each dimension, and repeats
// until a whole round changes nothing: then no single part can go.
func (sh *shrinker) reduce(cur Kept) (Kept, error) {
	for round := 1; ; round++ {
		before := cur.key()
		var err error
		if cur, err = sh.cutDuration(cur); err != nil {
			return cur, err
		}
		for _, dim := range shrinkDims {
			if cur, err = sh.ddmin(cur, dim); err != nil {
				return cur, err
			}
		}
		sh.logf("round %d: %s (%d runs)", round, SizeOf(cur), sh.runs)
		if cur.key() == before {
			break
		}
	}
	// The run of the result is the last failing one seen only if it was the
	// result's; rerun it otherwise (cached runs do not keep their Result).
	if sh.lastKey != cur.key() {
		cfg, err := sh.r.Build(cur)
		if err != nil {
			return cur, err
		}
		res, err := Run(cfg)
		if err != nil {
			return cur, err
		}
		sh.runs++
		sh.lastFail, sh.lastKey = res, cur.key()
	}
	return cur, nil
}

// withDuration cuts k to d, dropping the parts that no longer fit.
func (sh *shrinker) withDuration(k Kept, d time.Duration) Kept {
	c := k.clone()
	c.Duration = d
	if sh.r.Fits == nil {
		return c
	}
	for _, dim := range shrinkDims {
		l := c.Lists[dim][:0]
		for _, i := range c.Lists[dim] {
			if sh.r.Fits(dim, i, d) {
				l = append(l, i)
			}
		}
		c.Lists[dim] = l
	}
	return c
}

// durationStep is the resolution of the duration cut.
const durationStep = time.Second

// cutDuration binary-searches the shortest duration that still fails.
// Failure need not be monotone in the duration: only tested cuts are kept.
func (sh *shrinker) cutDuration(cur Kept) (Kept, error) {
	lo, hi := min(sh.r.DurationMin, cur.Duration), cur.Duration
	if lo <= 0 {
		lo = durationStep
	}
	best := cur
	for hi-lo > durationStep {
		mid := (lo + (hi-lo)/2).Truncate(durationStep)
		if mid <= lo {
			break
		}
		cand := sh.withDuration(best, mid)
		f, err := sh.test(cand)
		if err != nil {
			return best, err
		}
		if f {
			best, hi = cand, mid
		} else {
			lo = mid
		}
	}
	if best.Duration != cur.Duration {
		sh.logf("duration %s -> %s (%d runs)", cur.Duration, best.Duration, sh.runs)
	}
	return best, nil
}

// ddmin reduces one dimension: try each of n chunks alone, then each
// complement; refine n up to the list length. When it ends with n equal
// to the length, every single removal has been tried: 1-minimal.
func (sh *shrinker) ddmin(cur Kept, dim string) (Kept, error) {
	list := cur.Lists[dim]
	if len(list) == 0 {
		return cur, nil
	}
	n := 2
	for len(list) > 0 {
		n = min(n, len(list))
		chunks := split(list, n)
		with := func(l []int) Kept {
			c := cur.clone()
			c.Lists[dim] = l
			return c
		}
		reduced := false
		// Subsets first: from hundreds of users to a handful quickly.
		if n > 1 {
			for _, ch := range chunks {
				f, err := sh.test(with(ch))
				if err != nil {
					return cur, err
				}
				if f {
					list, n, reduced = ch, 2, true
					break
				}
			}
		}
		if !reduced {
			for i := range chunks {
				comp := complement(chunks, i)
				f, err := sh.test(with(comp))
				if err != nil {
					return cur, err
				}
				if f {
					list, n, reduced = comp, max(n-1, 2), true
					break
				}
			}
		}
		cur = with(list)
		if !reduced {
			if n >= len(list) {
				break
			}
			n = min(2*n, len(list))
		}
	}
	return cur, nil
}

// split cuts l into n nearly equal chunks.
func split(l []int, n int) [][]int {
	out := make([][]int, 0, n)
	start := 0
	for i := 0; i < n; i++ {
		end := start + (len(l)-start)/(n-i)
		out = append(out, slices.Clone(l[start:end]))
		start = end
	}
	return out
}

// complement is every chunk but chunk i, in order.
func complement(chunks [][]int, i int) []int {
	var out []int
	for j, ch := range chunks {
		if j != i {
			out = append(out, ch...)
		}
	}
	if out == nil {
		out = []int{}
	}
	return out
}

// indices returns 0..n-1.
func indices(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// ConvCount is how many conversations cfg's workload creates (the index
// space of Workload.KeepConvs), without running it.
func ConvCount(cfg Config) int {
	c, err := cfg.withDefaults()
	if err != nil {
		return 0
	}
	s := &sim{cfg: c, wl: newStream(c.Seed, streamWorkload)}
	w := &workload{s: s}
	for i := 0; i < c.Workload.Users; i++ {
		w.users = append(w.users, "u"+strconv.Itoa(i))
	}
	w.makeConvs()
	return len(w.convs)
}

// activeConvs lists the conversations active under keepUsers, keepConvs.
func activeConvs(cfg Config) []int {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil
	}
	s := &sim{cfg: c, wl: newStream(c.Seed, streamWorkload)}
	w := &workload{s: s}
	for i := 0; i < c.Workload.Users; i++ {
		w.users = append(w.users, "u"+strconv.Itoa(i))
	}
	w.makeConvs()
	w.applyKeep()
	var out []int
	for i, a := range w.activeConv {
		if a {
			out = append(out, i)
		}
	}
	return out
}

// keepList is nil when l keeps all n (so the config and the scenario file
// say nothing), else l.
func keepList(l []int, n int) []int {
	if len(l) == n {
		return nil
	}
	return slices.Clone(l)
}

// FullKept is the reduction of cfg that keeps everything.
func FullKept(cfg Config) Kept {
	w := &cfg.Workload
	users := indices(w.Users)
	if len(w.KeepUsers) > 0 {
		users = slices.Clone(w.KeepUsers)
	}
	k := Kept{Duration: cfg.Duration, Lists: map[string][]int{
		DimFaults: indices(len(cfg.Faults)),
		DimUsers:  users,
		DimConvs:  activeConvs(cfg),
		DimSpikes: indices(len(w.Spikes)),
		DimStorms: indices(len(w.LoginStorms)),
	}}
	k.Lists[DimNotices] = flag(w.NoticeRate > 0)
	k.Lists[DimBroadcasts] = flag(w.BroadcastRate > 0)
	k.Lists[DimChurn] = flag(w.ChurnRate > 0)
	return k
}

func flag(on bool) []int {
	if on {
		return []int{0}
	}
	return []int{}
}

// ConfigReducer shrinks a Config directly.
func ConfigReducer(cfg Config) Reducer {
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultConfig().Duration
	}
	convs := ConvCount(cfg)
	return Reducer{
		Full: FullKept(cfg),
		Build: func(k Kept) (Config, error) {
			return KeptConfig(cfg, k, convs), nil
		},
		Fits: func(dim string, i int, d time.Duration) bool {
			switch dim {
			case DimFaults:
				return cfg.Faults[i].At < d
			case DimSpikes:
				return cfg.Workload.Spikes[i].At < d
			case DimStorms:
				return cfg.Workload.LoginStorms[i].At < d
			}
			return true
		},
		DurationMin: min(4*startSpread, cfg.Duration),
	}
}

// KeptConfig applies k to cfg; convs is ConvCount(cfg). A fault or spike
// that would outlast the cut duration ends with it.
func KeptConfig(cfg Config, k Kept, convs int) Config {
	out := cfg
	out.Duration = k.Duration
	out.Faults = nil
	for _, i := range k.Lists[DimFaults] {
		f := cfg.Faults[i]
		if f.For > 0 && f.At+f.For > k.Duration {
			f.For = k.Duration - f.At
		}
		out.Faults = append(out.Faults, f)
	}
	w := &out.Workload
	w.KeepUsers = keepList(k.Lists[DimUsers], cfg.Workload.Users)
	w.KeepConvs = keepList(k.Lists[DimConvs], convs)
	w.Spikes = nil
	for _, i := range k.Lists[DimSpikes] {
		sp := cfg.Workload.Spikes[i]
		if sp.At+sp.For > k.Duration {
			sp.For = k.Duration - sp.At
		}
		w.Spikes = append(w.Spikes, sp)
	}
	w.LoginStorms = nil
	for _, i := range k.Lists[DimStorms] {
		w.LoginStorms = append(w.LoginStorms, cfg.Workload.LoginStorms[i])
	}
	if len(k.Lists[DimNotices]) == 0 {
		w.NoticeRate = 0
	}
	if len(k.Lists[DimBroadcasts]) == 0 {
		w.BroadcastRate = 0
	}
	if len(k.Lists[DimChurn]) == 0 {
		w.ChurnRate = 0
	}
	return out
}

// Promises lists the promise numbers a verdict says are broken, sorted.
func Promises(v *check.Verdict) []int {
	var out []int
	for _, vi := range v.Violations {
		if !slices.Contains(out, vi.Promise) {
			out = append(out, vi.Promise)
		}
	}
	slices.Sort(out)
	return out
}

// FailsPromise is the usual shrink predicate: the checks of opts find a
// violation of promise (and the run ended normally).
func FailsPromise(opts check.Options, promise int) func(*Result) bool {
	return func(r *Result) bool {
		v, err := r.Check(opts)
		if err != nil {
			return false
		}
		return slices.Contains(Promises(v), promise)
	}
}

// ScenarioShrunk is a shrunk scenario: the file to write and how it went.
type ScenarioShrunk struct {
	*Shrunk
	Scenario *scenarios.Scenario
	// Promise is the one the original run broke first and the result breaks.
	Promise int
	// Verdict is the checkers' verdict on the shrunk run.
	Verdict *check.Verdict
}

// ShrinkScenario runs sc with opts (seed, bugs, checks), takes the first
// promise its checks find broken, and shrinks the scenario to a 1-minimal
// one that still breaks it. Every candidate is a scenario carrying the
// seed, bug switches and checks itself, run through FromScenario without
// overrides, so the written file is exactly what was tested: `zzim sim run
// FILE` reproduces it.
func ShrinkScenario(sc *scenarios.Scenario, opts PlanOptions, progress func(string)) (*ScenarioShrunk, error) {
	base := shrinkBase(sc, opts)
	p, err := FromScenario(base, PlanOptions{})
	if err != nil {
		return nil, err
	}
	res, err := p.Run()
	if err != nil {
		return nil, err
	}
	copts := check.Options{Checks: p.Checks, LivenessBound: p.LivenessBound}
	v, err := res.Check(copts)
	if err != nil {
		return nil, err
	}
	if len(v.Violations) == 0 {
		return nil, ErrNotFailing
	}
	promise := v.Violations[0].Promise
	if progress != nil {
		progress(fmt.Sprintf("seed %d breaks promise %d (%s): %s", p.Config.Seed, promise,
			check.PromiseName(promise), strings.SplitN(v.Violations[0].String(), "\n", 2)[0]))
	}
	convs := ConvCount(p.Config)
	r := ScenarioReducer(base, p.Config, convs)
	fails := FailsPromise(copts, promise)
	sh, err := ShrinkWith(r, fails, progress)
	if sh == nil {
		return nil, err
	}
	out := &ScenarioShrunk{Shrunk: sh, Scenario: KeptScenario(base, sh.Kept, convs), Promise: promise}
	// Name and description do not change the run.
	out.Scenario.Name = strings.TrimSuffix(sc.Name, "-shrunk") + "-shrunk"
	out.Scenario.Description = fmt.Sprintf("%s seed %d shrunk to a 1-minimal run that breaks promise %d (%s). %s",
		sc.Name, base.Seed, promise, check.PromiseName(promise), sc.Description)
	if sh.Result != nil {
		out.Verdict, _ = sh.Result.Check(copts)
	}
	return out, err
}

// shrinkBase is sc with opts written into it: seed, bugs and checks, and
// no exercised counters (a shrunk run need not exercise them), expecting
// fail.
func shrinkBase(sc *scenarios.Scenario, opts PlanOptions) *scenarios.Scenario {
	b := *sc
	if opts.Seed != 0 {
		b.Seed = opts.Seed
	}
	b.Bugs = slices.Clone(sc.Bugs)
	for _, name := range bugs.Names() {
		if opts.Bugs.On(bugs.Switch(name)) && !slices.Contains(b.Bugs, name) {
			b.Bugs = append(b.Bugs, name)
		}
	}
	if len(opts.Checks) > 0 {
		b.Checks = slices.Clone(opts.Checks)
	}
	b.Exercised = nil
	b.Expect = scenarios.Fail
	b.Swarm = nil
	return &b
}

// ScenarioReducer shrinks sc; cfg is its Config (FromScenario) and convs
// ConvCount(cfg). Scenario faults, spikes and broadcasts map one to one
// onto the Config's, so the reduction's indices are the scenario's.
func ScenarioReducer(sc *scenarios.Scenario, cfg Config, convs int) Reducer {
	full := FullKept(cfg)
	w := sc.Workload
	full.Lists[DimStorms] = flag(w.LoginStorm != nil)
	full.Lists[DimNotices] = flag(w.Notices != nil && w.Notices.Rate > 0)
	full.Lists[DimChurn] = flag(w.Churn != nil && w.Churn.Rate > 0)
	full.Lists[DimBroadcasts] = []int{}
	if w.Broadcasts != nil {
		full.Lists[DimBroadcasts] = indices(len(w.Broadcasts.At))
	}
	return Reducer{
		Full: full,
		Build: func(k Kept) (Config, error) {
			p, err := FromScenario(KeptScenario(sc, k, convs), PlanOptions{})
			if err != nil {
				return Config{}, err
			}
			return p.Config, nil
		},
		Fits: func(dim string, i int, d time.Duration) bool {
			switch dim {
			case DimFaults:
				return sc.Faults[i].At.D() < d
			case DimSpikes:
				return w.Spikes[i].At.D() < d
			case DimStorms:
				return w.LoginStorm.At.D() < d
			case DimBroadcasts:
				return w.Broadcasts.At[i].D() < d
			}
			return true
		},
		DurationMin: min(4*startSpread, sc.Duration.D()),
	}
}

// KeptScenario applies k to sc (convs is the Config's ConvCount): what a
// cut duration would leave hanging over the end ends with it.
func KeptScenario(sc *scenarios.Scenario, k Kept, convs int) *scenarios.Scenario {
	out := *sc
	d := scenarios.Duration(k.Duration)
	out.Duration = d
	out.Faults = nil
	for _, i := range k.Lists[DimFaults] {
		f := sc.Faults[i]
		if f.For > 0 && f.At+f.For > d {
			f.For = d - f.At
		}
		out.Faults = append(out.Faults, f)
	}
	w := &out.Workload
	*w = sc.Workload
	w.KeepUsers = keepList(k.Lists[DimUsers], sc.Workload.Users)
	w.KeepConversations = keepList(k.Lists[DimConvs], convs)
	w.Spikes = nil
	for _, i := range k.Lists[DimSpikes] {
		sp := sc.Workload.Spikes[i]
		if sp.At+sp.For > d {
			sp.For = d - sp.At
		}
		w.Spikes = append(w.Spikes, sp)
	}
	if len(k.Lists[DimStorms]) == 0 {
		w.LoginStorm = nil
	}
	if len(k.Lists[DimNotices]) == 0 {
		w.Notices = nil
	}
	if len(k.Lists[DimChurn]) == 0 {
		w.Churn = nil
	}
	if b := sc.Workload.Broadcasts; b != nil {
		w.Broadcasts = nil
		if l := k.Lists[DimBroadcasts]; len(l) > 0 {
			w.Broadcasts = &scenarios.Broadcasts{}
			for _, i := range l {
				w.Broadcasts.At = append(w.Broadcasts.At, b.At[i])
			}
		}
	}
	return &out
}
