package live

import (
	"context"
	"time"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// The dependencies a live process talks to. Each has an in-memory
// implementation (mem*.go, for `zzim up` and tests) and a real one
// (MySQL, Redis, NATS JetStream) with the same semantics as the simulator's
// models (DESIGN.md "Dependency semantics").

// Presence maps users to the entry connection they are on.
type Presence interface {
	Do(ctx context.Context, op node.PresenceOp) (node.PresenceResult, error)
}

// QueueDelivery is one message handed to a consumer.
type QueueDelivery struct {
	Subject      string
	Data         []byte
	MsgID        string
	NumDelivered int
	Ack          func() error
	Nak          func(delay time.Duration) error
}

// Queue is an at-least-once queue with publish dedup by msgID.
type Queue interface {
	Publish(ctx context.Context, subject string, data []byte, msgID string) error
	// Consume delivers messages of the durable consumer c to fn until ctx ends.
	// Several processes consuming the same c share its messages.
	Consume(ctx context.Context, c mq.Consumer, fn func(QueueDelivery)) error
}

// AsyncQueue is a Queue that can publish without holding a goroutine until
// the ack (JetStream's PublishAsync): done is called exactly once, on any
// goroutine, with the publish's outcome, unless PublishAsync returns an
// error (then nothing was published and done is never called).
type AsyncQueue interface {
	PublishAsync(subject string, data []byte, msgID string, done func(error)) error
}

// Registry records which slots are alive: one key per slot with a TTL.
type Registry interface {
	Put(ctx context.Context, addr node.Addr, ttl time.Duration) error
	Delete(ctx context.Context, addr node.Addr) error
	// Watch calls fn with a role's slots whenever they change, until ctx ends.
	// slots is the configured number of slots per role.
	Watch(ctx context.Context, slots map[node.Role]int, fn func(node.View)) error
}

// Deps bundles a process's dependencies. Store is nil except in das processes.
type Deps struct {
	Store    store.Store
	Presence Presence
	Queue    Queue
	Registry Registry
}
