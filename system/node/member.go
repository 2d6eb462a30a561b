package node

import "time"

// Registration timing defaults (the simulator and live runtime may override).
const (
	RegistryTTLDefault       = 6 * time.Second
	RegistryHeartbeatDefault = 2 * time.Second
)

type heartbeatTag struct{}

// Member registers a node in the registry, keeps its key alive with
// heartbeats, and tracks the views of every role. Services embed it and
// forward events to Handle first.
type Member struct {
	Views     *Views
	TTL       time.Duration
	Heartbeat time.Duration
}

// NewMember starts with every configured slot believed alive.
func NewMember(topology map[Role]int) *Member {
	return &Member{Views: NewViews(topology), TTL: RegistryTTLDefault, Heartbeat: RegistryHeartbeatDefault}
}

// Start registers the node and schedules heartbeats.
func (m *Member) Start(env Env) {
	env.Registry(RegistryOp{Kind: RegistryRegister, Addr: env.Self(), TTL: m.TTL})
	env.After(m.Heartbeat, heartbeatTag{})
}

// Handle consumes heartbeat timers and View events, and reports whether it did.
// Registry completions are left to the caller (they are usually ignored:
// a failed heartbeat is retried by the next one).
func (m *Member) Handle(env Env, ev Event) bool {
	switch ev := ev.(type) {
	case Timer:
		if _, ok := ev.Tag.(heartbeatTag); ok {
			env.Registry(RegistryOp{Kind: RegistryHeartbeat, Addr: env.Self(), TTL: m.TTL})
			env.After(m.Heartbeat, heartbeatTag{})
			return true
		}
	case View:
		m.Views.Update(ev)
		return true
	}
	return false
}

// Deregister removes the node's key (graceful shutdown).
func (m *Member) Deregister(env Env) {
	env.Registry(RegistryOp{Kind: RegistryDeregister, Addr: env.Self()})
}
