//go:build pins

// Package pins keeps the project's pinned module versions in go.mod while
// the packages that use them are written; go mod tidy reads every build tag
// but "ignore", and this file builds under none.
package pins

import (
	_ "github.com/HdrHistogram/hdrhistogram-go"
	_ "github.com/Shopify/toxiproxy/v2"
	_ "github.com/anishathalye/porcupine"
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/redis/go-redis/v9"
	_ "github.com/spf13/cobra"
	_ "github.com/testcontainers/testcontainers-go"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/sync/errgroup"
	_ "gonum.org/v1/plot"
	_ "google.golang.org/protobuf/proto"
)
