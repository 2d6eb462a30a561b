package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Versions of the peer, built from the Go module proxy. The server is
// built with `go install` in its own module graph: centrifuge-go v0.12.1
// needs github.com/centrifugal/protocol v0.21.0, which the centrifuge
// library that Centrifugo v6.9.1 pins does not build against, so the two
// cannot share this module's build list.
const (
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	centrifugoVersion = "v6.9.1"
)

// benchSecret signs both systems' login tokens.
const benchSecret = "peers-bench-secret"

// buildBinaries builds zzim from this repository (every run: it is what
// is measured) and Centrifugo once into binDir.
func buildBinaries(repo, binDir string) (zzimBin, centBin string, err error) {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", "", err
	}
	zzimBin = filepath.Join(binDir, "zzim")
	if err := run(repo, nil, "go", "build", "-o", zzimBin, "./cmd/zzim"); err != nil {
		return "", "", fmt.Errorf("build zzim: %w", err)
	}
	centBin = filepath.Join(binDir, "centrifugo")
	stamp := centBin + ".version"
	if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == centrifugoVersion {
		if _, err := os.Stat(centBin); err == nil {
			return zzimBin, centBin, nil
		}
	}
	abs, err := filepath.Abs(binDir)
	if err != nil {
		return "", "", err
	}
	if err := run(os.TempDir(), []string{"GOBIN=" + abs, "GOFLAGS=-mod=mod"}, "go", "install", centrifugoModule+"@"+centrifugoVersion); err != nil {
		return "", "", fmt.Errorf("build centrifugo: %w", err)
	}
	return zzimBin, centBin, os.WriteFile(stamp, []byte(centrifugoVersion+"\n"), 0o644)
}

// server is one system's server process and its dependencies, up.
type server struct {
	main  *proc   // the server process (zzim up, centrifugo)
	deps  []*proc // MariaDB, Redis
	addrs []string
	note  string // what was run, for the report
	dsn   string // zzim's store, read after the run (durable row)
}

func (s *server) procs() []*proc { return append([]*proc{s.main}, s.deps...) }

func (s *server) stop() {
	// The server first, then what it depends on.
	s.main.stop(10 * time.Second)
	for i := len(s.deps) - 1; i >= 0; i-- {
		s.deps[i].stop(20 * time.Second)
	}
}

// Local images (docker/build.sh) that run a dependency whose Debian
// package is not installed on the host: the same packages, in the same
// Debian release, so the same server runs with the same flags.
const (
	mariaDBImage = "zzim/mariadb:dev"
	redisImage   = "zzim/redis:dev"
)

// onHost says whether every binary is installed on the host.
func onHost(bins ...string) bool {
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			return false
		}
	}
	return true
}

func inImage(image string) string {
	return "in the local image " + image + " (docker run --network host --cpuset-cpus " + serverCore + ", data on the host's disk)"
}

// haveImage says whether a local image exists (nothing is ever pulled).
func haveImage(image string) bool {
	return exec.Command("docker", "image", "inspect", image).Run() == nil
}

// startMariaDB initialises a data directory and runs mariadbd on
// loopback, with Debian's defaults for durability (InnoDB flushes its log
// at every commit). Grants are skipped: it listens on 127.0.0.1 only and
// lives for one run. Without the host's package it runs the same
// commands in the zzim/mariadb:dev image (startContainer).
func startMariaDB(ctx context.Context, dir string) (*proc, string, error) {
	host := onHost("mariadbd", "mariadb-install-db", "mariadb")
	data := filepath.Join(dir, "mariadb")
	install := []string{"mariadb-install-db", "--no-defaults", "--datadir=" + data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db"}
	if !host {
		install = append([]string{"docker", "run", "--rm", "--network", "none", "-v", dir + ":" + dir,
			"--entrypoint", install[0], mariaDBImage}, install[1:]...)
	}
	if err := run(dir, nil, install...); err != nil {
		return nil, "", err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	port := strconv.Itoa(ports[0])
	argv := []string{"mariadbd", "--no-defaults", "--datadir=" + data, "--user=root",
		"--bind-address=127.0.0.1", "--port=" + port, "--socket=" + filepath.Join(dir, "mariadb.sock"),
		"--skip-grant-tables", "--skip-name-resolve", "--max-connections=1000",
		"--innodb-flush-log-at-trx-commit=1", "--innodb-buffer-pool-size=512M", "--log-error=" + filepath.Join(dir, "mariadbd.err")}
	var p *proc
	if host {
		p, err = startProc(dir, "mariadbd", argv, nil)
	} else {
		p, err = startContainer(ctx, dir, "mariadbd", mariaDBImage, argv)
	}
	if err != nil {
		return nil, "", err
	}
	if err := waitTCP(ctx, "127.0.0.1:"+port, p); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	create := []string{"mariadb", "--no-defaults", "-h127.0.0.1", "-P" + port, "-uroot", "-e", "CREATE DATABASE IF NOT EXISTS zzim"}
	if !host {
		create = append([]string{"docker", "exec", p.container}, create...)
	}
	if err := run(dir, nil, create...); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	return p, "root@tcp(127.0.0.1:" + port + ")/zzim", nil
}

// startRedis runs redis-server on loopback with an append-only file
// fsynced on every write (appendfsync always), the durability that
// matches zzim's fsync per JetStream publish and InnoDB's per commit;
// in the zzim/redis:dev image when the host lacks the package.
func startRedis(ctx context.Context, dir string) (*proc, string, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	data := filepath.Join(dir, "redis")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, "", err
	}
	argv := []string{"redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]),
		"--dir", data, "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--maxclients", "10000"}
	var p *proc
	if onHost("redis-server") {
		p, err = startProc(dir, "redis-server", argv, nil)
	} else {
		p, err = startContainer(ctx, dir, "redis-server", redisImage, argv)
	}
	if err != nil {
		return nil, "", err
	}
	if err := waitTCP(ctx, addr, p); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

// startZzim runs `zzim up` with the in-memory store (row memory: queue and
// registry in the process too) or on MariaDB and embedded JetStream with
// fsync on every write (row durable). Logic's per-user send limit is off
// (--send-rate -1): Centrifugo has none by default, and the steps above
// 20 msg/s per user would otherwise measure refusals.
// A positive dasLinger is passed as --das-linger and recorded in the note.
func startZzim(ctx context.Context, bin, dir string, row string, dasLinger time.Duration) (*server, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	// --app-port p gives entry slot i port p+i: two free ports in a row.
	app, err := freePair()
	if err != nil {
		return nil, err
	}
	s := &server{}
	args := []string{bin, "up", "--secret", benchSecret, "--app-port", strconv.Itoa(app), "--http-port", strconv.Itoa(ports[0]),
		"--metrics", "127.0.0.1:" + strconv.Itoa(ports[1]), "--send-rate", "-1", "--log-level", "warn"}
	switch row {
	case rowMemory:
		args = append(args, "--nats", "memory")
		s.note = "zzim up --nats memory --send-rate -1 (in-memory store, queue, registry and presence)"
	case rowDurable:
		db, dsn, err := startMariaDB(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("mariadb: %w", err)
		}
		s.deps = append(s.deps, db)
		s.dsn = dsn
		args = append(args, "--mysql", dsn, "--data-dir", filepath.Join(dir, "nats"))
		s.note = "zzim up --mysql DSN --data-dir DIR --send-rate -1 (MariaDB, embedded NATS JetStream with fsync on every write, in-memory presence)"
		if db.container != "" {
			s.note += "; mariadbd " + inImage(mariaDBImage)
		}
	}
	if dasLinger > 0 {
		args = append(args, "--das-linger", dasLinger.String())
		s.note += "; --das-linger " + dasLinger.String()
	}
	p, err := startProc(dir, "zzim", args, nil)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.main = p
	if err := waitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(ports[1])+"/readyz", p); err != nil {
		s.stop()
		return nil, err
	}
	s.addrs = []string{"127.0.0.1:" + strconv.Itoa(app), "127.0.0.1:" + strconv.Itoa(app+1)}
	return s, nil
}

func waitReady(ctx context.Context, url string, p *proc) error {
	for {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.alive() {
			return fmt.Errorf("%s exited: %s", p.name, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w\n%s", p.name, ctx.Err(), p.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// centNamespace is the conversations' namespace: history and recovery on
// (force_recovery), user-limited channels (`chat:c1#u2,u3` admits only u2
// and u3: Centrifugo's own pattern for a private 1:1 chat without a
// subscribe token), and client-side publish for subscribers.
const centNamespace = "chat"

// centHistorySize is the namespace's history_size: the publications each
// channel keeps.
const centHistorySize = 100

// startCentrifugo runs Centrifugo with the memory engine (row memory) or
// the Redis engine (row durable: history in Redis streams, Redis fsyncing
// its append-only file on every write).
func startCentrifugo(ctx context.Context, bin, dir string, row string) (*server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	s := &server{}
	engine := map[string]any{"type": "memory"}
	s.note = "centrifugo, memory engine"
	if row == rowDurable {
		rp, addr, err := startRedis(ctx, dir)
		if err != nil {
			return nil, fmt.Errorf("redis: %w", err)
		}
		s.deps = append(s.deps, rp)
		engine = map[string]any{"type": "redis", "redis": map[string]any{"address": []string{"redis://" + addr}}}
		s.note = "centrifugo, Redis engine (redis-server --appendonly yes --appendfsync always)"
		if rp.container != "" {
			s.note += "; redis-server " + inImage(redisImage)
		}
	}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": ports[0]},
		"log":         map[string]any{"level": "error"},
		"engine":      engine,
		"client":      map[string]any{"token": map[string]any{"hmac_secret_key": benchSecret}},
		"channel": map[string]any{"namespaces": []any{map[string]any{
			"name": centNamespace, "history_size": centHistorySize, "history_ttl": "300s", "force_recovery": true,
			"allow_user_limited_channels": true, "allow_subscribe_for_client": true, "allow_publish_for_subscriber": true,
			// Only for the after-run check (users.recover): a permission, no cost while the steps run.
			"allow_history_for_subscriber": true,
		}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		return nil, err
	}
	p, err := startProc(dir, "centrifugo", []string{bin, "--config", cfgPath}, nil)
	if err != nil {
		s.stop()
		return nil, err
	}
	s.main = p
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	if err := waitTCP(ctx, addr, p); err != nil {
		s.stop()
		return nil, err
	}
	s.addrs = []string{addr}
	return s, nil
}

// haveDurableDeps says whether MariaDB and Redis can run: installed on
// the host, or as local images.
func haveDurableDeps() error {
	if !onHost("mariadbd", "mariadb-install-db", "mariadb") && !haveImage(mariaDBImage) {
		return fmt.Errorf("MariaDB: neither installed (apt-get install -y mariadb-server) nor the local image %s (docker/build.sh)", mariaDBImage)
	}
	if !onHost("redis-server") && !haveImage(redisImage) {
		return fmt.Errorf("Redis: neither installed (apt-get install -y redis-server) nor the local image %s (docker/build.sh)", redisImage)
	}
	return nil
}
