package live

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
)

// Config of a process hosting one or more nodes.
type Config struct {
	// Topology: configured slots per role (the n of (x+p) % n).
	Topology map[node.Role]int
	// Internal: every instance's internal link address. Instances hosted in
	// this process are reached directly; the others over TCP.
	Internal map[node.Addr]string
	// DepTimeout bounds each dependency request (DepTimeoutDefault if 0).
	DepTimeout time.Duration
	Logger     *slog.Logger
	// Registerer receives the process's metrics (a new registry if nil).
	Registerer *prometheus.Registry
}

// NodeSpec describes one node to host.
type NodeSpec struct {
	Addr node.Addr
	New  func() node.Node
	// AppListen: TCP address for apps (entry). HTTPListen: for httpentry.
	AppListen  string
	HTTPListen string
	// HTTPExtra serves extra paths on the HTTP listener (web client).
	HTTPExtra map[string]http.Handler
}

// Process hosts nodes and their I/O.
type Process struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	links   links
	conns   conns
	https   httpReplies
	pools   *pools
	inline  inlineDeps
	connIDs atomic.Uint64

	mu    sync.Mutex
	hosts map[node.Addr]*Host
	// hostTab is a read-only copy of hosts for lock-free lookups (host).
	hostTab atomic.Pointer[map[node.Addr]*Host]
	specs   map[node.Addr]NodeSpec
	closer  map[node.Addr][]func()
	ctx     context.Context
	cancel  context.CancelFunc
	// Bound addresses, for callers that listened on port 0.
	appAddrs  map[node.Addr]string
	httpAddrs map[node.Addr]string
}

// NewProcess prepares a process; AddNode then Start.
func NewProcess(cfg Config, deps Deps) *Process {
	if cfg.DepTimeout == 0 {
		cfg.DepTimeout = DepTimeoutDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Internal == nil {
		cfg.Internal = map[node.Addr]string{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{
		cfg: cfg, deps: deps, log: cfg.Logger,
		hosts: map[node.Addr]*Host{}, specs: map[node.Addr]NodeSpec{}, closer: map[node.Addr][]func(){},
		appAddrs: map[node.Addr]string{}, httpAddrs: map[node.Addr]string{},
		ctx: ctx, cancel: cancel,
	}
	p.metrics = newMetrics(cfg.Registerer, p)
	p.pools = newPools(ctx.Done())
	p.inline = inlineOf(deps)
	p.links = links{proc: p, peers: map[[2]node.Addr]*peerLink{}}
	p.conns = conns{proc: p, m: map[node.ConnID]*appConn{}}
	p.https = httpReplies{m: map[node.ConnID]chan httpReply{}}
	return p
}

// Registry is the process's Prometheus registry.
func (p *Process) Registry() *prometheus.Registry { return p.cfg.Registerer }

// host is the current host of a, or nil. Every internal message looks its
// target up here, from every node goroutine at once: it reads a snapshot
// of the table (copied whenever Start changes it) instead of taking p.mu.
func (p *Process) host(a node.Addr) *Host {
	if t := p.hostTab.Load(); t != nil {
		return (*t)[a]
	}
	return nil
}

// Hosts returns the running hosts.
func (p *Process) Hosts() []*Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Host, 0, len(p.hosts))
	for _, h := range p.hosts {
		out = append(out, h)
	}
	return out
}

// Host returns the host of addr, or nil.
func (p *Process) Host(a node.Addr) *Host { return p.host(a) }

// AppAddr / HTTPAddr return the bound listener addresses of a node.
func (p *Process) AppAddr(a node.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.appAddrs[a]
}

func (p *Process) HTTPAddr(a node.Addr) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.httpAddrs[a]
}

// Start starts one node: its listeners, its goroutine, and for extlogic its
// queue consumers. Calling it again for a killed node restarts it with a new
// incarnation.
func (p *Process) Start(spec NodeSpec) error {
	p.mu.Lock()
	if h := p.hosts[spec.Addr]; h != nil && !h.stopped.Load() {
		p.mu.Unlock()
		return fmt.Errorf("live: %s already running", spec.Addr)
	}
	p.mu.Unlock()
	h := newHost(p, spec.Addr, spec.New)
	var closers []func()
	listen := func(addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, c := range closers {
				c()
			}
			return nil, fmt.Errorf("live: %s listen %s: %w", spec.Addr, addr, err)
		}
		closers = append(closers, func() { ln.Close() })
		return ln, nil
	}
	var internalLn, appLn, httpLn net.Listener
	var err error
	if a := p.cfg.Internal[spec.Addr]; a != "" {
		if internalLn, err = listen(a); err != nil {
			return err
		}
	}
	if spec.AppListen != "" {
		if appLn, err = listen(spec.AppListen); err != nil {
			return err
		}
	}
	if spec.HTTPListen != "" {
		if httpLn, err = listen(spec.HTTPListen); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.hosts[spec.Addr] = h
	tab := make(map[node.Addr]*Host, len(p.hosts))
	for a, x := range p.hosts {
		tab[a] = x
	}
	p.hostTab.Store(&tab)
	p.specs[spec.Addr] = spec
	if appLn != nil {
		p.appAddrs[spec.Addr] = appLn.Addr().String()
	}
	if httpLn != nil {
		p.httpAddrs[spec.Addr] = httpLn.Addr().String()
	}
	p.mu.Unlock()
	go h.run()
	if internalLn != nil {
		go p.listenInternal(h, internalLn)
	}
	if appLn != nil {
		go p.serveApp(h, appLn)
	}
	if httpLn != nil {
		srv := newHTTPServer(p.httpHandler(h, spec.HTTPExtra), h.ctx)
		go func() { _ = srv.Serve(httpLn) }()
		closers = append(closers, func() { srv.Close() })
	}
	if spec.Addr.Role == node.RoleExtLogic && p.deps.Queue != nil {
		for _, c := range mq.Consumers {
			c := c
			go func() {
				if err := p.deps.Queue.Consume(h.ctx, c, h.deliver); err != nil && !errors.Is(err, context.Canceled) {
					p.log.Error("queue consumer stopped", "node", spec.Addr, "consumer", c.Name, "err", err)
				}
			}()
		}
	}
	p.mu.Lock()
	p.closer[spec.Addr] = closers
	p.mu.Unlock()
	return nil
}

// WatchRegistry feeds registry views to every node of the process until the
// process closes.
func (p *Process) WatchRegistry() {
	if p.deps.Registry == nil {
		return
	}
	go func() {
		err := p.deps.Registry.Watch(p.ctx, p.cfg.Topology, func(v node.View) {
			p.metrics.view(v)
			for _, h := range p.Hosts() {
				h.post(v)
			}
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("registry watch stopped", "err", err)
		}
	}()
}

// Kill stops a node at once, as SIGKILL would: no deregistration, no
// draining; its connections and listeners close.
func (p *Process) Kill(a node.Addr) {
	p.mu.Lock()
	h := p.hosts[a]
	closers := p.closer[a]
	delete(p.closer, a)
	p.mu.Unlock()
	if h == nil {
		return
	}
	h.stop()
	for _, c := range closers {
		c()
	}
	p.closeConnsOf(h)
}

func (p *Process) closeConnsOf(h *Host) {
	p.conns.mu.Lock()
	var ids []node.ConnID
	for id, c := range p.conns.m {
		if c.host == h {
			ids = append(ids, id)
		}
	}
	p.conns.mu.Unlock()
	for _, id := range ids {
		p.conns.close(id, "node stopped")
	}
}

// Restart starts a killed node again from its spec (new incarnation, state lost).
func (p *Process) Restart(a node.Addr) error {
	p.mu.Lock()
	spec, ok := p.specs[a]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("live: no node %s", a)
	}
	p.Kill(a)
	return p.Start(spec)
}

// Shutdown stops gracefully: listeners close first (no new work), nodes
// get drainFor to finish in-flight work, registry keys are deleted, then
// everything stops.
func (p *Process) Shutdown(ctx context.Context, drainFor time.Duration) {
	p.mu.Lock()
	var all []func()
	for _, cs := range p.closer {
		all = append(all, cs...)
	}
	p.closer = map[node.Addr][]func(){}
	hosts := make([]*Host, 0, len(p.hosts))
	for _, h := range p.hosts {
		hosts = append(hosts, h)
	}
	p.mu.Unlock()
	for _, c := range all {
		c()
	}
	deadline := time.Now().Add(drainFor)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		busy := false
		for _, h := range hosts {
			if len(h.mailbox) > 0 || h.inflight.Load() > 0 {
				busy = true
			}
		}
		if !busy {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.deps.Registry != nil {
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		for _, h := range hosts {
			_ = p.deps.Registry.Delete(dctx, h.addr)
		}
		cancel()
	}
	for _, h := range hosts {
		h.stop()
		p.closeConnsOf(h)
	}
	p.cancel()
}
