package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/natsdeps"
	"github.com/zzim/zzim/system/redispresence"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/store/mysqlstore"
)

// Memory names the in-memory presence (--redis memory) and, for a
// one-process cluster, the in-memory queue and registry (--nats memory).
const Memory = "memory"

// DepsOptions choose a process's dependencies.
type DepsOptions struct {
	// NATS is the server URL; "" starts an embedded server (JetStream on,
	// sync always) storing in NATSDir (a temporary directory if empty);
	// Memory keeps queue and registry in this process (one-process
	// clusters only: nothing outside it can see them).
	NATS    string
	NATSDir string
	// Redis is host:port; "" or Memory keeps presence in this process.
	Redis string
	// MySQL DSNs, one per shard; none uses the in-memory store. NeedStore
	// false opens no store at all (only das processes need one).
	MySQL     []string
	NeedStore bool
	Bugs      bugs.Set
	// Name labels the NATS connection.
	Name   string
	Logger *slog.Logger
}

// Deps are a process's open dependencies.
type Deps struct {
	live.Deps
	// NATSURL is the server in use (the embedded one's URL when embedded).
	NATSURL string
	// Pings check that the external dependencies answer (readiness).
	Pings   []func(ctx context.Context) error
	closers []func()
}

// OpenDeps connects to (or starts) the dependencies o names.
func OpenDeps(ctx context.Context, o DepsOptions) (*Deps, error) {
	d := &Deps{}
	if err := d.openNATS(ctx, o); err != nil {
		d.Close()
		return nil, err
	}
	if o.Redis == "" || o.Redis == Memory {
		d.Presence = live.NewMemPresence()
	} else {
		rp := redispresence.New(o.Redis)
		d.closers = append(d.closers, func() { _ = rp.Close() })
		if err := rp.Ping(ctx); err != nil {
			d.Close()
			return nil, fmt.Errorf("redis %s: %w", o.Redis, err)
		}
		d.Presence = rp
		d.Pings = append(d.Pings, func(ctx context.Context) error {
			if err := rp.Ping(ctx); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		})
	}
	if o.NeedStore {
		st, err := openStore(ctx, o)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.Store = st
		if c, ok := st.(interface{ Close() error }); ok {
			d.closers = append(d.closers, func() { _ = c.Close() })
		}
	}
	return d, nil
}

func (d *Deps) openNATS(ctx context.Context, o DepsOptions) error {
	url := o.NATS
	if url == Memory {
		d.NATSURL = Memory
		d.Queue, d.Registry = live.NewMemQueue(), live.NewMemRegistry()
		return nil
	}
	if url == "" {
		dir := o.NATSDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "zzim-nats-")
			if err != nil {
				return fmt.Errorf("nats dir: %w", err)
			}
			dir = tmp
			d.closers = append(d.closers, func() { _ = os.RemoveAll(tmp) })
		}
		srv, u, err := natsdeps.StartEmbedded(dir, 0)
		if err != nil {
			return err
		}
		// Closers run in reverse: the server stops after the client closes.
		d.closers = append(d.closers, srv.Shutdown)
		url = u
	}
	nd, err := natsdeps.Connect(ctx, url, natsdeps.Options{Name: o.Name})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, nd.Close)
	d.NATSURL = url
	d.Queue, d.Registry = nd, nd
	return nil
}

func openStore(ctx context.Context, o DepsOptions) (store.Store, error) {
	var dsns []string
	for _, s := range o.MySQL {
		if s = strings.TrimSpace(s); s != "" {
			dsns = append(dsns, s)
		}
	}
	if len(dsns) == 0 {
		// Nothing in memstore blocks: das calls it on its own goroutine.
		return live.InlineStore(memstore.New(memstore.Options{Bugs: o.Bugs})), nil
	}
	st, err := mysqlstore.Open(ctx, mysqlstore.Config{DSNs: dsns, Bugs: o.Bugs})
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return st, nil
}

// Close releases everything, the most recently opened first.
func (d *Deps) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
	d.closers = nil
}
