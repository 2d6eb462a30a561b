package sim

import (
	"time"

	"github.com/zzim/zzim/system/node"
)

// link is the state of one direction between two instances. Links are FIFO
// (a packet never overtakes an earlier one) unless a reorder draw lets it
// escape; partitions drop silently, so the sender's timeout handles them.
type link struct {
	last    int64 // latest delivery time scheduled on this link
	blocked int16 // partitions currently cutting this direction
}

// netFault is what active link faults add to every link of one instance.
type netFault struct {
	delay       int64
	drop        float64
	dup         float64
	reorder     float64
	reorderMean int64
	clogUntil   int64
}

func (s *sim) growLinks() {
	n := len(s.instances)
	for i := range s.links {
		for len(s.links[i]) < n {
			s.links[i] = append(s.links[i], link{})
		}
	}
	for len(s.links) < n {
		s.links = append(s.links, make([]link, n))
	}
}

// send moves m from one instance towards another.
func (s *sim) send(from *instance, to node.Addr, m node.Message) {
	ti, ok := s.byAddr[to]
	if !ok || !s.instances[ti].up {
		// No process listens: the connection attempt is reset.
		s.obs.linkDowns++
		s.schedule(s.now+int64(s.cfg.Deps.LinkDownDetect), event{kind: evNode, target: from.idx,
			inc: uint64(from.inc), p: node.LinkDown{Peer: to}})
		return
	}
	target := s.instances[ti]
	l := &s.links[from.idx][ti]
	if l.blocked > 0 {
		s.obs.partitionDrops++
		return
	}
	ff, tf := s.faults.net(from.idx), s.faults.net(ti)
	base := &s.cfg.Network
	if coin(s.net, base.Drop+ff.drop+tf.drop) {
		s.obs.packetDrops++
		return
	}
	at := s.now + latency(s.net, base.DelayMin, base.DelayMean) + ff.delay + tf.delay
	if coin(s.net, base.Reorder+ff.reorder+tf.reorder) {
		at += expDuration(s.net, maxDuration(base.ReorderMean, ff.reorderMean, tf.reorderMean))
		s.obs.reordered++
	} else if at < l.last {
		at = l.last
	}
	if clog := max(ff.clogUntil, tf.clogUntil); clog > at {
		at = clog
	}
	if at > l.last {
		l.last = at
	}
	ev := event{kind: evNode, target: ti, inc: uint64(target.inc), p: node.Recv{From: from.addr, Msg: m}}
	s.schedule(at, ev)
	if coin(s.net, base.Duplicate+ff.dup+tf.dup) {
		s.obs.duplicated++
		s.schedule(at+latency(s.net, base.DelayMin, base.DelayMean), ev)
	}
}

// maxDuration picks the largest reorder mean; a reorder with no stated
// mean still reorders, by 5 ms.
func maxDuration(base time.Duration, a, b int64) time.Duration {
	m := max(int64(base), a, b)
	if m <= 0 {
		m = int64(5 * time.Millisecond)
	}
	return time.Duration(m)
}

// block adds (or with delta -1 removes) a partition between groups a and b.
func (s *sim) block(a, b []int32, oneWay bool, delta int16) {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			s.links[x][y].blocked += delta
			if !oneWay {
				s.links[y][x].blocked += delta
			}
		}
	}
}
