package chaos

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scrapeEvery is how often each service's /metrics is read. A killed
// service loses its counters: the scraper keeps what it last read and adds
// the new incarnation's on top. Incarnations are the harness's own starts
// (Env.Start), not guessed from a value going down: a gauge that falls is
// not a restart, and a restarted counter that is already past its old
// value would otherwise be lost.
const scrapeEvery = time.Second

// scrapeTimeout bounds one GET (a paused service does not answer).
const scrapeTimeout = 500 * time.Millisecond

// counterKey is one metric of one service.
type counterKey struct{ service, name string }

type counterState struct{ base, last float64 }

// scraper accumulates zzim_* counters across restarts.
type scraper struct {
	env    *Env
	client *http.Client
	mu     sync.Mutex
	state  map[counterKey]*counterState
	// inc is the incarnation of each service's last accepted scrape.
	inc                          map[string]int
	scrapes, failures, discarded int
}

func newScraper(env *Env) *scraper {
	return &scraper{env: env, client: &http.Client{Timeout: scrapeTimeout}, state: map[counterKey]*counterState{},
		inc: map[string]int{}}
}

// run scrapes every service until ctx ends.
func (s *scraper) run(ctx context.Context) {
	t := time.NewTicker(scrapeEvery)
	defer t.Stop()
	for {
		s.scrapeAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *scraper) scrapeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, svc := range s.env.Services() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.scrape(ctx, svc)
		}()
	}
	wg.Wait()
}

func (s *scraper) scrape(ctx context.Context, svc string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.env.MetricsURL(svc), nil)
	if err != nil {
		return
	}
	before := s.env.incarnation(svc)
	resp, err := s.client.Do(req)
	s.mu.Lock()
	s.scrapes++
	if err != nil {
		s.failures++
	}
	s.mu.Unlock()
	if err != nil {
		return
	}
	defer resp.Body.Close()
	vals := parseMetrics(resp.Body)
	inc := s.env.incarnation(svc)
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc != before {
		s.discarded++ // a start happened meanwhile: which incarnation answered is unknown
		return
	}
	s.add(svc, inc, vals)
}

// add records one scrape of svc's incarnation inc.
func (s *scraper) add(svc string, inc int, vals map[string]float64) {
	if inc != s.inc[svc] {
		s.inc[svc] = inc
		for k, st := range s.state {
			if k.service == svc {
				st.base += st.last // the old incarnation's final count
				st.last = 0
			}
		}
	}
	for name, v := range vals {
		k := counterKey{svc, name}
		st := s.state[k]
		if st == nil {
			st = &counterState{}
			s.state[k] = st
		}
		st.last = v
	}
}

// parseMetrics sums the samples of every zzim_* metric in Prometheus text
// format by name (labels dropped).
func parseMetrics(r io.Reader) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "zzim_") {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i > 0 {
			name = line[:i]
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

// total sums a metric over every service and incarnation.
func (s *scraper) total(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum float64
	for k, st := range s.state {
		if k.name == name {
			sum += st.base + st.last
		}
	}
	return uint64(sum)
}

// names lists the metrics seen, sorted.
func (s *scraper) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for k := range s.state {
		seen[k.name] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// ExercisedCounters are the exercised counters the chaos harness measures,
// as the scenario format names them, and how (from the services' /metrics,
// or the clients). Counters the simulator measures from its own vantage
// point (membership_changes, partitioned_messages, clock_skewed_nodes) are
// not measured here: a scenario requiring one fails with "not measured".
var ExercisedCounters = []struct{ Name, Meaning string }{
	{"failover_resends", "zzim_entry_resends + zzim_httpentry_resends: requests resent to a new logic target"},
	{"failbacks", "zzim_entry_failbacks + zzim_httpentry_failbacks: sessions moved back to their home slot"},
	{"users_remapped", "zzim_entry_failovers + zzim_httpentry_failovers: sessions moved to a slot other than their home (an upper bound on users remapped)"},
	{"unknown_resolved_by_dedup", "zzim_logic_duplicates: appends the store answered as duplicates of an earlier attempt with unknown outcome"},
	{"redeliveries_handled", "zzim_extlogic_redeliveries: queue deliveries with NumDelivered > 1"},
	{"pushes_to_offline", "zzim_entry_pushes_failed + zzim_httpentry_pushes_failed + zzim_logic_offline_publishes"},
	{"overloaded_rejections", "OVERLOADED answers in the history + zzim_extlogic_overloaded"},
	{"das_retries", "zzim_logic_retries + zzim_extlogic_store_retries"},
	{"gap_fills", "clients' GapFills"},
	{"kicked_sessions", "clients kicked by a newer login"},
	{"notices_stored", "zzim_extlogic_notices_stored"},
	{"broadcast_pushes", "zzim_extlogic_pushes"},
	{"longpoll_timeouts", "zzim_httpentry_poll_timeouts"},
	{"longpoll_reconnects", "long-poll clients' logins after their first"},
	{"presence_misses", "zzim_entry_pushes_failed + zzim_httpentry_pushes_failed"},
	{"db_crash_recoveries", "the harness: the killed primary started again and answered"},
	{"db_failovers", "the harness: the replica promoted and das's paths re-pointed"},
	{"db_lost_acknowledged", "acknowledged sends whose seq the store (the promoted primary after a failover) does not hold with their client_msg_id"},
	{"nats_node_restarts", "the harness: a killed NATS node started again and healthy"},
	{"nats_leader_changes", "the harness: the JetStream meta leader read while the node was away or after it came back differs from the one before"},
	{"presence_lost", "the harness: Redis keys (presence entries) held when Redis was killed"},
}

// depExercised are the dependency counters, from what the harness saw
// (nil: no dependency fault) and the lost acknowledged sends.
func depExercised(d *DepCounters, lost int) map[string]uint64 {
	out := map[string]uint64{"db_lost_acknowledged": uint64(lost)}
	if d == nil {
		d = &DepCounters{}
	}
	out["db_crash_recoveries"] = uint64(d.DBCrashRecoveries)
	out["db_failovers"] = uint64(d.DBFailovers)
	out["nats_node_restarts"] = uint64(d.NATSNodeRestarts)
	out["nats_leader_changes"] = uint64(d.NATSLeaderChanges)
	out["presence_lost"] = uint64(d.PresenceLost)
	return out
}

// exercised computes every counter of ExercisedCounters.
func (s *scraper) exercised(overloadedInHistory int, w *workload) map[string]uint64 {
	gapFills, _, lpReconnects, kicked := w.clientStats()
	t := s.total
	return map[string]uint64{
		"failover_resends":          t("zzim_entry_resends") + t("zzim_httpentry_resends"),
		"failbacks":                 t("zzim_entry_failbacks") + t("zzim_httpentry_failbacks"),
		"users_remapped":            t("zzim_entry_failovers") + t("zzim_httpentry_failovers"),
		"unknown_resolved_by_dedup": t("zzim_logic_duplicates"),
		"redeliveries_handled":      t("zzim_extlogic_redeliveries"),
		"pushes_to_offline":         t("zzim_entry_pushes_failed") + t("zzim_httpentry_pushes_failed") + t("zzim_logic_offline_publishes"),
		"overloaded_rejections":     uint64(overloadedInHistory) + t("zzim_extlogic_overloaded"),
		"das_retries":               t("zzim_logic_retries") + t("zzim_extlogic_store_retries"),
		"gap_fills":                 uint64(gapFills),
		"kicked_sessions":           uint64(kicked),
		"notices_stored":            t("zzim_extlogic_notices_stored"),
		"broadcast_pushes":          t("zzim_extlogic_pushes"),
		"longpoll_timeouts":         t("zzim_httpentry_poll_timeouts"),
		"longpoll_reconnects":       uint64(lpReconnects),
		"presence_misses":           t("zzim_entry_pushes_failed") + t("zzim_httpentry_pushes_failed"),
	}
}

// totals are every metric's total, for the report.
func (s *scraper) totals() map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range s.names() {
		out[n] = s.total(n)
	}
	return out
}
