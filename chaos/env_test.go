package chaos

import (
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/scenarios"
	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/natsdeps"
	"github.com/zzim/zzim/system/node"
)

func TestMain(m *testing.M) {
	testdeps.Setup()
	os.Exit(m.Run())
}

// requireDocker skips t without Docker or the images, except under
// CI=true, where that is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := newDocker(ctx)
	if err == nil {
		err = d.requireImages(ctx, ZzimImage, ToxiproxyImage, testdeps.MariaDBImage, testdeps.RedisImage, testdeps.NATSImage)
		d.close()
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chaos: %v (CI=true: a missing dependency is a failure)", err)
	}
	t.Skipf("chaos: %v (skipped; with CI=true this fails)", err)
}

// TestEnvUpDown builds a small environment, kills and restarts a logic,
// and checks that Close leaves no container or network of the run.
func TestEnvUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, EnvConfig{Topology: map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 2, node.RoleDas: 1, node.RoleExtLogic: 1},
		Secret: "chaos-test"})
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			env.Close()
		}
	}()
	if len(env.Entries) != 1 {
		t.Fatalf("got %d entries, want 1", len(env.Entries))
	}
	if err := env.Kill(ctx, "logic-1"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := env.Start(ctx, "logic-1"); err != nil {
		t.Fatalf("start after kill: %v", err)
	}
	rmReset, err := env.AddToxic("entry-0", "logic-1", ToxicReset, "upstream", map[string]any{"timeout": 100})
	if err != nil {
		t.Fatalf("reset toxic: %v", err)
	}
	rmBandwidth, err := env.AddToxic("das-0", depMariaDB, ToxicBandwidth, "downstream", map[string]any{"rate": 64})
	if err != nil {
		t.Fatalf("bandwidth toxic: %v", err)
	}
	if got, err := env.Toxics("entry-0", "logic-1"); err != nil || len(got) != 1 || got[0] != ToxicReset {
		t.Errorf("got toxics %v (%v) on entry-0->logic-1, want [reset_peer]", got, err)
	}
	if err := rmReset(); err != nil {
		t.Errorf("remove reset: %v", err)
	}
	if err := rmBandwidth(); err != nil {
		t.Errorf("remove bandwidth: %v", err)
	}
	if got, err := env.Toxics("das-0", depMariaDB); err != nil || len(got) != 0 {
		t.Errorf("got toxics %v (%v) on das-0->mariadb after removal, want none", got, err)
	}
	if _, err := env.AddToxic("entry-0", "das-9", ToxicLatency, "upstream", nil); err == nil {
		t.Errorf("got no error for a path that does not exist, want one")
	}
	if err := env.Pause(ctx, "logic-0"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	run := env.Run
	started := len(env.deps) + len(env.services)
	closed = true
	if err := env.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if want := (Teardown{Containers: started, Networks: 1}); env.Removed != want {
		t.Errorf("got teardown %+v, want %+v", env.Removed, want)
	}
	d, err := newDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	c, n, err := d.removeRun(ctx, run)
	if err != nil || c != 0 || n != 0 {
		t.Fatalf("after Close: got %d containers, %d networks left (err %v), want none", c, n, err)
	}
}

// smallScenario crashes one logic of a small cluster for a real 10s.
const smallScenario = `name: chaos-small
seed: 5
duration: 16s
quiet: 20s
liveness_bound: 20s
topology:
  entry: 2
  logic: 2
  extlogic: 1
  das: 2
workload:
  users: 20
  conversations: 20
  rate: 20
faults:
  - at: 3s
    for: 10s
    what: crash
    target: logic-1
exercised: [users_remapped]
`

// TestRunSmallScenario runs a whole chaos run and wants it to pass, to
// have killed logic-1 for real, and to leave nothing behind.
func TestRunSmallScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	requireDocker(t)
	sc, err := scenarios.Parse("chaos-small.yaml", []byte(smallScenario))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Options{Scenario: sc, Scale: 1, OutDir: t.TempDir()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var buf strings.Builder
	_ = rep.WriteText(&buf)
	t.Log(buf.String())
	if !rep.Pass() {
		t.Fatalf("got %s, want pass: %v", rep.Word, rep.Reasons)
	}
	if len(rep.Faults) != 1 || rep.Faults[0].Status != StatusApplied || rep.Faults[0].End <= rep.Faults[0].Start {
		t.Errorf("got fault record %+v, want one applied crash with a window", rep.Faults[0])
	}
	if rep.Messages.Acked == 0 || rep.Messages.Stored < int(rep.Messages.Acked) {
		t.Errorf("got %d acked and %d stored, want some acked, all stored", rep.Messages.Acked, rep.Messages.Stored)
	}
	assertNothingLeft(ctx, t, rep.Run)
}

func assertNothingLeft(ctx context.Context, t *testing.T, run string) {
	t.Helper()
	d, err := newDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	c, n, err := d.removeRun(ctx, run)
	if err != nil || c != 0 || n != 0 {
		t.Errorf("after the run: got %d containers, %d networks left (err %v), want none", c, n, err)
	}
}

// TestEnvReplicated starts the replicated dependencies: the primary waits
// for its replica (semi-sync ON, one client), the services' streams and
// registry bucket are R3 on the NATS cluster, killing the meta leader
// elects another, and a promotion makes the replica a writable primary
// that das reaches through its re-pointed path. Close leaves nothing.
func TestEnvReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, EnvConfig{Topology: map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 1, node.RoleDas: 1, node.RoleExtLogic: 1},
		Secret: "chaos-test", ReplicatedDB: true, NATSCluster: true})
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	run := env.Run
	defer func() {
		if err := env.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		assertNothingLeft(context.Background(), t, run)
	}()
	if rs := env.ReplicationSetup; rs == nil || !rs.Enabled || !rs.Status || rs.Clients != 1 {
		t.Fatalf("got replication %+v, want semi-sync enabled, ON, one client", rs)
	}
	// The services created the streams and the bucket with all three URLs.
	nc, err := nats.Connect(env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{mq.StreamOffline, "KV_" + natsdeps.RegistryBucket} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Errorf("stream %s: got %d replicas, want 3", name, got)
		}
	}
	leader, err := env.NATSLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Kill(ctx, leader); err != nil {
		t.Fatal(err)
	}
	next, err := env.waitNATSLeader(ctx)
	if err != nil || next == leader {
		t.Errorf("after killing meta leader %s: got leader %q (%v), want another", leader, next, err)
	}
	if err := env.Start(ctx, leader); err != nil {
		t.Fatal(err)
	}
	if err := env.waitNATSHealthy(ctx, leader); err != nil {
		t.Error(err)
	}

	// A commit on the primary reaches the replica before it returns.
	db, err := sql.Open("mysql", env.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE zzim.ha_probe (id INT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO zzim.ha_probe VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	st, err := env.SemiSyncState(ctx)
	if err != nil || st.YesTx < 2 || st.NoTx != 0 {
		t.Errorf("got semi-sync %+v (%v), want the two commits acknowledged by the replica", st, err)
	}
	// As the db-failover fault does: das's paths refused, then the kill.
	if err := env.proxies.setEnabled(env.dasDBPaths(), false); err != nil {
		t.Fatal(err)
	}
	if err := env.Kill(ctx, depMariaDB); err != nil {
		t.Fatal(err)
	}
	pr, err := env.Promote(ctx)
	if err != nil {
		t.Fatalf("promote: %v", err)
	}
	if env.Primary() != depReplica || env.PrimaryDSN() == env.DSN {
		t.Fatalf("got primary %s at %s, want the replica", env.Primary(), env.PrimaryDSN())
	}
	t.Logf("promotion %+v", pr)
	ndb, err := sql.Open("mysql", env.PrimaryDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer ndb.Close()
	var n int
	if err := ndb.QueryRowContext(ctx, "SELECT COUNT(*) FROM zzim.ha_probe").Scan(&n); err != nil || n != 1 {
		t.Errorf("promoted replica: got %d rows (%v), want 1", n, err)
	}
	if _, err := ndb.ExecContext(ctx, "INSERT INTO zzim.ha_probe VALUES (2)"); err != nil {
		t.Errorf("promoted replica refuses writes: %v", err)
	}
	// das's path now leads to the promoted server.
	p, err := env.proxies.api.Proxy("das-0->" + depMariaDB)
	if err != nil || p.Upstream != depReplica+":3306" || !p.Enabled {
		t.Errorf("das-0's path: got upstream %q enabled %v (%v), want %s:3306 enabled", p.Upstream, p.Enabled, err, depReplica)
	}
	if err := probe(ctx, "das-0 /readyz", func(ctx context.Context) error {
		return httpOK(ctx, env.MetricsURL("das-0")[:len(env.MetricsURL("das-0"))-len("/metrics")]+"/readyz")
	}); err != nil {
		t.Error(err)
	}
}
