package testdeps

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
)

const (
	redisPort = "6379/tcp"
	// redisReadyLine is what redis-server logs once it accepts connections.
	redisReadyLine = "Ready to accept connections"
)

// Redis starts a Redis container for t and returns its address (host:port,
// through the published port). The container is removed when t ends.
func Redis(ctx context.Context, t testing.TB) string {
	t.Helper()
	requireImage(ctx, t, RedisImage)
	ctr := run(ctx, t, RedisImage,
		testcontainers.WithExposedPorts(redisPort),
		testcontainers.WithWaitStrategy(logWait(redisReadyLine)),
	)
	endpoint, err := ctr.PortEndpoint(ctx, redisPort, "")
	if err != nil {
		t.Fatalf("testdeps: redis endpoint: %v", err)
	}
	addr := hostPort(endpoint)
	if err := probe(ctx, "redis", func(ctx context.Context) error {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		return rdb.Ping(ctx).Err()
	}); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	return addr
}
