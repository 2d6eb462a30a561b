package chaos

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

// Every internal link and every dependency connection goes through the
// toxiproxy container, one proxy per path, so a fault can take one path:
//
//	entry-0->logic-1   what entry-0 dials to reach logic-1 (links are one
//	                   TCP connection per sender and receiver: the reverse
//	                   direction, logic-1->entry-0, is its own proxy)
//	das-1->mariadb     das-1's database connections
//	logic-2->redis     logic-2's presence connections
//	extlogic-0->nats   extlogic-0's queue and registry connection
//	logic-0->nats-1    with a NATS cluster, one path per node
//	mariadb-replica->mariadb  the replication stream (a replicated database)
//
// Clients reach entries and httpentries directly on published ports: a
// partition between entry and logic does not cut the clients off.

// Dependencies' names on the private network (also their path names).
const (
	depMariaDB = "mariadb"
	depRedis   = "redis"
	depNATS    = "nats"
)

// Ports inside the private network.
const (
	toxiproxyAPIPort = "8474/tcp"
	proxyPortBase    = 20000 // path k listens on toxiproxy:proxyPortBase+k
	internalPort     = 7000  // every zzim service's internal link listener
	appPort          = "7400/tcp"
	httpPort         = "8080/tcp"
	metricsPort      = "9100/tcp"
)

// path is one proxied connection direction: from dials to.
type path struct {
	from, to string
	upstream string // to's address on the private network
	port     int    // toxiproxy's listen port for it
}

func (p path) name() string { return p.from + "->" + p.to }

// listen is the address from dials instead of to.
func (p path) listen() string { return "toxiproxy:" + strconv.Itoa(p.port) }

// depLayout names the dependencies the paths lead to.
type depLayout struct {
	nats       []string // "nats", or "nats-0".."nats-2"
	replicated bool     // a MariaDB replica replicates through its own path
}

// planPaths makes every path of a cluster: each ordered pair of distinct
// services, each service to the dependencies it uses, and the replication
// path.
func planPaths(services []string, deps depLayout) []path {
	if len(deps.nats) == 0 {
		deps.nats = []string{depNATS}
	}
	var out []path
	add := func(from, to, upstream string) {
		out = append(out, path{from: from, to: to, upstream: upstream, port: proxyPortBase + len(out)})
	}
	for _, a := range services {
		for _, b := range services {
			if a != b {
				add(a, b, b+":"+strconv.Itoa(internalPort))
			}
		}
	}
	for _, a := range services {
		for _, n := range deps.nats {
			add(a, n, n+":4222")
		}
		add(a, depRedis, depRedis+":6379")
		if roleOf(a) == "das" {
			add(a, depMariaDB, depMariaDB+":3306")
		}
	}
	if deps.replicated {
		add(depReplica, depMariaDB, depMariaDB+":3306")
	}
	return out
}

// roleOf is "logic" for "logic-1".
func roleOf(service string) string {
	if i := strings.LastIndexByte(service, '-'); i > 0 {
		return service[:i]
	}
	return service
}

// proxies is the toxiproxy side of the paths.
type proxies struct {
	api   *toxiproxy.Client
	paths map[string]path // by name
}

func newProxies(apiURL string, paths []path) (*proxies, error) {
	px := &proxies{api: toxiproxy.NewClient(apiURL), paths: map[string]path{}}
	cfg := make([]toxiproxy.Proxy, 0, len(paths))
	for _, p := range paths {
		px.paths[p.name()] = p
		cfg = append(cfg, toxiproxy.Proxy{Name: p.name(), Listen: "0.0.0.0:" + strconv.Itoa(p.port), Upstream: p.upstream, Enabled: true})
	}
	if _, err := px.api.Populate(cfg); err != nil {
		return nil, fmt.Errorf("toxiproxy populate %d proxies: %w", len(cfg), err)
	}
	return px, nil
}

// addr is where from reaches to.
func (px *proxies) addr(from, to string) (string, bool) {
	p, ok := px.paths[from+"->"+to]
	return p.listen(), ok
}

// match lists the paths from a to b, where either side may be a service,
// a dependency or "role-*"; both directions when both is set. The result
// is sorted, so faults apply in a fixed order.
func (px *proxies) match(a, b string, both bool) []string {
	var out []string
	for name, p := range px.paths {
		if (sideMatch(a, p.from) && sideMatch(b, p.to)) || (both && sideMatch(b, p.from) && sideMatch(a, p.to)) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// touching lists every path from or to a (a service or "role-*").
func (px *proxies) touching(a string) []string {
	var out []string
	for name, p := range px.paths {
		if sideMatch(a, p.from) || sideMatch(a, p.to) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func sideMatch(pattern, name string) bool {
	if pattern == "*" {
		return true
	}
	if strings.HasSuffix(pattern, "-*") {
		return roleOf(name) == strings.TrimSuffix(pattern, "-*")
	}
	return pattern == name
}

// toxic adds one toxic to each named path; the toxic's name is returned
// for removal.
func (px *proxies) toxic(names []string, toxicName, kind, stream string, toxicity float32, attrs toxiproxy.Attributes) error {
	for _, n := range names {
		p, err := px.api.Proxy(n)
		if err != nil {
			return fmt.Errorf("toxiproxy proxy %s: %w", n, err)
		}
		if _, err := p.AddToxic(toxicName, kind, stream, toxicity, attrs); err != nil {
			return fmt.Errorf("toxiproxy %s on %s: %w", kind, n, err)
		}
	}
	return nil
}

// removeToxic removes a toxic from each named path (closing the
// connections it held).
func (px *proxies) removeToxic(names []string, toxicName string) error {
	var first error
	for _, n := range names {
		p, err := px.api.Proxy(n)
		if err == nil {
			err = p.RemoveToxic(toxicName)
		}
		if err != nil && first == nil {
			first = fmt.Errorf("toxiproxy remove %s from %s: %w", toxicName, n, err)
		}
	}
	return first
}

// repoint sends each named path to a new upstream. toxiproxy stops the
// proxy (closing its connections, so the clients redial) and starts it
// again on the new upstream; its toxics stay. px.paths keeps the planned
// upstream: it is only read to start services.
func (px *proxies) repoint(names []string, upstream string) error {
	for _, n := range names {
		p, err := px.api.Proxy(n)
		if err != nil {
			return fmt.Errorf("toxiproxy proxy %s: %w", n, err)
		}
		p.Upstream = upstream
		if err := p.Save(); err != nil {
			return fmt.Errorf("toxiproxy re-point %s to %s: %w", n, upstream, err)
		}
	}
	return nil
}

// setEnabled enables or disables each named path: disabled, it closes its
// connections (dropping what a toxic held) and refuses new ones.
func (px *proxies) setEnabled(names []string, on bool) error {
	for _, n := range names {
		p, err := px.api.Proxy(n)
		if err == nil {
			if on {
				err = p.Enable()
			} else {
				err = p.Disable()
			}
		}
		if err != nil {
			return fmt.Errorf("toxiproxy enable=%v %s: %w", on, n, err)
		}
	}
	return nil
}

// Path toxics an Env offers beyond the scenario vocabulary (toxiproxy's
// names): for tests and experiments on one path.
const (
	ToxicLatency   = "latency"    // attrs: latency, jitter (ms)
	ToxicTimeout   = "timeout"    // attrs: timeout (ms; 0 holds data until removed)
	ToxicReset     = "reset_peer" // attrs: timeout (ms before the reset)
	ToxicBandwidth = "bandwidth"  // attrs: rate (KB/s)
)

// AddToxic puts a toxic on the path from dials to ("entry-0", "logic-1";
// to may be mariadb, redis or nats), in the direction of stream
// ("upstream": what from sends, "downstream": what it receives). The
// returned function removes it.
func (e *Env) AddToxic(from, to, kind, stream string, attrs map[string]any) (remove func() error, err error) {
	name := from + "->" + to
	if _, ok := e.proxies.paths[name]; !ok {
		return nil, fmt.Errorf("chaos: no path %s", name)
	}
	switch kind {
	case ToxicLatency, ToxicTimeout, ToxicReset, ToxicBandwidth:
	default:
		return nil, fmt.Errorf("chaos: unknown toxic %q", kind)
	}
	toxic := "api-" + kind + "-" + stream
	if err := e.proxies.toxic([]string{name}, toxic, kind, stream, 1, toxiproxy.Attributes(attrs)); err != nil {
		return nil, err
	}
	return func() error { return e.proxies.removeToxic([]string{name}, toxic) }, nil
}

// Toxics lists the toxics on the path from dials to.
func (e *Env) Toxics(from, to string) ([]string, error) {
	p, err := e.proxies.api.Proxy(from + "->" + to)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	var out []string
	for _, t := range p.ActiveToxics {
		out = append(out, t.Type)
	}
	sort.Strings(out)
	return out, nil
}
