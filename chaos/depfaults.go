package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/bugs"
)

// Faults of a dependency itself (not of the paths to it): the primary
// database crashes, fails over or freezes, a NATS node dies or is cut off,
// Redis dies and comes back empty.
const (
	kindDBCrash       = scenarios.DBCrash
	kindDBFailover    = scenarios.DBFailover
	kindDBPause       = scenarios.DBPause
	kindNATSKill      = scenarios.NATSKill
	kindNATSPartition = scenarios.NATSPartition
	kindRedisKill     = scenarios.RedisKill
)

// bugNoSemiSync: the primary acknowledges commits before the replica has
// them (the harness turns semi-sync off before the run).
const bugNoSemiSync = bugs.NoSemiSync

// harnessBugs break a dependency's setting, not a service: the services
// are not given them (no service has a switch to honour).
var harnessBugs = []bugs.Switch{bugNoSemiSync}

// natsLeaderTarget resolves, when the fault fires, to the JetStream meta
// leader; natsFollowerTarget to the first node (by name) that is not: a
// fixed node is the leader in about one run of three (the cluster elects at
// random), and its loss is then a leader loss.
const (
	natsLeaderTarget   = scenarios.NATSLeader
	natsFollowerTarget = scenarios.NATSFollower
)

// depReadyMax bounds a restarted dependency's return to service.
const depReadyMax = 60 * time.Second

// depKinds are the dependency fault kinds.
var depKinds = scenarios.DependencyKinds

// needsReplicatedDB and needsNATSCluster: only the scenarios that need a
// replicated dependency pay for one.
func needsReplicatedDB(faults []scenarios.Fault) bool {
	for _, f := range faults {
		if f.What == kindDBFailover {
			return true
		}
	}
	return false
}

func needsNATSCluster(faults []scenarios.Fault) bool {
	for _, f := range faults {
		if f.What == kindNATSKill || f.What == kindNATSPartition {
			return true
		}
	}
	return false
}

// DepCounters are what the harness saw its dependency faults do: the
// exercised counters of the dependency scenarios.
type DepCounters struct {
	// DBCrashRecoveries: the primary was restarted and answered again.
	DBCrashRecoveries int `json:"db_crash_recoveries"`
	// DBFailovers: the replica was promoted and das re-pointed.
	DBFailovers int `json:"db_failovers"`
	// NATSNodeRestarts: a killed NATS node was started and healthy again.
	NATSNodeRestarts int `json:"nats_node_restarts"`
	// NATSLeaderChanges: the meta leader read while the node was away, or
	// after it was back, differed from the one read before the fault.
	NATSLeaderChanges int `json:"nats_leader_changes"`
	// PresenceLost: Redis keys (presence entries) held when Redis was killed.
	PresenceLost int `json:"presence_lost"`
	// Promotions are the failovers' details.
	Promotions []Promotion `json:"promotions,omitempty"`
	// Leaders are the meta leaders read before and after each NATS fault.
	Leaders []LeaderChange `json:"nats_leaders,omitempty"`
}

// LeaderChange is the meta leader before and after one NATS fault.
type LeaderChange struct {
	Target string `json:"target"` // the node the fault took
	Before string `json:"before"`
	During string `json:"during"` // elected by the others while the node was away
	After  string `json:"after"`
}

// depState is a plan's record of what its dependency faults did.
type depState struct {
	mu sync.Mutex
	c  DepCounters
}

func (d *depState) add(fn func(c *DepCounters)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fn(&d.c)
}

func (d *depState) snapshot() DepCounters {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.c
	c.Promotions = append([]Promotion(nil), d.c.Promotions...)
	c.Leaders = append([]LeaderChange(nil), d.c.Leaders...)
	return c
}

// firstStart is when the first fault started (history clock; 0: none did).
func (p *faultPlan) firstStart() int64 {
	var first int64
	for _, r := range p.records {
		if r.Start > 0 && (first == 0 || r.Start < first) {
			first = r.Start
		}
	}
	return first
}

// hasDepFaults reports whether the plan holds a dependency fault.
func (p *faultPlan) hasDepFaults() bool {
	for _, r := range p.records {
		for _, k := range depKinds {
			if r.What == string(k) {
				return true
			}
		}
	}
	return false
}

// depInjection maps a dependency fault; r is its timeline record (the
// node a nats-leader target resolved to is written into its note).
func (p *faultPlan) depInjection(f scenarios.Fault, r *FaultRecord) (injection, string, string, bool) {
	e := p.env
	switch f.What {
	case kindDBCrash:
		return injection{
			prepare: func(ctx context.Context) error { return e.checkDurable(ctx, e.Primary()) },
			start: func(ctx context.Context) error {
				if err := e.proxies.setEnabled(e.dasDBPaths(), false); err != nil {
					return err
				}
				return e.Kill(ctx, e.Primary())
			},
			stop: func(ctx context.Context) error {
				if err := e.Start(ctx, e.Primary()); err != nil {
					return err
				}
				if err := e.waitDB(ctx); err != nil {
					return err
				}
				if err := e.proxies.setEnabled(e.dasDBPaths(), true); err != nil {
					return err
				}
				p.dep.add(func(c *DepCounters) { c.DBCrashRecoveries++ })
				return nil
			},
		}, StatusApplied, "das's paths to the primary refused and the primary SIGKILLed, started again at the end (InnoDB crash recovery), the paths opened once it answers", true
	case kindDBPause:
		return injection{
			start: func(ctx context.Context) error { return e.Pause(ctx, e.Primary()) },
			stop:  func(ctx context.Context) error { return e.Unpause(ctx, e.Primary()) },
		}, StatusApplied, "docker pause of the primary (connections stay open, answers stop)", true
	case kindDBFailover:
		return p.dbFailover(f)
	case kindNATSKill, kindNATSPartition:
		return p.natsFault(f, r)
	case kindRedisKill:
		return injection{
			start: func(ctx context.Context) error {
				n, err := e.PresenceKeys(ctx)
				if err != nil {
					return fmt.Errorf("count presence before the kill: %w", err)
				}
				if err := e.Kill(ctx, depRedis); err != nil {
					return err
				}
				p.dep.add(func(c *DepCounters) { c.PresenceLost += n })
				return nil
			},
			stop: func(ctx context.Context) error {
				if err := e.Start(ctx, depRedis); err != nil {
					return err
				}
				return probeFor(ctx, depReadyMax, "redis", func(ctx context.Context) error {
					_, err := e.execIn(ctx, depRedis, "redis-cli", "PING")
					return err
				})
			},
		}, StatusApplied, "SIGKILL of Redis, started again empty at the end (no persistence)", true
	}
	return injection{}, "", "", false
}

// dbFailover: before the traffic the replication path gets the lag and,
// for replication async, the primary stops waiting for the replica; at
// `at` the primary is killed; at `at+for` the replica is promoted.
func (p *faultPlan) dbFailover(f scenarios.Fault) (injection, string, string, bool) {
	e := p.env
	mode, lag := f.Replication(), f.Lag()
	semiSync := mode == scenarios.ReplicationSemiSync && !e.cfg.Bugs.On(bugNoSemiSync)
	inj := injection{
		prepare: func(ctx context.Context) error {
			for _, server := range []string{depMariaDB, depReplica} {
				if err := e.checkDurable(ctx, server); err != nil {
					return err
				}
			}
			if lag > 0 {
				if err := e.proxies.toxic([]string{depReplica + "->" + depMariaDB}, "replication-lag", "latency", "downstream", 1,
					toxiproxy.Attributes{"latency": int64(lag / time.Millisecond)}); err != nil {
					return err
				}
			}
			if !semiSync {
				if err := e.SetSemiSync(ctx, false); err != nil {
					return err
				}
			}
			st, err := e.SemiSyncState(ctx)
			if err != nil {
				return err
			}
			if semiSync && (!st.Status || st.Clients < 1) {
				return fmt.Errorf("semi-sync is not in force before the run: %+v", st)
			}
			if !semiSync && st.Enabled {
				return fmt.Errorf("semi-sync still enabled for an asynchronous run: %+v", st)
			}
			return nil
		},
		// The replication path is cut first: what the lag holds in flight
		// dies with the primary's host (toxiproxy would otherwise deliver
		// it after the kill, and nothing could ever be lost).
		start: func(ctx context.Context) error {
			if err := e.proxies.setEnabled([]string{depReplica + "->" + depMariaDB}, false); err != nil {
				return err
			}
			if err := e.proxies.setEnabled(e.dasDBPaths(), false); err != nil {
				return err
			}
			return e.Kill(ctx, depMariaDB)
		},
		stop: func(ctx context.Context) error {
			pr, err := e.Promote(ctx)
			if err != nil {
				return err
			}
			p.dep.add(func(c *DepCounters) { c.DBFailovers++; c.Promotions = append(c.Promotions, pr) })
			return nil
		},
	}
	how := "semi-synchronous (AFTER_SYNC)"
	switch {
	case mode == scenarios.ReplicationAsync:
		how = "asynchronous (semi-sync off on the primary)"
	case !semiSync:
		how = "semi-sync turned off by the no-semisync bug"
	}
	return inj, StatusApplied, fmt.Sprintf("%s replication, %s lag on the replication path; the replication path cut, das's paths refused and the primary SIGKILLed, then the replica promoted and das's paths re-pointed at it and opened; the old primary stays down",
		how, lag), true
}

// natsFault: nats-kill SIGKILLs the node and starts it at the end;
// nats-partition takes it off the network. The meta leader is read before
// and after.
func (p *faultPlan) natsFault(f scenarios.Fault, r *FaultRecord) (injection, string, string, bool) {
	e := p.env
	target := strings.TrimSpace(f.Target)
	var node, before string
	kill := f.What == kindNATSKill
	inj := injection{
		start: func(ctx context.Context) error {
			l, err := e.waitNATSLeader(ctx)
			if err != nil {
				return err
			}
			before, node = l, target
			switch target {
			case natsLeaderTarget:
				node = l
			case natsFollowerTarget:
				node = e.natsFollower(l)
			}
			p.mu.Lock()
			r.Note += "; took " + node + " (meta leader " + l + ")"
			p.mu.Unlock()
			if kill {
				return e.Kill(ctx, node)
			}
			return e.Disconnect(ctx, node)
		},
		stop: func(ctx context.Context) error {
			if node == "" {
				return nil
			}
			// The leader the other nodes elected while this one was away
			// (a leader that comes back is a follower of a newer term, or
			// wins again: reading only afterwards could miss the change).
			during, err := e.waitNATSLeader(ctx)
			if err != nil {
				return fmt.Errorf("no meta leader while %s is away: %w", node, err)
			}
			if kill {
				err = e.Start(ctx, node)
			} else {
				err = e.Reconnect(ctx, node)
			}
			if err != nil {
				return err
			}
			if err := e.waitNATSHealthy(ctx, node); err != nil {
				return err
			}
			after, err := e.waitNATSLeader(ctx)
			if err != nil {
				return err
			}
			p.dep.add(func(c *DepCounters) {
				if kill {
					c.NATSNodeRestarts++
				}
				if during != before || after != before {
					c.NATSLeaderChanges++
				}
				c.Leaders = append(c.Leaders, LeaderChange{Target: node, Before: before, During: during, After: after})
			})
			return nil
		},
	}
	note := "SIGKILL, started again at the end"
	if !kill {
		note = "docker network disconnect, reconnected with its alias at the end"
	}
	return inj, StatusApplied, note, true
}

// dasDBPaths are das's paths to the primary. A dependency fault that kills
// the primary first refuses them (what a host whose database process died
// answers, and what a VIP or proxy does once it sees the primary dead), and
// opens them when a primary answers again. Left open, a connection that
// toxiproxy dials to the dead container's address can hang for minutes on
// SYN retries, and toxiproxy dials in its accept loop: that path accepts
// nothing meanwhile, and re-pointing it waits for the dial (measured: the
// re-point of das-1's path timed out after 25 s, the promotion failed).
func (e *Env) dasDBPaths() []string { return e.proxies.match("das-*", depMariaDB, false) }

// natsFollower is the first node that is neither leader nor down.
func (e *Env) natsFollower(leader string) string {
	for _, n := range e.natsNodes {
		if n != leader && !e.isDown(n) {
			return n
		}
	}
	return e.natsNodes[0]
}

// checkDurable fails unless a MariaDB server keeps what it acknowledged
// through its own crash: the redo log flushed and synced at every commit,
// and, with a binary log, the binary log synced too (InnoDB crash recovery
// rolls back a prepared transaction the binary log lost). A crash scenario
// on a server set for speed would measure the setting, not zzim.
func (e *Env) checkDurable(ctx context.Context, server string) error {
	out, err := e.sqlAdmin(ctx, server, "SELECT @@GLOBAL.innodb_flush_log_at_trx_commit, @@GLOBAL.log_bin, @@GLOBAL.sync_binlog")
	if err != nil {
		return fmt.Errorf("durability settings of %s: %w", server, err)
	}
	if err := durable(out); err != nil {
		return fmt.Errorf("%s: %w", server, err)
	}
	return nil
}

// durable judges the row innodb_flush_log_at_trx_commit, log_bin, sync_binlog.
func durable(row string) error {
	f := strings.Fields(row)
	if len(f) != 3 {
		return fmt.Errorf("durability settings: got %q, want 3 values", row)
	}
	if f[0] != "1" || (f[1] == "1" && f[2] != "1") {
		return fmt.Errorf("commits are not synced: innodb_flush_log_at_trx_commit=%s log_bin=%s sync_binlog=%s, want 1, and sync_binlog=1 with a binary log",
			f[0], f[1], f[2])
	}
	return nil
}

// waitDB waits until the current primary answers.
func (e *Env) waitDB(ctx context.Context) error {
	dsn := e.PrimaryDSN()
	return probeFor(ctx, depReadyMax, e.Primary(), func(ctx context.Context) error { return pingDB(ctx, dsn) })
}

// waitNATSHealthy waits for a node's /healthz (JetStream current).
func (e *Env) waitNATSHealthy(ctx context.Context, n string) error {
	st, err := e.container(n)
	if err != nil {
		return err
	}
	url := "http://" + st.hosts[natsMonitorPort] + "/healthz"
	return probeFor(ctx, depReadyMax, n+" /healthz", func(ctx context.Context) error { return httpOK(ctx, url) })
}
