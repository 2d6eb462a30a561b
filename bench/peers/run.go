package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Rows: what backs each system.
const (
	rowMemory  = "memory"  // zzim: in-memory store and queue; Centrifugo: memory engine
	rowDurable = "durable" // zzim: MariaDB + JetStream (fsync); Centrifugo: Redis engine (AOF fsync always)
)

const (
	sysZzim       = "zzim"
	sysCentrifugo = "centrifugo"
)

// p99Target is the latency bound of the saturation search.
const p99Target = 50 * time.Millisecond

// pacerTick is how often the schedule wakes to issue what came due.
const pacerTick = 250 * time.Microsecond

// settle is the pause between steps, after the drain.
const settle = 500 * time.Millisecond

type config struct {
	mode       string
	systems    []string
	rows       []string
	users      []int
	rates      []int
	warm       time.Duration // per step, not measured
	measure    time.Duration // per step, measured
	drainMax   time.Duration // per step: wait for the last deliveries
	timeout    time.Duration // the whole run
	repo       string
	binDir     string
	workDir    string
	out        string
	cpuProfile string
	syncWait   time.Duration // bound on the recipients' sync after the run (0: none)
	dasLinger  time.Duration // zzim up --das-linger (0: not passed, das's default: off)
	progress   *progress
}

type stepResult struct {
	rate                                 int
	n                                    int
	offered, acked, ackFailed, delivered int64
	dups, misdelivered, lost             int64
	failedUndelivered                    int64
	unfinished                           int64 // never answered nor delivered, once final
	corrected, raw                       quantiles
	window                               time.Duration
	windowDelivered                      int64
	cpu                                  cpuSample // server-side CPU in the window, by process
	loadCPU                              time.Duration
	runqWait                             time.Duration // the server side's threads waiting for a CPU, in the window
	pass                                 bool
	why                                  string
	retried                              string // the first try's verdict, when it failed and was run again
	drain                                time.Duration
	track                                *stepTrack

	// After every step drained, the recipients synced (runResult.recovery):
	// awaitedAtDrain are the acknowledged messages not delivered when the
	// drain ended (what the table called lost before the sync), and of
	// those, bySync arrived through the sync or history read, latePush
	// live but after the drain. lost (recount) counts what is still
	// missing after the sync; lostInStore of those are in zzim's store
	// all the same (audited: the store was read), unfinishedInStore of
	// the unfinished ones.
	awaitedAtDrain                 []int
	bySync, latePush               int64
	recoveredUnacked               int64 // never acknowledged, yet delivered by the sync
	audited                        bool
	lostInStore, unfinishedInStore int64
}

func (s *stepResult) serverCPU() time.Duration {
	var d time.Duration
	for _, v := range s.cpu {
		d += v
	}
	return d
}

// usPerMsg is server CPU µs per message delivered in the window.
func (s *stepResult) usPerMsg(d time.Duration) float64 {
	if s.windowDelivered == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(s.windowDelivered)
}

type runResult struct {
	system, row string
	users       int
	note        string
	procs       []string // server-side process names, main first
	steps       []stepResult
	retries     []stepResult // first tries of steps that were run again
	err         error
	echoes      int64
	foreign     int64
	recovery    recovery
	drainEnd    int64 // when the last drain ended (the tracker's clock)
	connect     time.Duration
	idle        cpuSample // server-side CPU with every user connected and nothing sent
	idleFor     time.Duration
}

// idleCores is the server side's CPU when idle, in cores.
func (r *runResult) idleCores() float64 {
	var d time.Duration
	for _, v := range r.idle {
		d += v
	}
	return d.Seconds() / max(r.idleFor.Seconds(), 1e-9)
}

// totals over every step of a run, after the final recount.
func (r *runResult) unfinished() int64 {
	var n int64
	for _, s := range append(slices.Clone(r.steps), r.retries...) {
		n += s.unfinished
	}
	return n
}

func (r *runResult) totals() (offered, acked, failed, delivered, lost, dups, misdelivered int64) {
	for _, s := range append(slices.Clone(r.steps), r.retries...) {
		offered += s.offered
		acked += s.acked
		failed += s.ackFailed
		delivered += s.delivered
		lost += s.lost
		dups += s.dups
		misdelivered += s.misdelivered
	}
	return
}

// best is the highest rate passed before the first failure (0: none).
func (r *runResult) best() int {
	best := 0
	for _, s := range r.steps {
		if !s.pass {
			break
		}
		best = s.rate
	}
	return best
}

func (r *runResult) at(rate int) *stepResult {
	for i := range r.steps {
		if r.steps[i].rate == rate {
			return &r.steps[i]
		}
	}
	return nil
}

// runOne measures one system on one row with n users: a fresh server,
// every user connected, then the rate steps.
func runOne(ctx context.Context, cfg *config, system, row string, n int, zzimBin, centBin string) (res runResult) {
	res = runResult{system: system, row: row, users: n}
	dir, err := os.MkdirTemp(cfg.workDir, fmt.Sprintf("%s-%s-%d-", system, row, n))
	if err != nil {
		res.err = err
		return
	}
	defer os.RemoveAll(dir)
	cfg.progress.set(fmt.Sprintf("%s %s U=%d: starting the server", system, row, n), nil)
	startCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var srv *server
	switch system {
	case sysZzim:
		srv, err = startZzim(startCtx, zzimBin, dir, row, cfg.dasLinger)
	case sysCentrifugo:
		srv, err = startCentrifugo(startCtx, centBin, dir, row)
	}
	if err != nil {
		res.err = err
		return
	}
	defer srv.stop()
	res.note = srv.note
	for _, p := range srv.procs() {
		res.procs = append(res.procs, p.name)
	}

	t := newTracker()
	cfg.progress.set(fmt.Sprintf("%s %s U=%d: connecting", system, row, n), nil)
	connStart := time.Now()
	connCtx, cancelConn := context.WithTimeout(ctx, 60*time.Second+time.Duration(n)*10*time.Millisecond)
	defer cancelConn()
	var u users
	switch system {
	case sysZzim:
		u, err = connectZzim(connCtx, t, srv.addrs, n, nil)
	case sysCentrifugo:
		u, err = connectCentrifugo(connCtx, t, srv.addrs[0], n)
	}
	if err != nil {
		res.err = err
		return
	}
	defer u.close()
	res.connect = time.Since(connStart)

	// Idle: every user connected, nothing sent. What the connections cost
	// by themselves (heartbeats, pings, periodic syncs) is in every step's
	// CPU too; this says how much.
	cfg.progress.set(fmt.Sprintf("%s %s U=%d: idle", system, row, n), nil)
	time.Sleep(settle)
	idle0 := sampleCPU(srv.procs())
	time.Sleep(cfg.measure)
	idle1 := sampleCPU(srv.procs())
	res.idle, res.idleFor = cpuSample{}, cfg.measure
	for k, v := range idle1 {
		res.idle[k] = v - idle0[k]
	}

	failed := false
	for i, rate := range cfg.rates {
		if ctx.Err() != nil {
			res.err = fmt.Errorf("stopped before %d msg/s: %w", rate, ctx.Err())
			break
		}
		if failed && !quoted(rate) {
			// Past the first failure only the rates the table quotes still
			// run: the highest rate is found, and each step's backlog would
			// spoil the next.
			continue
		}
		label := fmt.Sprintf("%s %s U=%d", system, row, n)
		step := runStep(ctx, cfg, t, u, srv, 2*i, rate, n, label)
		if !failed && !step.pass && step.lost == 0 && step.misdelivered == 0 && srv.main.alive() && ctx.Err() == nil {
			// One more try at the same rate: on a machine shared with other
			// work one neighbour's burst can spoil a step. Its messages stay
			// tracked (late ones still count), but the verdict is the retry's.
			first := step
			waitDelivered(first.track, cfg.drainMax)
			step = runStep(ctx, cfg, t, u, srv, 2*i+1, rate, n, label+" (again)")
			step.retried = "first try: " + first.why
			step.recount(false)
			res.retries = append(res.retries, first)
		}
		res.steps = append(res.steps, step)
		if !srv.main.alive() {
			res.err = fmt.Errorf("%s exited: %s", srv.main.name, srv.main.tail())
			break
		}
		if !step.pass {
			failed = true
		}
		if failed && rate >= quotedRates[len(quotedRates)-1] {
			break
		}
	}
	// Late deliveries still count: recount every step's losses once more.
	deadline := time.Now().Add(cfg.drainMax)
	for time.Now().Before(deadline) && missing(res.steps)+missing(res.retries) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	all := func(f func(s *stepResult)) {
		for i := range res.retries {
			f(&res.retries[i])
		}
		for i := range res.steps {
			f(&res.steps[i])
		}
	}
	res.drainEnd = t.now()
	all(func(s *stepResult) { s.awaitedAtDrain = s.track.missingAcked() })
	if ctx.Err() == nil && srv.main.alive() && cfg.syncWait > 0 {
		// Live push is best effort in both systems; what an acknowledged
		// send promises is that the message can be fetched. The recipients
		// fetch it, so that only a message missing from the server counts
		// as lost.
		cfg.progress.set(fmt.Sprintf("%s %s U=%d: recipients sync", system, row, n), nil)
		res.recovery = recoverAll(ctx, cfg, t, u, res.steps, res.retries)
	}
	all(func(s *stepResult) { s.classify() })
	if srv.dsn != "" && ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		stored, rows, err := storeMessages(actx, srv.dsn)
		cancel()
		res.recovery.storeRows, res.recovery.storeErr = rows, err
		if err == nil {
			all(func(s *stepResult) { s.audit(stored) })
		}
	}
	for i := range res.retries {
		res.retries[i].recount(true)
	}
	for i := range res.steps {
		res.steps[i].recount(true)
	}
	res.echoes, res.foreign = t.echoes.Load(), t.foreign.Load()
	res.recovery.deliveriesAfterFreeze = t.deliveriesAfterFreeze.Load()
	return res
}

// recovery is what the after-run sync did.
type recovery struct {
	ran     bool
	took    time.Duration
	settled time.Duration // waiting for the sends the clients still held, before the sync
	// sends neither answered nor delivered when the drain ended, and when
	// the sync was issued
	unansweredAtDrain, unansweredAtSync int64
	failed                              int64  // history reads that got an error (Centrifugo)
	ended                               string // why the sync's wait ended: endDone, endQuiet or endDeadline
	storeRows                           int64  // rows in zzim's messages table (durable row), read after the sync
	storeErr                            error
	// deliveriesAfterFreeze: what arrived after the counts froze, up to the report.
	deliveriesAfterFreeze int64
}

// Bounds of the after-run sync. It waits first for the sends the clients
// still hold (until none is unanswered, or nothing is answered or
// delivered for recoverQuiet, at least recoverMin after it began, or half
// of cfg.syncWait), then issues the sync and waits the same way for what
// is missing, within cfg.syncWait in all.
const (
	endDone     = "nothing acknowledged was missing and no send unanswered any more"
	endQuiet    = "quiet" // nothing answered nor delivered for recoverQuiet
	endDeadline = "its time was up (-sync-wait)"
)

const (
	recoverMin   = 3 * time.Second
	recoverQuiet = 5 * time.Second
)

func recoverAll(ctx context.Context, cfg *config, t *tracker, u users, steps ...[]stepResult) recovery {
	rec := recovery{ran: true}
	begin := time.Now()
	t.recovering.Store(true)
	rctx, cancel := context.WithTimeout(ctx, cfg.syncWait)
	defer cancel()
	count := func() (progress, missing, unanswered int64) {
		for _, ss := range steps {
			for i := range ss {
				st := ss[i].track
				u := st.undelivered()
				progress += st.recovered.Load() + st.acked.Load() + st.ackFailed.Load()
				missing += u.acked
				unanswered += u.unanswered
			}
		}
		return
	}
	// wait returns when done says so, or when nothing was delivered nor
	// answered for recoverQuiet (after recoverMin), or at the deadline,
	// and says which.
	wait := func(deadline time.Time, done func(missing, unanswered int64) bool) string {
		start, last, lastChange := time.Now(), int64(-1), time.Now()
		for rctx.Err() == nil && time.Now().Before(deadline) {
			p, miss, unans := count()
			if done(miss, unans) {
				return endDone
			}
			if p != last {
				last, lastChange = p, time.Now()
			}
			if time.Since(start) >= recoverMin && time.Since(lastChange) >= recoverQuiet {
				return endQuiet
			}
			time.Sleep(100 * time.Millisecond)
		}
		return endDeadline
	}
	// First the sends the clients still hold: past its capacity a server
	// is still answering its backlog when the drain ends, and a message it
	// commits after the sync below would escape it. Half the budget.
	_, _, rec.unansweredAtDrain = count()
	wait(begin.Add(cfg.syncWait/2), func(_, unanswered int64) bool { return unanswered == 0 })
	_, _, rec.unansweredAtSync = count()
	rec.settled = time.Since(begin)
	rec.failed = u.recover(rctx)
	rec.ended = wait(begin.Add(cfg.syncWait), func(missing, unanswered int64) bool { return missing == 0 && unanswered == 0 })
	// Freeze before the store is read: every send counted acknowledged
	// is then committed before that read.
	t.frozen.Store(true)
	rec.took = time.Since(begin)
	return rec
}

// classify splits the messages awaited when the drain ended by how they
// came after it, and counts the unacknowledged ones the sync delivered.
func (s *stepResult) classify() {
	s.bySync, s.latePush = 0, 0
	for _, id := range s.awaitedAtDrain {
		switch s.track.late[id].Load() {
		case lateSync:
			s.bySync++
		case lateLive:
			s.latePush++
		}
	}
	_, s.recoveredUnacked = s.track.recoveredBy()
}

// audit looks up the still undelivered messages in what the store holds.
func (s *stepResult) audit(stored map[msgKey][]string) {
	s.audited = true
	s.lostInStore, s.unfinishedInStore = 0, 0
	t := s.track
	for i := range t.n {
		if t.deliveries[i].Load() != 0 {
			continue
		}
		if _, ok := stored[msgKey{s.track.stepNo, i}]; !ok {
			continue
		}
		switch t.acks[i].Load() {
		case ackOK:
			s.lostInStore++
		case ackNone:
			s.unfinishedInStore++
		}
	}
}

// waitDelivered waits (bounded) for a step's last deliveries.
func waitDelivered(st *stepTrack, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if st.undelivered().awaited() == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func missing(steps []stepResult) int64 {
	var m int64
	for i := range steps {
		s := steps[i].track
		m += s.undelivered().awaited()
	}
	return m
}

// recount refreshes the counts after later deliveries, and judges the
// step: final says no later delivery is awaited, so what is missing then
// is lost rather than late.
func (s *stepResult) recount(final bool) {
	t := s.track
	s.offered, s.acked, s.ackFailed = t.offered.Load(), t.acked.Load(), t.ackFailed.Load()
	s.delivered, s.dups, s.misdelivered = t.delivered.Load(), t.dups.Load(), t.misdelivered.Load()
	u := t.undelivered()
	s.failedUndelivered = u.failed
	s.lost, s.unfinished = 0, 0
	if final {
		s.lost, s.unfinished = u.acked, u.unanswered
	}
	var why []string
	if s.corrected.p99 >= p99Target {
		why = append(why, fmt.Sprintf("p99 %s", s.corrected.p99.Round(time.Millisecond)))
	}
	if s.ackFailed > 0 {
		why = append(why, fmt.Sprintf("%d sends failed at the client (%d of them not delivered)", s.ackFailed, u.failed))
	}
	if final && len(s.awaitedAtDrain) > 0 {
		why = append(why, fmt.Sprintf("%d acknowledged but not delivered when the drain ended (then %d by the recipients' sync, %d live but late)",
			len(s.awaitedAtDrain), s.bySync, s.latePush))
	}
	switch {
	case final && u.acked > 0:
		w := fmt.Sprintf("%d LOST (acknowledged, delivered neither live nor by the recipients' sync)", u.acked)
		if s.audited {
			w += fmt.Sprintf(": %d of them in the store, %d not", s.lostInStore, u.acked-s.lostInStore)
		}
		why = append(why, w)
	case u.acked > 0:
		why = append(why, fmt.Sprintf("%d acknowledged but not delivered within %s", u.acked, s.drain))
	}
	switch {
	case final && u.unanswered > 0:
		why = append(why, fmt.Sprintf("%d unfinished (no answer by the end: still held by the client)", u.unanswered))
	case u.unanswered > 0:
		why = append(why, fmt.Sprintf("%d unanswered within %s", u.unanswered, s.drain))
	}
	if s.misdelivered > 0 {
		why = append(why, fmt.Sprintf("%d misdelivered", s.misdelivered))
	}
	s.pass, s.why = len(why) == 0, strings.Join(why, "; ")
	if s.retried != "" {
		s.why = strings.TrimPrefix(s.why+"; "+s.retried, "; ")
	}
}

// quotedRates are the rates whose p50/p99 the table gives.
var quotedRates = []int{1000, 5000}

func quoted(rate int) bool { return slices.Contains(quotedRates, rate) }

// runStep offers rate msg/s for warm+measure, open-loop: message i is due
// at start + i/rate whatever happened to the ones before it, and its
// latency counts from then (coordinated omission corrected) as well as
// from when its client took it (raw).
func runStep(ctx context.Context, cfg *config, t *tracker, u users, srv *server, stepNo, rate, nUsers int, label string) stepResult {
	total := cfg.warm + cfg.measure
	n := int(int64(rate) * int64(total) / int64(time.Second))
	start := t.now() + int64(20*time.Millisecond)
	st := newStepTrack(n, start+int64(cfg.warm))
	st.stepNo = stepNo
	st.frozen = &t.frozen
	st.epoch = t.epoch
	for i := range n {
		st.intended[i] = start + int64(i)*int64(time.Second)/int64(rate)
	}
	t.steps[stepNo].Store(st)
	cfg.progress.set(fmt.Sprintf("%s: %d msg/s", label, rate), st)
	pairs := nUsers / 2
	procs := srv.procs()
	var cpu0 cpuSample
	var load0, wait0 time.Duration
	var w0 int64
	measuring := false
	beginWindow := func(now int64) {
		cpu0, load0, wait0, w0 = sampleCPU(procs), selfCPU(), runqWaitOf(procs), now
		t.windowDeliveries.Store(0)
		t.counting.Store(true)
		measuring = true
	}
	for next := 0; next < n; {
		now := t.now()
		if !measuring && now >= st.warmEnd {
			beginWindow(now)
		}
		for next < n && st.intended[next] <= now {
			p, dir := next%pairs, (next/pairs)%2
			from := 2*p + dir
			u.send(from, st, next, body(stepNo, next, from^1))
			st.offered.Add(1)
			next++
		}
		time.Sleep(pacerTick)
	}
	if !measuring {
		beginWindow(t.now())
	}
	for end := start + int64(total); t.now() < end; {
		time.Sleep(pacerTick)
	}
	now := t.now()
	t.counting.Store(false)
	cpu1, load1, wait1 := sampleCPU(procs), selfCPU(), runqWaitOf(procs)
	res := stepResult{rate: rate, n: n, track: st, window: time.Duration(now - w0), windowDelivered: t.windowDeliveries.Load(),
		loadCPU: load1 - load0, runqWait: wait1 - wait0, cpu: cpuSample{}}
	for k, v := range cpu1 {
		res.cpu[k] = v - cpu0[k]
	}
	// Drain: the step's last messages, bounded.
	waitDelivered(st, cfg.drainMax)
	res.corrected, res.raw = st.latencies()
	res.drain = cfg.drainMax
	res.recount(false)
	cfg.progress.logf("%s: %d msg/s: delivered %d/%d, p50 %s p99 %s (raw p99 %s), server %.1f µs/msg (%.2f cores, %.2f waiting for one), load generator %.2f cores, pass=%v %s",
		label, rate, res.delivered, n, ms(res.corrected.p50), ms(res.corrected.p99), ms(res.raw.p99),
		res.usPerMsg(res.serverCPU()), res.serverCPU().Seconds()/max(res.window.Seconds(), 1e-9), res.runqWait.Seconds()/max(res.window.Seconds(), 1e-9),
		res.loadCPU.Seconds()/max(res.window.Seconds(), 1e-9), res.pass, res.why)
	time.Sleep(settle)
	return res
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

// runAll runs every (row, U, system) of cfg in turn and returns the results.
func runAll(ctx context.Context, cfg *config) ([]runResult, error) {
	if err := os.MkdirAll(cfg.workDir, 0o755); err != nil {
		return nil, err
	}
	cfg.progress.set("building zzim and Centrifugo", nil)
	zzimBin, centBin, err := buildBinaries(cfg.repo, cfg.binDir)
	if err != nil {
		return nil, err
	}
	var out []runResult
	for _, row := range cfg.rows {
		if row == rowDurable {
			if err := haveDurableDeps(); err != nil {
				for _, n := range cfg.users {
					for _, s := range cfg.systems {
						out = append(out, runResult{system: s, row: row, users: n, err: err})
					}
				}
				continue
			}
		}
		for _, n := range cfg.users {
			for _, s := range cfg.systems {
				if ctx.Err() != nil {
					out = append(out, runResult{system: s, row: row, users: n, err: ctx.Err()})
					continue
				}
				out = append(out, runOne(ctx, cfg, s, row, n, zzimBin, centBin))
			}
		}
	}
	return out, nil
}

// progress prints what the benchmark is doing: redrawn on a terminal, one
// line every progressEvery in a log.
type progress struct {
	mu    sync.Mutex
	label string
	st    *stepTrack
	tty   bool
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

const progressEvery = 5 * time.Second

func newProgress() *progress {
	fi, err := os.Stderr.Stat()
	p := &progress{tty: err == nil && fi.Mode()&os.ModeCharDevice != 0, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progress) set(label string, st *stepTrack) {
	p.mu.Lock()
	p.label, p.st = label, st
	p.mu.Unlock()
}

func (p *progress) line() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := fmt.Sprintf("[%s] %s", time.Since(p.start).Round(time.Second), p.label)
	if p.st != nil {
		s += fmt.Sprintf(": offered %d/%d, acked %d, delivered %d", p.st.offered.Load(), p.st.n, p.st.acked.Load(), p.st.delivered.Load())
	}
	return s
}

func (p *progress) loop() {
	defer close(p.done)
	every := progressEvery
	if p.tty {
		every = 500 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			if p.tty {
				fmt.Fprint(os.Stderr, "\r\033[K")
			}
			return
		case <-tick.C:
			if p.tty {
				fmt.Fprintf(os.Stderr, "\r\033[K%s", p.line())
			} else {
				fmt.Fprintln(os.Stderr, p.line())
			}
		}
	}
}

// logf prints a finished step on its own line.
func (p *progress) logf(format string, args ...any) {
	if p.tty {
		fmt.Fprint(os.Stderr, "\r\033[K")
	}
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (p *progress) close() {
	close(p.stop)
	<-p.done
}

func absDir(d string) string {
	if a, err := filepath.Abs(d); err == nil {
		return a
	}
	return d
}
