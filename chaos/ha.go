package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// Replicated dependencies (EnvConfig.ReplicatedDB, EnvConfig.NATSCluster),
// started only for scenarios whose faults touch a dependency itself:
//
//	mariadb          the primary (ZZIM_MARIADB_ROLE=primary: GTID binary
//	                 log, semi-synchronous, AFTER_SYNC, one-hour timeout)
//	mariadb-replica  the replica, replicating through toxiproxy
//	                 ("mariadb-replica->mariadb"), so a lag is a latency
//	                 toxic on that path
//	nats-0..2        a JetStream cluster; the services get all three URLs,
//	                 so the streams and the registry bucket are R3
//
// das reaches the primary through its "das-N->mariadb" paths, which a
// promotion re-points at the replica (what a VIP, ProxySQL or MaxScale does
// in production): das keeps one DSN, and the decision to promote is the
// harness's alone, so an old primary coming back cannot take writes.

// Dependency names on the private network.
const (
	depReplica = "mariadb-replica"
	// natsClusterSize is the JetStream cluster's node count.
	natsClusterSize = 3
	natsMonitorPort = "8222/tcp"
	natsClientPort  = "4222/tcp"
)

// Bounds of the harness's own waits on the dependencies.
const (
	// promoteApplyMax bounds the wait for the replica to apply its relay
	// log before a promotion.
	promoteApplyMax = 30 * time.Second
	// semiSyncWaitMax bounds the wait for the replica to connect as a
	// semi-synchronous client before the run.
	semiSyncWaitMax = 60 * time.Second
	// leaderReadMax bounds the wait for a JetStream meta leader.
	leaderReadMax = 20 * time.Second
	// execTimeout bounds one admin command in a dependency's container.
	execTimeout = 10 * time.Second
)

// natsNodeNames are the NATS containers of a run.
func natsNodeNames(cluster bool) []string {
	if !cluster {
		return []string{depNATS}
	}
	out := make([]string, natsClusterSize)
	for i := range out {
		out[i] = depNATS + "-" + strconv.Itoa(i)
	}
	return out
}

// execIn runs cmd in a dependency's container and returns its output; a
// non-zero exit is an error carrying the output.
func (e *Env) execIn(ctx context.Context, name string, cmd ...string) (string, error) {
	st, err := e.container(name)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, execTimeout)
	defer cancel()
	code, r, err := st.ctr.Exec(ctx, cmd, tcexec.Multiplexed())
	if err != nil {
		return "", fmt.Errorf("exec in %s: %w", name, err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("exec in %s: read output: %w", name, err)
	}
	if code != 0 {
		return "", fmt.Errorf("exec in %s: %s: exit %d: %s", name, strings.Join(cmd, " "), code, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// sqlAdmin runs statements as MariaDB's root over the container's socket
// (root has no network account: the harness needs no credentials of its
// own) and returns the tab-separated rows.
func (e *Env) sqlAdmin(ctx context.Context, server, statements string) (string, error) {
	return e.execIn(ctx, server, "mariadb", "--protocol=socket", "-N", "-B", "-e", statements)
}

// globalStatus reads SHOW GLOBAL STATUS values by name.
func (e *Env) globalStatus(ctx context.Context, server string, names ...string) (map[string]string, error) {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	out, err := e.sqlAdmin(ctx, server, "SHOW GLOBAL STATUS WHERE Variable_name IN ("+strings.Join(quoted, ",")+")")
	if err != nil {
		return nil, err
	}
	vals := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			vals[k] = v
		}
	}
	return vals, nil
}

// SemiSync is the primary's semi-synchronous replication state.
type SemiSync struct {
	Enabled bool `json:"enabled"` // rpl_semi_sync_master_enabled
	Status  bool `json:"status"`  // Rpl_semi_sync_master_status: ON while commits wait for the replica
	Clients int  `json:"clients"` // Rpl_semi_sync_master_clients
	YesTx   int  `json:"yes_tx"`  // commits the replica acknowledged
	NoTx    int  `json:"no_tx"`   // commits acknowledged without it
}

// SemiSyncState reads the primary's semi-sync state.
func (e *Env) SemiSyncState(ctx context.Context) (SemiSync, error) {
	vals, err := e.globalStatus(ctx, depMariaDB, "Rpl_semi_sync_master_status", "Rpl_semi_sync_master_clients",
		"Rpl_semi_sync_master_yes_tx", "Rpl_semi_sync_master_no_tx")
	if err != nil {
		return SemiSync{}, err
	}
	en, err := e.sqlAdmin(ctx, depMariaDB, "SELECT @@GLOBAL.rpl_semi_sync_master_enabled")
	if err != nil {
		return SemiSync{}, err
	}
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	return SemiSync{Enabled: strings.TrimSpace(en) == "1", Status: vals["Rpl_semi_sync_master_status"] == "ON",
		Clients: atoi(vals["Rpl_semi_sync_master_clients"]), YesTx: atoi(vals["Rpl_semi_sync_master_yes_tx"]),
		NoTx: atoi(vals["Rpl_semi_sync_master_no_tx"])}, nil
}

// SetSemiSync turns the primary's semi-synchronous wait on or off: off,
// a commit is acknowledged as soon as the primary has it (asynchronous
// replication, or the no-semisync bug).
func (e *Env) SetSemiSync(ctx context.Context, on bool) error {
	v := "OFF"
	if on {
		v = "ON"
	}
	_, err := e.sqlAdmin(ctx, depMariaDB, "SET GLOBAL rpl_semi_sync_master_enabled = "+v)
	return err
}

// waitReplication waits until the replica replicates, and, when want is
// set, until the primary waits for it (semi-sync ON with one client).
func (e *Env) waitReplication(ctx context.Context, semiSync bool) error {
	ctx, cancel := context.WithTimeout(ctx, semiSyncWaitMax)
	defer cancel()
	var last string
	for {
		st, err := e.SemiSyncState(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case !semiSync && !st.Enabled:
			s, err := e.replicaStatus(ctx)
			if err == nil && s["Slave_IO_Running"] == "Yes" && s["Slave_SQL_Running"] == "Yes" {
				return nil
			}
			last = fmt.Sprintf("replica threads io=%s sql=%s (%v)", s["Slave_IO_Running"], s["Slave_SQL_Running"], err)
		case semiSync && st.Enabled && st.Status && st.Clients >= 1:
			return nil
		default:
			last = fmt.Sprintf("semi-sync enabled=%v status=%v clients=%d", st.Enabled, st.Status, st.Clients)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication not ready within %s: %s", semiSyncWaitMax, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// replicaStatus is SHOW SLAVE STATUS on the replica, by column (empty when
// it is not a replica any more).
func (e *Env) replicaStatus(ctx context.Context) (map[string]string, error) {
	// -E prints one "Column: value" line per column: names included, and
	// robust to the column list changing between versions.
	out, err := e.execIn(ctx, depReplica, "mariadb", "--protocol=socket", "-E", "-e", "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	vals := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			vals[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return vals, nil
}

// relayApplied reports whether the replica has applied everything it
// received from the primary.
func relayApplied(s map[string]string) bool {
	return s["Master_Log_File"] != "" && s["Master_Log_File"] == s["Relay_Master_Log_File"] &&
		s["Read_Master_Log_Pos"] == s["Exec_Master_Log_Pos"] && s["Slave_SQL_Running"] == "Yes"
}

// Promotion is what a failover did.
type Promotion struct {
	// AppliedWait is how long the replica took to apply its relay log.
	AppliedWait time.Duration `json:"applied_wait"`
	// Stop is STOP SLAVE, RESET SLAVE ALL and read_only off.
	Stop time.Duration `json:"stop"`
	// Repoint is the re-pointing of das's paths.
	Repoint time.Duration `json:"repoint"`
	// GTID is the promoted server's gtid_current_pos.
	GTID string `json:"gtid"`
	// Total is the whole promotion, the proxies re-pointed included.
	Total time.Duration `json:"total"`
}

// Promote makes the replica the primary: wait until it has applied all it
// received, STOP SLAVE, RESET SLAVE ALL, read_only off, then re-point every
// das's database path at it and open it (the failover refused them when
// the primary died; das reconnects to the new primary). The old primary is left as it is (down,
// in the failover scenarios): nothing would send it writes any more.
func (e *Env) Promote(ctx context.Context) (Promotion, error) {
	start := time.Now()
	var p Promotion
	deadline := time.Now().Add(promoteApplyMax)
	for {
		s, err := e.replicaStatus(ctx)
		if err == nil && relayApplied(s) {
			break
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("promote: the replica did not apply its relay log within %s (status %v, %v)", promoteApplyMax, s, err)
		}
		sleepCtx(ctx, 50*time.Millisecond)
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
	}
	p.AppliedWait = time.Since(start)
	t := time.Now()
	if _, err := e.sqlAdmin(ctx, depReplica, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF"); err != nil {
		return p, fmt.Errorf("promote: %w", err)
	}
	p.Stop = time.Since(t)
	gtid, err := e.sqlAdmin(ctx, depReplica, "SELECT @@GLOBAL.gtid_current_pos")
	if err != nil {
		return p, fmt.Errorf("promote: %w", err)
	}
	p.GTID = strings.TrimSpace(gtid)
	paths := e.dasDBPaths()
	t = time.Now()
	if err := e.proxies.repoint(paths, depReplica+":3306"); err != nil {
		return p, fmt.Errorf("promote: %w", err)
	}
	// The fault refused the paths when the primary died (dasDBPaths).
	if err := e.proxies.setEnabled(paths, true); err != nil {
		return p, fmt.Errorf("promote: %w", err)
	}
	p.Repoint = time.Since(t)
	e.mu.Lock()
	e.primary = depReplica
	e.mu.Unlock()
	p.Total = time.Since(start)
	return p, nil
}

// Primary is the MariaDB container das writes to now.
func (e *Env) Primary() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.primary
}

// PrimaryDSN reaches database zzim on the current primary from the host:
// after a failover the ground truth is what the promoted server holds.
func (e *Env) PrimaryDSN() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dsns[e.primary]
}

// jsz is the part of NATS's /jsz this harness reads.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
}

// NATSLeader reads the JetStream meta leader from the monitoring endpoint
// of the nodes that are up (the first that names one). A leader the
// harness took down is not one: the others name it until they notice.
func (e *Env) NATSLeader(ctx context.Context) (string, error) {
	var errs []error
	for _, n := range e.natsNodes {
		if e.isDown(n) {
			continue
		}
		leader, err := e.natsLeaderSeenBy(ctx, n)
		if err == nil && leader != "" && !e.isDown(leader) {
			return leader, nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return "", errors.Join(append(errs, errors.New("no meta leader known"))...)
}

func (e *Env) natsLeaderSeenBy(ctx context.Context, n string) (string, error) {
	st, err := e.container(n)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.hosts[natsMonitorPort]+"/jsz", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var j jsz
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		return "", fmt.Errorf("/jsz: %w", err)
	}
	if j.Meta == nil {
		return "", nil
	}
	return j.Meta.Leader, nil
}

// waitNATSLeader waits until a node names a meta leader.
func (e *Env) waitNATSLeader(ctx context.Context) (string, error) {
	deadline := time.Now().Add(leaderReadMax)
	for {
		l, err := e.NATSLeader(ctx)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("nats: %w (waited %s)", err, leaderReadMax)
		}
		sleepCtx(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
	}
}

// PresenceKeys counts Redis's keys (presence is all Redis holds).
func (e *Env) PresenceKeys(ctx context.Context) (int, error) {
	out, err := e.execIn(ctx, depRedis, "redis-cli", "DBSIZE")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		return 0, fmt.Errorf("redis DBSIZE: %q: %w", out, err)
	}
	return n, nil
}

// isDown reports whether the harness killed or disconnected a container.
func (e *Env) isDown(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopped[name] || e.disconnected[name] || e.paused[name]
}
