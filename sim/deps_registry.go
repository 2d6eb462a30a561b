package sim

import (
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// simRegistry is JetStream KV: one key per slot with a TTL refreshed by
// heartbeats. Expiry is visible to watchers (the bucket has LimitMarkerTTL).
// Every change of a role's alive set reaches every node as a View, each
// node after its own drawn delay, in order per node; a registry-delay fault
// makes views late and inconsistent between nodes.
type simRegistry struct {
	s       *sim
	expires map[int32]int64 // instance → key expiry; absent: no key
	views   map[node.Role][]bool
	// lastView per instance keeps each node's views in order.
	lastView map[int32]int64
	// frozenAt: when NATS lost its leader (the TTL clock stopped).
	frozenAt int64
}

func newSimRegistry(s *sim) *simRegistry {
	return &simRegistry{s: s, expires: map[int32]int64{}, views: map[node.Role][]bool{},
		lastView: map[int32]int64{}}
}

// preload registers the initial topology as if the cluster had been running:
// nodes start with every slot believed alive, and the registry agrees.
func (r *simRegistry) preload() {
	for _, in := range r.s.instances {
		r.expires[in.idx] = int64(node.RegistryTTLDefault)
		r.s.schedule(int64(node.RegistryTTLDefault), event{kind: evRegistryExpire, target: in.idx})
	}
	for _, role := range node.Roles {
		r.views[role] = r.compute(role)
	}
	r.s.schedule(int64(viewRefresh), event{kind: evRegistryRefresh})
}

// viewRefresh matches natsdeps.ViewRefreshDefault: the live registry watch
// repeats every view this often, so a node that marked a slot dead on its own
// (timeouts across a partition that left the registry untouched) hears that
// it is alive and fails back.
const viewRefresh = 5 * time.Second

// refresh tells every node every view again and schedules the next refresh.
func (r *simRegistry) refresh() {
	for _, role := range node.Roles {
		v := r.views[role]
		if len(v) == 0 {
			continue
		}
		for _, in := range r.s.instances {
			if in.up {
				r.tell(in, role, v)
			}
		}
	}
	r.s.schedule(r.s.now+int64(viewRefresh), event{kind: evRegistryRefresh})
}

func (r *simRegistry) submit(in *instance, req node.ReqID, op node.RegistryOp) {
	s := r.s
	at := s.now + latency(s.deps, s.cfg.Deps.RegistryLatency/2, s.cfg.Deps.RegistryLatency/2)
	if s.faults.registryUnavailable() {
		// NATS has no leader: the KV put fails (the node retries at its
		// next heartbeat).
		s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.Failed, Err: store.ErrUnavailable})
		return
	}
	idx, ok := s.byAddr[op.Addr]
	if !ok {
		s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.Failed, Err: errNoSlot})
		return
	}
	switch op.Kind {
	case node.RegistryRegister, node.RegistryHeartbeat:
		ttl := op.TTL
		if ttl <= 0 {
			ttl = node.RegistryTTLDefault
		}
		exp := s.now + int64(ttl)
		r.expires[idx] = exp
		s.schedule(exp, event{kind: evRegistryExpire, target: idx})
	case node.RegistryDeregister:
		delete(r.expires, idx)
	}
	// A Register is a put that watchers see even when the alive set is the
	// same (a restart within the TTL); heartbeats only matter on change.
	r.publish(s.instances[idx].addr.Role, op.Kind == node.RegistryRegister)
	s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.OK})
}

// expire deletes instance idx's key if its TTL ran out.
func (r *simRegistry) expire(idx int32) {
	if r.s.faults.registryUnavailable() {
		return // frozen: thaw reschedules every key's expiry
	}
	if exp, ok := r.expires[idx]; ok && exp <= r.s.now {
		delete(r.expires, idx)
		r.s.obs.registryExpiries++
		r.publish(r.s.instances[idx].addr.Role, false)
	}
}

// compute is the alive set of role from the keys.
func (r *simRegistry) compute(role node.Role) []bool {
	n := 0
	for _, in := range r.s.instances {
		if in.addr.Role == role && in.addr.Slot+1 > n {
			n = in.addr.Slot + 1
		}
	}
	alive := make([]bool, n)
	for _, in := range r.s.instances {
		if in.addr.Role == role {
			_, alive[in.addr.Slot] = r.expires[in.idx]
		}
	}
	return alive
}

// publish sends role's view to every node if it changed (or if forced).
func (r *simRegistry) publish(role node.Role, force bool) {
	alive := r.compute(role)
	if !force && equalBools(alive, r.views[role]) {
		return
	}
	r.views[role] = alive
	r.s.obs.viewChanges++
	for _, in := range r.s.instances {
		if in.up {
			r.tell(in, role, alive)
		}
	}
}

// tell schedules one View for one node after its own delay, in order.
func (r *simRegistry) tell(in *instance, role node.Role, alive []bool) {
	s := r.s
	at := s.now + expDuration(s.deps, s.cfg.Deps.ViewDelayMean) + s.faults.viewExtra()
	if last := r.lastView[in.idx]; at < last {
		at = last
	}
	r.lastView[in.idx] = at
	s.schedule(at, event{kind: evNode, target: in.idx, inc: uint64(in.inc), p: node.View{Role: role, Alive: alive}})
}

// started gives a (re)started node the current views, as a KV watcher's
// initial values.
func (r *simRegistry) started(in *instance) {
	for _, role := range node.Roles {
		if v := r.views[role]; len(v) > 0 {
			r.tell(in, role, v)
		}
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
