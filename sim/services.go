package sim

import (
	"fmt"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/das"
	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/extlogic"
	"github.com/zzim/zzim/system/httpentry"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
)

// NodeConfig is what a service constructor gets from the simulator.
type NodeConfig struct {
	Addr        node.Addr
	Topology    map[node.Role]int
	Bugs        bugs.Set
	Secret      []byte
	PlatformKey string
}

// ClientDriver is what the simulator needs from a reference client;
// *client.Client satisfies it.
type ClientDriver interface {
	Start(env client.Env)
	Handle(env client.Env, ev client.Event)
	Send(env client.Env, convID, body string) (string, error)
	Sync(env client.Env, convID string) error
	Finish(env client.Env)
}

var _ ClientDriver = (*client.Client)(nil)

// Services builds the state machines a run drives. DefaultServices wires
// zzim's own; tests may substitute others.
type Services struct {
	Node     map[node.Role]func(NodeConfig) node.Node
	Client   func(client.Config) ClientDriver
	NewStore func(bugs.Set) store.Store
}

// check reports roles with slots but no constructor.
func (sv *Services) check(topology map[node.Role]int) error {
	for _, role := range node.Roles {
		if topology[role] > 0 && sv.Node[role] == nil {
			return fmt.Errorf("sim: no service constructor for role %s (topology has %d slots)", role, topology[role])
		}
	}
	if sv.NewStore == nil {
		return fmt.Errorf("sim: no store constructor")
	}
	if sv.Client == nil {
		return fmt.Errorf("sim: no client constructor")
	}
	return nil
}

// DefaultServices wires zzim's own services, reference client and
// in-memory store.
func DefaultServices() *Services {
	return &Services{
		Node: map[node.Role]func(NodeConfig) node.Node{
			node.RoleEntry: func(c NodeConfig) node.Node {
				return entry.New(entry.Config{Topology: c.Topology, Secret: c.Secret})
			},
			node.RoleHTTPEntry: func(c NodeConfig) node.Node {
				return httpentry.New(httpentry.Config{Topology: c.Topology, Secret: c.Secret, PlatformKey: c.PlatformKey})
			},
			node.RoleLogic: func(c NodeConfig) node.Node {
				return logic.New(logic.Config{Topology: c.Topology, Bugs: c.Bugs})
			},
			node.RoleExtLogic: func(c NodeConfig) node.Node {
				return extlogic.New(extlogic.Config{Topology: c.Topology})
			},
			node.RoleDas: func(c NodeConfig) node.Node {
				return das.New(das.Config{Topology: c.Topology, Bugs: c.Bugs})
			},
		},
		Client:   func(c client.Config) ClientDriver { return client.New(c) },
		NewStore: func(b bugs.Set) store.Store { return memstore.New(memstore.Options{Bugs: b}) },
	}
}
