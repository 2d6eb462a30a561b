package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/node"
)

// LocalOptions place a set of nodes in one live.Process.
type LocalOptions struct {
	// Host is where app and HTTP listeners bind (127.0.0.1 if empty).
	Host string
	// AppPort: entry slot i listens on AppPort+i; 0 picks a free port per entry.
	AppPort int
	// HTTPPort: httpentry slot i listens on HTTPPort+i; 0 picks a free port.
	HTTPPort int
	// AppListen and HTTPListen override the listen address of some nodes.
	AppListen  map[node.Addr]string
	HTTPListen map[node.Addr]string
	// Internal: every instance's internal link address. Nil means every
	// node is in this process and links are direct (no encoding, no TCP).
	Internal map[node.Addr]string
	// Only selects the nodes this process hosts (nil: all of the topology).
	Only func(node.Addr) bool
	Deps live.Deps
	// DepTimeout bounds each dependency request (live's default if 0).
	DepTimeout time.Duration
	Logger     *slog.Logger
	Registerer *prometheus.Registry
	// HTTPExtra serves extra paths on every httpentry listener.
	HTTPExtra map[string]http.Handler
}

// Local is a running process of a cluster.
type Local struct {
	*live.Process
	Config Config
	nodes  []node.Addr
	// viewed is set once the registry has delivered a first view.
	viewed *atomic.Bool
}

// StartLocal starts the selected nodes of cfg's topology in one process and
// feeds them registry views.
func StartLocal(cfg Config, o LocalOptions) (*Local, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	viewed := &atomic.Bool{}
	if o.Deps.Registry != nil {
		o.Deps.Registry = viewedRegistry{Registry: o.Deps.Registry, viewed: viewed}
	}
	p := live.NewProcess(live.Config{
		Topology: cfg.Topology, Internal: o.Internal, DepTimeout: o.DepTimeout,
		Logger: o.Logger, Registerer: o.Registerer,
	}, o.Deps)
	l := &Local{Process: p, Config: cfg, viewed: viewed}
	for _, a := range Addrs(cfg.Topology) {
		if o.Only != nil && !o.Only(a) {
			continue
		}
		spec := cfg.Spec(a, o.Host, o.AppPort, o.HTTPPort, o.HTTPExtra)
		if s := o.AppListen[a]; s != "" && spec.AppListen != "" {
			spec.AppListen = s
		}
		if s := o.HTTPListen[a]; s != "" && spec.HTTPListen != "" {
			spec.HTTPListen = s
		}
		if err := p.Start(spec); err != nil {
			p.Shutdown(context.Background(), 0)
			return nil, err
		}
		l.nodes = append(l.nodes, a)
	}
	p.WatchRegistry()
	return l, nil
}

// Spec is the live.NodeSpec of a: entries listen for apps on
// host:appPort+slot, httpentries for HTTP on host:httpPort+slot (port 0
// when the base is 0: the system picks).
func (c *Config) Spec(a node.Addr, host string, appPort, httpPort int, extra map[string]http.Handler) live.NodeSpec {
	spec := live.NodeSpec{Addr: a, New: c.NewNode(a)}
	switch a.Role {
	case node.RoleEntry:
		spec.AppListen = hostPort(host, appPort, a.Slot)
	case node.RoleHTTPEntry:
		spec.HTTPListen = hostPort(host, httpPort, a.Slot)
		spec.HTTPExtra = extra
	}
	return spec
}

func hostPort(host string, base, slot int) string {
	port := 0
	if base > 0 {
		port = base + slot
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// Nodes lists the nodes this process hosts.
func (l *Local) Nodes() []node.Addr { return l.nodes }

// Entries lists the bound app addresses of the hosted entries, by slot.
func (l *Local) Entries() []string { return l.bound(node.RoleEntry, l.AppAddr) }

// HTTPEntries lists the bound HTTP addresses of the hosted httpentries.
func (l *Local) HTTPEntries() []string { return l.bound(node.RoleHTTPEntry, l.HTTPAddr) }

func (l *Local) bound(role node.Role, addr func(node.Addr) string) []string {
	var out []string
	for _, a := range l.nodes {
		if a.Role == role {
			if s := addr(a); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// Viewed reports whether a registry view has arrived.
func (l *Local) Viewed() bool { return l.viewed.Load() }

// Running reports whether every hosted node is running.
func (l *Local) Running() error {
	for _, a := range l.nodes {
		if h := l.Host(a); h == nil || h.Stopped() {
			return fmt.Errorf("%s not running", a)
		}
	}
	return nil
}

// viewedRegistry notes the first view it passes on (readiness).
type viewedRegistry struct {
	live.Registry
	viewed *atomic.Bool
}

func (r viewedRegistry) Watch(ctx context.Context, slots map[node.Role]int, fn func(node.View)) error {
	return r.Registry.Watch(ctx, slots, func(v node.View) {
		r.viewed.Store(true)
		fn(v)
	})
}
