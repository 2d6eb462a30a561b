// Package testdeps starts zzim's dependencies (MariaDB, Redis, NATS) in
// containers for tests, with testcontainers-go, from the local images that
// docker/build.sh makes. Nothing is ever pulled: the default pull policy
// uses a local image, and a missing image is reported before testcontainers
// would try a registry.
//
// Without Docker or without the images, a test is skipped with the reason,
// except when CI=true, where that is a failure: CI must not pass by skipping.
//
// Call Setup from TestMain before anything touches testcontainers:
//
//	func TestMain(m *testing.M) {
//		testdeps.Setup()
//		os.Exit(m.Run())
//	}
package testdeps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Images, as docker/build.sh tags them.
const (
	MariaDBImage = "zzim/mariadb:dev"
	RedisImage   = "zzim/redis:dev"
	NATSImage    = "zzim/nats:dev"
)

// startupTimeout bounds a container's start until it answers. MariaDB is
// ready in about 0.6 s here; the margin covers a loaded machine.
const startupTimeout = 60 * time.Second

// probeInterval is the pause between connection checks.
const probeInterval = 100 * time.Millisecond

// buildHint tells the reader how to get the images.
const buildHint = "build them with docker/build.sh"

// Setup sets the environment testcontainers-go needs on this machine, unless
// already set: no Ryuk reaper (it is an image from a registry; tests clean
// up with CleanupContainer) and the Docker host as localhost (otherwise it
// may believe it runs in a container and dial a gateway address that is not
// on this machine). It must run before the first testcontainers call, which
// reads the environment once.
func Setup() {
	setDefault("TESTCONTAINERS_RYUK_DISABLED", "true")
	setDefault("TESTCONTAINERS_HOST_OVERRIDE", "localhost")
}

func setDefault(key, value string) {
	if _, ok := os.LookupEnv(key); !ok {
		os.Setenv(key, value)
	}
}

// inCI reports whether a missing dependency must fail the test.
func inCI() bool { return os.Getenv("CI") == "true" }

// unavailable skips t, or fails it under CI.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if inCI() {
		t.Fatalf("testdeps: %s (CI=true: a missing dependency is a failure)", msg)
		return
	}
	t.Skipf("testdeps: %s (skipped; with CI=true this fails)", msg)
}

// dockerState caches the Docker check: one ping per test binary.
var dockerState struct {
	once sync.Once
	err  error
}

// requireImage skips or fails t unless Docker answers and image is local.
func requireImage(ctx context.Context, t testing.TB, image string) {
	t.Helper()
	Setup()
	dockerState.once.Do(func() { dockerState.err = pingDocker(ctx) })
	if dockerState.err != nil {
		unavailable(t, "docker unavailable: %v", dockerState.err)
		return
	}
	if err := imagePresent(ctx, image); err != nil {
		unavailable(t, "image %s: %v; %s", image, err, buildHint)
	}
}

func pingDocker(ctx context.Context) (err error) {
	defer func() {
		// The client constructor panics on some broken configurations.
		if r := recover(); r != nil {
			err = fmt.Errorf("docker client: %v", r)
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(pingCtx, client.PingOptions{}); err != nil {
		return fmt.Errorf("docker ping: %w", err)
	}
	return nil
}

func imagePresent(ctx context.Context, image string) error {
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, image); err != nil {
		return fmt.Errorf("not present locally: %w", err)
	}
	return nil
}

// run starts image with opts, schedules its removal, and fails t if it
// does not come up.
func run(ctx context.Context, t testing.TB, image string, opts ...testcontainers.ContainerCustomizer) *testcontainers.DockerContainer {
	t.Helper()
	ctr, err := testcontainers.Run(ctx, image, opts...)
	testcontainers.CleanupContainer(t, ctr)
	if err != nil {
		t.Fatalf("testdeps: start %s: %v", image, err)
	}
	return ctr
}

// probe calls check until it succeeds or timeout passes: the log line says
// the server started, this says it answers a real client.
func probe(ctx context.Context, what string, check func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(attemptCtx)
		attemptCancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not answering after %v: %w", what, startupTimeout, errors.Join(err, ctx.Err()))
		case <-time.After(probeInterval):
		}
	}
}

// privateNetwork creates a bridge network removed when t ends, so a test
// may reach a container directly by its IP on a network it created.
func privateNetwork(ctx context.Context, t testing.TB) *testcontainers.DockerNetwork {
	t.Helper()
	nw, err := network.New(ctx)
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("testdeps: create network: %v", err)
	}
	return nw
}

// logWait waits for a log line, within startupTimeout.
func logWait(line string) wait.Strategy {
	return wait.ForLog(line).WithStartupTimeout(startupTimeout)
}

// hostPort strips a scheme from an endpoint.
func hostPort(endpoint string) string {
	if i := strings.Index(endpoint, "://"); i >= 0 {
		return endpoint[i+3:]
	}
	return endpoint
}
