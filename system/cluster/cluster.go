// Package cluster assembles zzim's nodes from one shared configuration, so
// that `zzim serve`, `zzim up`, the chaos harness and the end-to-end tests
// build every role the same way: the same topology, secret, platform key,
// bug switches, business split and timeouts reach each service's Config.
//
// It also names where each instance's internal link listens: explicit
// 127.0.0.1 ports for one machine, or a pattern ("{role}-{slot}:7000") for
// a cluster spread over hosts.
package cluster

import (
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/extlogic"
	"github.com/zzim/zzim/system/httpentry"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
)

// SlotsMax bounds the slots of one role: the port scheme of InternalLocal
// gives each role a block of this many ports.
const SlotsMax = 100

// Config is what every node of a cluster shares.
type Config struct {
	// Topology: configured slots per role (the n of (x+p) % n).
	Topology map[node.Role]int
	// Secret signs and checks login tokens (entry, httpentry).
	Secret []byte
	// PlatformKey guards httpentry's platform API; empty disables it.
	PlatformKey string
	// Bugs are the bug switches (off unless named).
	Bugs bugs.Set
	// LogicBusinesses optionally restricts logic slot i to some businesses
	// (the article's Login/Msg/Contact split); a missing slot serves all.
	// Entry and httpentry get the same map and route each request within
	// the group of slots serving its business.
	LogicBusinesses map[int][]logic.Business
	// Notifier receives extlogic's offline notifications (nil: dropped).
	Notifier extlogic.Notifier

	// Timeouts; zero takes each service's default.
	LogicTimeout   time.Duration // entry and httpentry → logic, one attempt
	PushAckTimeout time.Duration // a PUSH without PUSH_ACK takes the offline path after this
	DasTimeout     time.Duration // logic → das, one attempt
	StoreTimeout   time.Duration // extlogic → das, one attempt

	// DasAppendLinger is das.Config.AppendLinger: how long das may hold a
	// non-full append batch for more appends to join it (0: off).
	DasAppendLinger time.Duration

	// SendRatePerSecond and SendBurst: logic's per-user send token bucket
	// (0: logic's default; a negative rate: no limit).
	SendRatePerSecond int
	SendBurst         int
}

// DefaultTopology is `zzim up`'s: 2 entry, 1 httpentry, 3 logic, 2 extlogic, 2 das.
func DefaultTopology() map[node.Role]int {
	return map[node.Role]int{
		node.RoleEntry: 2, node.RoleHTTPEntry: 1, node.RoleLogic: 3, node.RoleExtLogic: 2, node.RoleDas: 2,
	}
}

// ParseTopology reads "entry=2,httpentry=1,logic=3,extlogic=2,das=2". Roles
// not named keep base's count (base may be nil).
func ParseTopology(s string, base map[node.Role]int) (map[node.Role]int, error) {
	out := map[node.Role]int{}
	for r, n := range base {
		out[r] = n
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("topology %q: want role=count", part)
		}
		role, err := parseRole(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("topology: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 0 || n > SlotsMax {
			return nil, fmt.Errorf("topology %q: count must be 0..%d", part, SlotsMax)
		}
		out[role] = n
	}
	return out, nil
}

// FormatTopology is the inverse of ParseTopology, roles in node.Roles order.
func FormatTopology(t map[node.Role]int) string {
	var parts []string
	for _, r := range node.Roles {
		if t[r] > 0 {
			parts = append(parts, string(r)+"="+strconv.Itoa(t[r]))
		}
	}
	return strings.Join(parts, ",")
}

func parseRole(s string) (node.Role, error) {
	for _, r := range node.Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (known: entry, httpentry, logic, extlogic, das)", s)
}

// ParseRole reads a role name.
func ParseRole(s string) (node.Role, error) { return parseRole(s) }

// ParseBusinesses reads "0=login,1=msg+contact": logic slot → businesses.
func ParseBusinesses(s string) (map[int][]logic.Business, error) {
	out := map[int][]logic.Business{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		slot, err := strconv.Atoi(strings.TrimSpace(k))
		if !ok || err != nil || slot < 0 {
			return nil, fmt.Errorf("logic businesses %q: want slot=business+business", part)
		}
		for _, b := range strings.Split(v, "+") {
			switch bb := logic.Business(strings.TrimSpace(b)); bb {
			case logic.BusinessLogin, logic.BusinessMsg, logic.BusinessContact:
				out[slot] = append(out[slot], bb)
			default:
				return nil, fmt.Errorf("logic businesses %q: unknown business %q (known: login, msg, contact)", part, b)
			}
		}
	}
	return out, nil
}

// Validate checks the configuration before any node starts.
func (c *Config) Validate() error {
	total := 0
	for r, n := range c.Topology {
		if _, err := parseRole(string(r)); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
		if n < 0 || n > SlotsMax {
			return fmt.Errorf("cluster: %s has %d slots, want 0..%d", r, n, SlotsMax)
		}
		total += n
	}
	if total == 0 {
		return fmt.Errorf("cluster: empty topology")
	}
	if len(c.Secret) == 0 && c.Topology[node.RoleEntry]+c.Topology[node.RoleHTTPEntry] > 0 {
		return fmt.Errorf("cluster: no token secret")
	}
	for slot := range c.LogicBusinesses {
		if slot >= c.Topology[node.RoleLogic] {
			return fmt.Errorf("cluster: businesses for logic-%d, but logic has %d slots", slot, c.Topology[node.RoleLogic])
		}
	}
	return nil
}

// Addrs lists every instance of the topology, roles in node.Roles order.
func Addrs(topology map[node.Role]int) []node.Addr {
	var out []node.Addr
	for _, r := range node.Roles {
		for s := 0; s < topology[r]; s++ {
			out = append(out, node.Addr{Role: r, Slot: s})
		}
	}
	return out
}

// NewNode returns the constructor of the node at a: a fresh state machine
// per incarnation, configured from c.
func (c *Config) NewNode(a node.Addr) func() node.Node {
	topo := c.Topology
	switch a.Role {
	case node.RoleEntry:
		ec := entry.Config{Topology: topo, Secret: c.Secret, LogicTimeout: c.LogicTimeout, PushAckTimeout: c.PushAckTimeout,
			LogicBusinesses: c.LogicBusinesses}
		return func() node.Node { return entry.New(ec) }
	case node.RoleHTTPEntry:
		hc := httpentry.Config{Topology: topo, Secret: c.Secret, PlatformKey: c.PlatformKey,
			LogicTimeout: c.LogicTimeout, PushAckTimeout: c.PushAckTimeout, LogicBusinesses: c.LogicBusinesses}
		return func() node.Node { return httpentry.New(hc) }
	case node.RoleLogic:
		lc := logic.Config{Topology: topo, Bugs: c.Bugs, Businesses: c.LogicBusinesses[a.Slot], DasTimeout: c.DasTimeout,
			SendRatePerSecond: c.SendRatePerSecond, SendBurst: c.SendBurst}
		if c.LogicTimeout > 0 {
			// Logic answers within three quarters of what entry waits, so a
			// slow das is answered TIMEOUT before entry reads logic as dead.
			lc.AnswerWithin = c.LogicTimeout * 3 / 4
		}
		return func() node.Node { return logic.New(lc) }
	case node.RoleExtLogic:
		xc := extlogic.Config{Topology: topo, Notifier: c.Notifier, StoreTimeout: c.StoreTimeout}
		return func() node.Node { return extlogic.New(xc) }
	case node.RoleDas:
		dc := das.Config{Topology: topo, Bugs: c.Bugs, AppendLinger: c.DasAppendLinger}
		return func() node.Node { return das.New(dc) }
	}
	panic(fmt.Sprintf("cluster: no constructor for role %q", a.Role))
}

// roleIndex is the role's position in node.Roles: its block of ports.
func roleIndex(r node.Role) int {
	for i, x := range node.Roles {
		if x == r {
			return i
		}
	}
	return -1
}

// InternalPortBase is where InternalLocal's port blocks start: role i,
// slot s listens on InternalPortBase + i*SlotsMax + s.
const InternalPortBase = 17000

// InternalPort is the default internal port of a on one machine.
func InternalPort(a node.Addr) int { return InternalPortBase + roleIndex(a.Role)*SlotsMax + a.Slot }

// InternalPattern expands pattern for every instance of the topology.
// Placeholders: {role}, {slot}, {addr} (role-slot) and {port}
// (InternalPort). "127.0.0.1:{port}" is the one-machine layout;
// "{role}-{slot}:7000" suits one host name per instance (containers).
func InternalPattern(topology map[node.Role]int, pattern string) map[node.Addr]string {
	out := map[node.Addr]string{}
	for _, a := range Addrs(topology) {
		out[a] = ExpandPattern(pattern, a)
	}
	return out
}

// ExpandPattern fills pattern's placeholders for a.
func ExpandPattern(pattern string, a node.Addr) string {
	return strings.NewReplacer(
		"{role}", string(a.Role), "{slot}", strconv.Itoa(a.Slot), "{addr}", a.String(),
		"{port}", strconv.Itoa(InternalPort(a)),
	).Replace(pattern)
}

// ParsePeers reads "logic-0=host:port" entries into a map.
func ParsePeers(list []string) (map[node.Addr]string, error) {
	out := map[node.Addr]string{}
	for _, p := range list {
		k, v, ok := strings.Cut(p, "=")
		if !ok || v == "" {
			return nil, fmt.Errorf("peer %q: want role-slot=host:port", p)
		}
		a, err := node.ParseAddr(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("peer %q: %w", p, err)
		}
		out[a] = strings.TrimSpace(v)
	}
	return out, nil
}

// LogAttrs describes c for a startup log line (never the secret).
func (c *Config) LogAttrs() []any {
	var bs []string
	for b := range c.Bugs {
		if c.Bugs[b] {
			bs = append(bs, string(b))
		}
	}
	sort.Strings(bs)
	return []any{slog.String("topology", FormatTopology(c.Topology)), slog.String("bugs", strings.Join(bs, ",")),
		slog.Bool("platform_api", c.PlatformKey != "")}
}
