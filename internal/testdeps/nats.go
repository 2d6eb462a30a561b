package testdeps

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
)

const (
	natsPort        = "4222/tcp"
	natsMonitorPort = "8222/tcp"
	// natsReadyLine is what nats-server logs once it accepts connections.
	natsReadyLine = "Server is ready"
)

// NATS starts a NATS (JetStream) container for t and returns its client URL
// (nats://host:port, through the published port). The container is removed
// when t ends. It fails t if JetStream does not sync every write: the
// image's config promises sync_interval: always.
func NATS(ctx context.Context, t testing.TB) string {
	t.Helper()
	requireImage(ctx, t, NATSImage)
	ctr := run(ctx, t, NATSImage,
		testcontainers.WithExposedPorts(natsPort, natsMonitorPort),
		testcontainers.WithWaitStrategy(logWait(natsReadyLine)),
	)
	url, err := ctr.PortEndpoint(ctx, natsPort, "nats")
	if err != nil {
		t.Fatalf("testdeps: nats endpoint: %v", err)
	}
	monitor, err := ctr.PortEndpoint(ctx, natsMonitorPort, "http")
	if err != nil {
		t.Fatalf("testdeps: nats monitor endpoint: %v", err)
	}
	if err := probe(ctx, "nats", func(ctx context.Context) error { return natsAnswers(ctx, url) }); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	if err := natsSyncsAlways(ctx, monitor); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	return url
}

// natsAnswers connects and asks JetStream for the account: JetStream is up.
func natsAnswers(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("jetstream account info: %w", err)
	}
	return nil
}

// natsSyncsAlways reads the server's JetStream config from /varz.
func natsSyncsAlways(ctx context.Context, monitor string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor+"/varz", nil)
	if err != nil {
		return fmt.Errorf("varz request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("varz: %w", err)
	}
	defer resp.Body.Close()
	var varz struct {
		JetStream struct {
			Config struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&varz); err != nil {
		return fmt.Errorf("varz decode: %w", err)
	}
	if !varz.JetStream.Config.SyncAlways {
		return fmt.Errorf("nats: got sync_always false in /varz, want true (docker/nats/nats.conf sets sync_interval: always)")
	}
	return nil
}
