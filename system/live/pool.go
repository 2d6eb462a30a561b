package live

import (
	"context"
	"time"

	"github.com/zzim/zzim/system/node"
)

// Dependency worker pools. A goroutine per dependency request (as before)
// costs a stack, a scheduler round trip and a context per request, and puts
// no bound on concurrency but DepInflightMax: under overload thousands of
// goroutines contend for the store's and presence's locks. Instead each
// dependency kind has a fixed set of workers in the process and a bounded
// queue; a request that finds the queue full completes at once as Failed
// (ErrOverloaded): nothing was done, so the caller may retry or shed.
const (
	// StoreWorkers run store operations. das bounds its own in-flight
	// operations (appendInflightMax, readInflightMax per queue), so this is
	// about a real database's round trips overlapping.
	StoreWorkers = 32
	// PresenceWorkers run presence lookups and writes (Redis round trips).
	PresenceWorkers = 16
	// PublishWorkers run queue publishes. With an AsyncQueue a worker only
	// hands the message over; with a synchronous one it waits for the ack.
	PublishWorkers = 32
	// RegistryWorkers run registry puts and deletes (a few per second).
	RegistryWorkers = 2
	// AckWorkers acknowledge queue deliveries (Ack/Nak).
	AckWorkers = 4
	// depQueueMax bounds the requests waiting for a pool's workers.
	depQueueMax = 4096
)

// depJob is one dependency request waiting for a worker.
type depJob struct {
	h        *Host
	id       node.ReqID
	kind     string
	deadline time.Time
	run      func(ctx context.Context) (node.Completion, error)
	// async, if set instead of run, starts the request and calls done
	// exactly once, possibly on another goroutine; it returns false if it
	// could not start (done is then not called).
	async func(done func(node.Completion, error)) bool
}

// depPool is a fixed set of workers draining a bounded queue.
type depPool struct {
	jobs chan depJob
}

func newDepPool(workers int, stop <-chan struct{}) *depPool {
	p := &depPool{jobs: make(chan depJob, depQueueMax)}
	for i := 0; i < workers; i++ {
		go p.work(stop)
	}
	return p
}

// submit queues j; false when the queue is full.
func (p *depPool) submit(j depJob) bool {
	select {
	case p.jobs <- j:
		return true
	default:
		return false
	}
}

func (p *depPool) work(stop <-chan struct{}) {
	for {
		select {
		case j := <-p.jobs:
			j.do()
		case <-stop:
			return
		}
	}
}

// do runs the job. Time spent waiting in the queue counts against the
// dependency timeout; a job whose deadline passed while it waited is not
// run at all, so it fails definitely (nothing was done) rather than
// adding load to a dependency that is already late.
func (j depJob) do() {
	h := j.h
	start := time.Now()
	if h.stopped.Load() {
		h.inflight.Add(-1)
		return
	}
	if !start.Before(j.deadline) {
		j.complete(start, node.Completion{}, ErrOverloaded)
		return
	}
	if j.async != nil {
		if !j.async(func(c node.Completion, err error) { j.complete(start, c, err) }) {
			j.complete(start, node.Completion{}, ErrOverloaded)
		}
		return
	}
	ctx, cancel := context.WithDeadline(h.ctx, j.deadline)
	c, err := j.run(ctx)
	cancel()
	j.complete(start, c, err)
}

func (j depJob) complete(start time.Time, c node.Completion, err error) {
	h := j.h
	defer h.inflight.Add(-1)
	h.proc.metrics.depLatency(j.kind, time.Since(start), err)
	c.Req = j.id
	if err != nil {
		c.Outcome, c.Err = classify(err), err
	}
	h.post(c)
}

// pools are a process's dependency pools, one per kind.
type pools struct {
	store, presence, publish, registry *depPool
	ack                                chan func()
}

func newPools(stop <-chan struct{}) *pools {
	ps := &pools{
		store:    newDepPool(StoreWorkers, stop),
		presence: newDepPool(PresenceWorkers, stop),
		publish:  newDepPool(PublishWorkers, stop),
		registry: newDepPool(RegistryWorkers, stop),
		ack:      make(chan func(), depQueueMax),
	}
	for i := 0; i < AckWorkers; i++ {
		go func() {
			for {
				select {
				case fn := <-ps.ack:
					fn()
				case <-stop:
					return
				}
			}
		}()
	}
	return ps
}

func (ps *pools) of(kind string) *depPool {
	switch kind {
	case "store":
		return ps.store
	case "presence":
		return ps.presence
	case "publish":
		return ps.publish
	}
	return ps.registry
}

// ackLater runs an Ack or Nak on the ack workers; when they are full it
// runs on its own goroutine rather than dropping it (a lost ack only means
// a redelivery, but there is no reason to cause one).
func (ps *pools) ackLater(fn func()) {
	select {
	case ps.ack <- fn:
	default:
		go fn()
	}
}
