package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
	"golang.org/x/sync/errgroup"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/natsdeps"
	"github.com/zzim/zzim/system/node"
)

// Images, as docker/build.sh tags them.
const (
	ZzimImage      = "zzim/zzim:dev"
	ToxiproxyImage = "zzim/toxiproxy:dev"
)

// readyTimeout bounds a restarted service's return to /readyz.
const readyTimeout = 30 * time.Second

// EnvConfig shapes an environment.
type EnvConfig struct {
	Topology map[node.Role]int
	Bugs     bugs.Set
	Secret   string
	// PlatformKey enables httpentry's platform API.
	PlatformKey string
	// LogicBusinesses is --logic-businesses ("" : every slot serves all).
	LogicBusinesses string
	Log             *slog.Logger
	// ReplicatedDB starts a MariaDB primary and a semi-synchronous replica
	// (ha.go) instead of one server. The bug no-semisync turns the
	// primary's semi-sync wait off before the run.
	ReplicatedDB bool
	// NATSCluster starts a 3-node JetStream cluster instead of one server.
	NATSCluster bool
}

// Env is one chaos environment: a private network with MariaDB, Redis,
// NATS, toxiproxy and every zzim service in its own container.
type Env struct {
	Run      string // the run id (container names and labels)
	cfg      EnvConfig
	d        *docker
	nw       *testcontainers.DockerNetwork
	deps     map[string]*started
	services map[string]*started // by node address ("logic-1")
	order    []string            // services in node.Roles order
	proxies  *proxies

	// DSN reaches the first primary's database zzim from the host; after a
	// failover the ground truth is at PrimaryDSN.
	DSN string
	// NATSURL reaches NATS from the host (platform notices without
	// httpentry): every node's URL, comma-separated.
	NATSURL string
	// Entries are the entries' app addresses on the host, in slot order.
	Entries []string
	// HTTP are the httpentries' base URLs on the host, in slot order.
	HTTP []string

	// Removed is filled by Close.
	Removed Teardown

	natsNodes []string // NATS containers
	dsns      map[string]string
	// ReplicationSetup is the replication state checked before the run
	// (a replicated database only).
	ReplicationSetup *SemiSync

	mu           sync.Mutex
	primary      string // the MariaDB container das writes to
	paused       map[string]bool
	stopped      map[string]bool
	disconnected map[string]bool
	// starts counts Start calls per service: a service's incarnation, so
	// the scraper knows when its counters began again from zero.
	starts map[string]int
}

// NewEnv starts an environment. On error everything it started is removed.
func NewEnv(ctx context.Context, cfg EnvConfig) (env *Env, err error) {
	testdeps.Setup()
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	d, err := newDocker(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.requireImages(ctx, ZzimImage, ToxiproxyImage, testdeps.MariaDBImage, testdeps.RedisImage, testdeps.NATSImage); err != nil {
		d.close()
		return nil, err
	}
	e := &Env{Run: runID(), cfg: cfg, d: d, deps: map[string]*started{}, services: map[string]*started{},
		paused: map[string]bool{}, stopped: map[string]bool{}, disconnected: map[string]bool{}, starts: map[string]int{},
		natsNodes: natsNodeNames(cfg.NATSCluster), dsns: map[string]string{}, primary: depMariaDB}
	defer func() {
		if err != nil {
			e.Close()
			env = nil
		}
	}()
	e.nw, err = tcnetwork.New(ctx, tcnetwork.WithLabels(map[string]string{LabelRun: e.Run}))
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	for _, a := range cluster.Addrs(cfg.Topology) {
		e.order = append(e.order, a.String())
	}
	if err := e.startDeps(ctx); err != nil {
		return nil, err
	}
	if err := e.startServices(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (e *Env) startDeps(ctx context.Context) error {
	// The paths are planned first: the replica's primary is its path.
	paths := planPaths(e.order, depLayout{nats: e.natsNodes, replicated: e.cfg.ReplicatedDB})
	// Redis keeps nothing on disk: a killed Redis comes back empty, as
	// presence may (clients' heartbeats restore it).
	specs := []containerSpec{
		{name: depRedis, image: testdeps.RedisImage, cmd: []string{"--save", "", "--appendonly", "no"},
			ready: logWait("Ready to accept connections")},
		{name: "toxiproxy", image: ToxiproxyImage, publish: []string{toxiproxyAPIPort}, ready: wait.ForAll(
			logWait("Starting Toxiproxy HTTP server"),
			wait.ForHTTP("/version").WithPort(toxiproxyAPIPort).WithStartupTimeout(startupTimeout))},
	}
	db := containerSpec{name: depMariaDB, image: testdeps.MariaDBImage, publish: []string{"3306/tcp"}, ready: logWait("ready for connections")}
	if e.cfg.ReplicatedDB {
		db.env = map[string]string{"ZZIM_MARIADB_ROLE": "primary"}
		var replPath path
		for _, p := range paths {
			if p.from == depReplica {
				replPath = p
			}
		}
		specs = append(specs, containerSpec{name: depReplica, image: testdeps.MariaDBImage, publish: []string{"3306/tcp"},
			env:   map[string]string{"ZZIM_MARIADB_ROLE": "replica", "ZZIM_MARIADB_PRIMARY": replPath.listen()},
			ready: logWait("ready for connections")})
	}
	specs = append(specs, db)
	for _, n := range e.natsNodes {
		spec := containerSpec{name: n, image: testdeps.NATSImage, publish: []string{natsClientPort, natsMonitorPort},
			ready: logWait("Server is ready")}
		if e.cfg.NATSCluster {
			spec.cmd = []string{"--config", "/etc/nats/cluster.conf"}
			spec.env = map[string]string{"ZZIM_NATS_NAME": n}
		}
		specs = append(specs, spec)
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range specs {
		g.Go(func() error {
			st, err := runContainer(gctx, e.nw, e.Run, s)
			if st != nil {
				mu.Lock()
				e.deps[s.name] = st
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, name := range []string{depMariaDB, depReplica} {
		if st := e.deps[name]; st != nil {
			e.dsns[name] = testdeps.MariaDBDSN(st.hosts["3306/tcp"], "zzim")
		}
	}
	e.DSN = e.dsns[depMariaDB]
	var urls []string
	for _, n := range e.natsNodes {
		urls = append(urls, "nats://"+e.deps[n].hosts[natsClientPort])
	}
	e.NATSURL = strings.Join(urls, ",")
	if err := probe(ctx, "mariadb", func(ctx context.Context) error { return pingDB(ctx, e.DSN) }); err != nil {
		return err
	}
	px, err := newProxies("http://"+e.deps["toxiproxy"].hosts[toxiproxyAPIPort], paths)
	if err != nil {
		return err
	}
	e.proxies = px
	if e.cfg.ReplicatedDB {
		if err := e.setupReplication(ctx); err != nil {
			return err
		}
	}
	// JetStream answers /healthz once it is current: on a cluster, once a
	// meta leader is elected. Services create their streams at start.
	for _, n := range e.natsNodes {
		url := "http://" + e.deps[n].hosts[natsMonitorPort] + "/healthz"
		if err := probe(ctx, n+" /healthz", func(ctx context.Context) error { return httpOK(ctx, url) }); err != nil {
			return err
		}
	}
	if e.cfg.NATSCluster {
		if _, err := e.waitNATSLeader(ctx); err != nil {
			return err
		}
		// The streams and the bucket are created once, at R3, before the
		// services start: a fresh cluster places R3 assets one at a time,
		// and every service creating them at once timed out (each service
		// then finds them and only checks their configuration).
		if err := probe(ctx, "nats streams", func(ctx context.Context) error {
			nd, err := natsdeps.Connect(ctx, e.NATSURL, natsdeps.Options{Name: "zzim-chaos-setup"})
			if err != nil {
				return err
			}
			nd.Close()
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// setupReplication waits for the replica, and sets the semi-sync wait as
// the run wants it: on, checked ON with the replica as its client (so it
// cannot silently be asynchronous), or off for the no-semisync bug.
func (e *Env) setupReplication(ctx context.Context) error {
	semiSync := !e.cfg.Bugs.On(bugNoSemiSync)
	if !semiSync {
		if err := e.SetSemiSync(ctx, false); err != nil {
			return fmt.Errorf("no-semisync: %w", err)
		}
	}
	if err := e.waitReplication(ctx, semiSync); err != nil {
		return err
	}
	st, err := e.SemiSyncState(ctx)
	if err != nil {
		return err
	}
	e.ReplicationSetup = &st
	return nil
}

func pingDB(ctx context.Context, dsn string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

// startServices starts every zzim service at once: internal links redial
// with backoff, so start order does not matter; each must reach /readyz.
func (e *Env) startServices(ctx context.Context) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, name := range e.order {
		spec, err := e.serviceSpec(name)
		if err != nil {
			return err
		}
		g.Go(func() error {
			st, err := runContainer(gctx, e.nw, e.Run, spec)
			if st != nil {
				mu.Lock()
				e.services[name] = st
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, a := range cluster.Addrs(e.cfg.Topology) {
		st := e.services[a.String()]
		switch a.Role {
		case node.RoleEntry:
			e.Entries = append(e.Entries, st.hosts[appPort])
		case node.RoleHTTPEntry:
			e.HTTP = append(e.HTTP, "http://"+st.hosts[httpPort])
		}
	}
	return nil
}

// serviceSpec is `zzim serve ROLE --slot N` with every peer and dependency
// address pointing at the service's own toxiproxy paths.
func (e *Env) serviceSpec(name string) (containerSpec, error) {
	a, err := node.ParseAddr(name)
	if err != nil {
		return containerSpec{}, err
	}
	args := []string{"serve", string(a.Role), "--slot", strconv.Itoa(a.Slot),
		"--topology", cluster.FormatTopology(e.cfg.Topology), "--secret", e.cfg.Secret,
		"--internal-listen", ":" + strconv.Itoa(internalPort), "--metrics", ":9100",
		"--log-format", "json", "--drain", "0s"}
	if e.cfg.PlatformKey != "" {
		args = append(args, "--platform-key", e.cfg.PlatformKey)
	}
	if e.cfg.LogicBusinesses != "" {
		args = append(args, "--logic-businesses", e.cfg.LogicBusinesses)
	}
	for _, b := range bugs.All {
		if e.cfg.Bugs.On(b) && !slices.Contains(harnessBugs, b) {
			args = append(args, "--bug", string(b))
		}
	}
	for _, peer := range e.order {
		if peer == name {
			continue
		}
		addr, _ := e.proxies.addr(name, peer)
		args = append(args, "--peer", peer+"="+addr)
	}
	// Every NATS node's URL: the client fails over between them, and a
	// list of three makes the streams and the registry R3 (natsdeps).
	var natsURLs []string
	for _, n := range e.natsNodes {
		addr, _ := e.proxies.addr(name, n)
		natsURLs = append(natsURLs, "nats://"+addr)
	}
	redisAddr, _ := e.proxies.addr(name, depRedis)
	args = append(args, "--nats", strings.Join(natsURLs, ","), "--redis", redisAddr)
	publish := []string{metricsPort}
	switch a.Role {
	case node.RoleEntry:
		args = append(args, "--listen", ":7400")
		publish = append(publish, appPort)
	case node.RoleHTTPEntry:
		args = append(args, "--http", ":8080")
		publish = append(publish, httpPort)
	case node.RoleDas:
		dbAddr, _ := e.proxies.addr(name, depMariaDB)
		args = append(args, "--mysql", testdeps.MariaDBDSN(dbAddr, "zzim"))
	}
	return containerSpec{name: name, image: ZzimImage, cmd: args, publish: publish, ready: wait.ForAll(
		logWait(`"msg":"serving"`),
		wait.ForHTTP("/readyz").WithPort(metricsPort).WithStartupTimeout(startupTimeout),
	)}, nil
}

// incarnation is how many times Start started service again.
func (e *Env) incarnation(service string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.starts[service]
}

// Services lists the zzim services in node.Roles order.
func (e *Env) Services() []string { return append([]string(nil), e.order...) }

// MetricsURL is a service's /metrics on the host.
func (e *Env) MetricsURL(service string) string {
	if st := e.services[service]; st != nil {
		return "http://" + st.hosts[metricsPort] + "/metrics"
	}
	return ""
}

func (e *Env) container(service string) (*started, error) {
	st := e.services[service]
	if st == nil {
		if st = e.deps[service]; st == nil {
			return nil, fmt.Errorf("no container %q", service)
		}
	}
	return st, nil
}

// Kill sends SIGKILL and waits until the container has exited.
func (e *Env) Kill(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.stopped[service] = true
	e.mu.Unlock()
	return e.d.kill(ctx, st.id)
}

// Start starts a killed service again and waits for its /readyz (same
// published ports: they were fixed at creation).
func (e *Env) Start(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	// Counted before the start: a scrape that began before it and ended
	// after it sees two values and is discarded (see scraper.scrape).
	e.mu.Lock()
	e.starts[service]++
	e.mu.Unlock()
	if err := e.d.start(ctx, st.id); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.stopped, service)
	e.mu.Unlock()
	if st.hosts[metricsPort] == "" {
		return nil
	}
	return probe(ctx, service+" /readyz", func(ctx context.Context) error {
		return httpOK(ctx, "http://"+st.hosts[metricsPort]+"/readyz")
	})
}

// Pause freezes every process of the container (SIGSTOP-like cgroup freeze).
func (e *Env) Pause(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	if err := e.d.pause(ctx, st.id); err != nil {
		return err
	}
	e.mu.Lock()
	e.paused[service] = true
	e.mu.Unlock()
	return nil
}

// Unpause thaws a paused container.
func (e *Env) Unpause(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.paused, service)
	e.mu.Unlock()
	return e.d.unpause(ctx, st.id)
}

// Disconnect takes a container off the private network.
func (e *Env) Disconnect(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	if err := e.d.disconnect(ctx, e.nw.ID, st.id); err != nil {
		return err
	}
	e.mu.Lock()
	e.disconnected[service] = true
	e.mu.Unlock()
	return nil
}

// Reconnect puts it back with its alias.
func (e *Env) Reconnect(ctx context.Context, service string) error {
	st, err := e.container(service)
	if err != nil {
		return err
	}
	if err := e.d.connect(ctx, e.nw.ID, st.id, []string{st.spec.name}); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.disconnected, service)
	e.mu.Unlock()
	return nil
}

// Close removes every container and the network of the run, whatever
// state the run left them in (paused containers included). It uses its own
// context: it must run after Ctrl-C cancelled the run's.
func (e *Env) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	e.mu.Lock()
	for s := range e.paused {
		if st, err := e.container(s); err == nil {
			_ = e.d.unpause(ctx, st.id)
		}
	}
	e.paused = map[string]bool{}
	e.mu.Unlock()
	c, n, err := e.d.removeRun(ctx, e.Run)
	e.Removed = Teardown{Containers: c, Networks: n}
	if err == nil {
		// Verified, not assumed: a run that leaves anything behind fails.
		lc, ln, lerr := e.d.countRun(ctx, e.Run)
		e.Removed.LeftContainers, e.Removed.LeftNetworks = lc, ln
		switch {
		case lerr != nil:
			err = lerr
		case lc+ln > 0:
			err = fmt.Errorf("run %s: %d containers and %d networks left after removal", e.Run, lc, ln)
		}
	}
	e.d.close()
	return err
}

// Teardown is what Close removed, and what it found left afterwards.
type Teardown struct {
	Containers     int `json:"removed_containers"`
	Networks       int `json:"removed_networks"`
	LeftContainers int `json:"left_containers"`
	LeftNetworks   int `json:"left_networks"`
}

// probe calls check until it succeeds or startupTimeout passes.
func probe(ctx context.Context, what string, check func(ctx context.Context) error) error {
	return probeFor(ctx, startupTimeout, what, check)
}

// probeFor calls check until it succeeds or d passes.
func probeFor(ctx context.Context, d time.Duration, what string, check func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 3*time.Second)
		err := check(attemptCtx)
		attemptCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering: %w", what, errors.Join(err, ctx.Err()))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}
