package sim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Faults of NATS and Redis themselves.
const (
	// FaultNATSKill: one node of the 3-node JetStream cluster (Target
	// "nats-0".."nats-2", "nats-leader" or "nats-follower", resolved when
	// the fault fires) is SIGKILLed at At and restarted after For.
	FaultNATSKill FaultKind = "nats-kill"
	// FaultNATSPartition: the node is cut off from the others and from
	// the services for For.
	FaultNATSPartition FaultKind = "nats-partition"
	// FaultRedisKill: Redis dies at At with every presence entry and is
	// back, empty, after For; presence refuses every request meanwhile.
	FaultRedisKill FaultKind = "redis-kill"
)

// NATS targets that resolve when the fault fires.
const (
	natsLeaderTarget   = "nats-leader"
	natsFollowerTarget = "nats-follower"
)

// natsNodes is the size of the simulated JetStream cluster.
const natsNodes = 3

// natsElection is how long the queue and the registry are unavailable
// while the surviving nodes elect a leader: JetStream's election timeout
// is about a second, and the clients then reconnect to the new leader.
const natsElection = 1500 * time.Millisecond

// simNATS is the JetStream cluster under the queue and the registry. The
// simulator models them as one R3 service: losing a follower costs
// nothing (the leader still has a quorum), losing the leader makes both
// unavailable for an election, and losing the quorum makes them
// unavailable until a node comes back (and an election follows).
type simNATS struct {
	s     *sim
	alive [natsNodes]int // faults in force per node; 0: reachable
	// leader is the meta leader (-1 while there is no quorum); electing:
	// an election is under way, electionID names the event that ends it.
	leader     int
	electing   bool
	electionID uint64
	// node each NATS fault resolved to when it fired.
	node map[int]int

	restarts, leaderChanges uint64
}

func newSimNATS(s *sim) *simNATS {
	return &simNATS{s: s, leader: 0, node: map[int]int{}}
}

// validNATSTarget checks a NATS fault's target.
func validNATSTarget(t string) error {
	if t == natsLeaderTarget || t == natsFollowerTarget {
		return nil
	}
	if k, err := strconv.Atoi(strings.TrimPrefix(t, "nats-")); err == nil && strings.HasPrefix(t, "nats-") &&
		k >= 0 && k < natsNodes {
		return nil
	}
	return fmt.Errorf("target %q: want nats-0..nats-%d, %s or %s", t, natsNodes-1, natsLeaderTarget, natsFollowerTarget)
}

// resolve names the node a target means now.
func (n *simNATS) resolve(t string) int {
	switch t {
	case natsLeaderTarget:
		if n.leader >= 0 {
			return n.leader
		}
		return 0
	case natsFollowerTarget:
		for k := range natsNodes {
			if k != n.leader && n.alive[k] == 0 {
				return k
			}
		}
		return (max(n.leader, 0) + 1) % natsNodes
	}
	k, _ := strconv.Atoi(strings.TrimPrefix(t, "nats-"))
	return k
}

func (n *simNATS) reachable() int {
	c := 0
	for _, a := range n.alive {
		if a == 0 {
			c++
		}
	}
	return c
}

// unavailable: the queue and the registry answer nothing.
func (n *simNATS) unavailable() bool { return n.electing || n.leader < 0 }

// lose takes fault i's node away.
func (n *simNATS) lose(i int, target string) {
	k := n.resolve(target)
	n.node[i] = k
	n.alive[k]++
	switch {
	case k == n.leader:
		n.leader = -1
		n.elect(i)
	case n.reachable() < natsNodes/2+1:
		// A leader that lost its quorum steps down: nothing commits.
		n.leader = -1
	}
}

// back returns fault i's node; kill: it was restarted and caught up.
func (n *simNATS) back(i int, kill bool) {
	k, ok := n.node[i]
	if !ok {
		return
	}
	delete(n.node, i)
	n.alive[k]--
	if kill && n.alive[k] == 0 {
		n.restarts++
	}
	if n.leader < 0 && !n.electing {
		n.elect(i)
	}
}

// elect starts an election if a quorum is reachable; it ends after
// natsElection with the lowest reachable node as the leader.
func (n *simNATS) elect(i int) {
	if n.reachable() < natsNodes/2+1 {
		return
	}
	n.electing = true
	n.electionID++
	s := n.s
	// Fault events past the schedule's length end elections (faults.go).
	s.schedule(s.now+int64(natsElection), event{kind: evFault, a: uint64(len(s.faults.list)) + n.electionID})
}

// elected ends the election that id names (a later one supersedes it).
func (n *simNATS) elected(id uint64) bool {
	if !n.electing || id != n.electionID {
		return false
	}
	if n.reachable() < natsNodes/2+1 {
		n.electing = false
		return true // the quorum was lost meanwhile: the next return elects
	}
	n.electing = false
	for k := range natsNodes {
		if n.alive[k] == 0 {
			n.leader = k
			break
		}
	}
	n.leaderChanges++
	return true
}

// kill (redis-kill) drops every presence entry; the count is of the live
// ones Redis held.
func (p *simPresence) kill() {
	for _, u := range append([]string(nil), p.sortedKeys()...) {
		if p.entries[u].expires > p.s.now {
			p.killed++
		}
		delete(p.entries, u)
	}
	p.dirty = true
}

// registryUnavailable: heartbeats and registrations fail while NATS is
// electing or has no quorum.
func (f *faultState) registryUnavailable() bool { return f.nats != nil && f.nats.unavailable() }

// natsFaultTarget reports whether a node target names a NATS node.
func natsFaultTarget(k FaultKind) bool { return k == FaultNATSKill || k == FaultNATSPartition }

// natsChange applies what a change of the cluster does to the services on
// it: the registry's TTL clock stops while it has no leader (nobody
// processes expiries, and heartbeats fail), and the queue delivers again
// once a leader is elected.
func (f *faultState) natsChange(wasDown bool) {
	down := f.nats.unavailable()
	f.recompute()
	switch {
	case down && !wasDown:
		f.s.registry.freeze()
	case !down && wasDown:
		f.s.registry.thaw()
		f.s.queue.wakeAll()
	}
}

// freeze stops the registry's TTL clock.
func (r *simRegistry) freeze() { r.frozenAt = r.s.now }

// thaw restarts it: every key lives as long again as the registry was
// gone, so nodes whose heartbeats failed meanwhile are not declared dead.
func (r *simRegistry) thaw() {
	gap := r.s.now - r.frozenAt
	idx := make([]int32, 0, len(r.expires))
	for i := range r.expires {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	for _, i := range idx {
		r.expires[i] += gap
		r.s.schedule(r.expires[i], event{kind: evRegistryExpire, target: i})
	}
}
