// Package node is the contract every zzim service implements: a state machine
// that reacts to one Event at a time and reaches the world only through Env.
// The same services run under the deterministic simulator (sim/) and in
// production (system/live); neither driver is visible from here.
//
// Rules for implementations (checked by `make lint`): no wall clock, no global
// randomness, no goroutines, no select, no blocking I/O, and no map iteration
// whose order reaches an output.
package node

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// Role names a kind of service.
type Role string

const (
	RoleEntry     Role = "entry"
	RoleHTTPEntry Role = "httpentry"
	RoleLogic     Role = "logic"
	RoleExtLogic  Role = "extlogic"
	RoleDas       Role = "das"
)

// Roles lists every role in a fixed order.
var Roles = []Role{RoleEntry, RoleHTTPEntry, RoleLogic, RoleExtLogic, RoleDas}

// Addr names one instance: a role and a slot number. Slots are configured, never renumbered.
type Addr struct {
	Role Role
	Slot int
}

func (a Addr) String() string { return string(a.Role) + "-" + strconv.Itoa(a.Slot) }

// IsZero reports whether a is unset.
func (a Addr) IsZero() bool { return a.Role == "" }

// ParseAddr parses "role-slot".
func ParseAddr(s string) (Addr, error) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 {
		return Addr{}, fmt.Errorf("node: bad address %q", s)
	}
	slot, err := strconv.Atoi(s[i+1:])
	if err != nil || slot < 0 {
		return Addr{}, fmt.Errorf("node: bad slot in address %q", s)
	}
	role := Role(s[:i])
	for _, r := range Roles {
		if r == role {
			return Addr{Role: role, Slot: slot}, nil
		}
	}
	return Addr{}, fmt.Errorf("node: unknown role in address %q", s)
}

// Identifiers handed out by the environment. Zero is never a valid id.
type (
	ConnID      uint64
	TimerID     uint64
	ReqID       uint64
	DeliveryID  uint64
	Incarnation uint64
)

// Message is an internal message between instances: one of the protobuf
// types of system/wire/internal.proto. A receiver must not modify it: the
// simulator may deliver the same value twice.
type Message = proto.Message

// Node is a service state machine.
type Node interface {
	// Start runs once per incarnation, before any event. State from a
	// previous incarnation is gone: the driver constructs a fresh Node.
	Start(env Env)
	// Handle reacts to one event. It never blocks; every effect goes through env.
	Handle(env Env, ev Event)
}

// Env is a node's window on the world.
type Env interface {
	Self() Addr
	Incarnation() Incarnation
	// Now is the node's clock: virtual and possibly skewed in the simulator.
	Now() time.Time
	// Rand is seeded by the simulator; use it for every random choice.
	Rand() *rand.Rand
	Log() *slog.Logger

	// Send queues m on the internal link to another instance. If the link is
	// down or its queue full the node receives LinkDown for that peer; the
	// message is then lost and the caller's timeout handles it.
	Send(to Addr, m Message)

	// ToClient writes a frame to a client connection (entry: TCP; httpentry:
	// the response to an HTTP request, see HTTPReply). Close ends a connection.
	ToClient(c ConnID, f wire.Frame)
	Close(c ConnID)
	// HTTPReply answers one HTTP request (httpentry only).
	HTTPReply(c ConnID, status int, contentType string, body []byte)

	After(d time.Duration, tag any) TimerID
	Cancel(id TimerID)

	// Requests to dependencies. Each ReqID gets exactly one Completion event.
	Store(op StoreOp) ReqID
	Presence(op PresenceOp) ReqID
	Publish(subject string, data []byte, msgID string) ReqID
	Registry(op RegistryOp) ReqID

	// Queue deliveries are acknowledged explicitly; an unacknowledged one is
	// redelivered after the consumer's AckWait.
	AckDelivery(id DeliveryID)
	NakDelivery(id DeliveryID, delay time.Duration)
}

// Outcome of a request.
type Outcome uint8

const (
	OK      Outcome = iota // it happened
	Failed                 // definitely did not happen
	Unknown                // timed out: it may or may not have happened
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// AddrName is an address's String, formatted once: a service names itself
// (an origin, a reply_to) in every request it sends, and formatting the
// address each time allocates. The zero value is ready; Of re-formats only
// when the address changes.
type AddrName struct {
	addr Addr
	name string
}

// Of returns a.String().
func (n *AddrName) Of(a Addr) string {
	if a != n.addr || n.name == "" {
		n.addr, n.name = a, a.String()
	}
	return n.name
}
