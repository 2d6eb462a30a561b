package sim

import (
	"sort"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
)

// simPresence is Redis: user → (entry, connection, incarnation) with a TTL
// in virtual time. Entries can be lost or go stale (point at an old
// connection) as faults. An op takes effect when it is submitted and
// completes after a drawn latency.
type simPresence struct {
	s       *sim
	entries map[string]presenceEntry
	keys    []string // sorted user ids, for Scan; rebuilt when dirty
	dirty   bool
	// killed counts the live entries redis-kill faults wiped.
	killed uint64
}

type presenceEntry struct {
	e       node.PresenceEntry
	expires int64
}

// presenceScanCountMax bounds one Scan page.
const presenceScanCountMax = 1000

func newSimPresence(s *sim) *simPresence {
	return &simPresence{s: s, entries: map[string]presenceEntry{}}
}

func (p *simPresence) submit(in *instance, req node.ReqID, op node.PresenceOp) {
	s := p.s
	s.obs.presenceOps++
	at := s.now + latency(s.deps, s.cfg.Deps.PresenceLatencyMin, s.cfg.Deps.PresenceLatency)
	if s.faults.presenceOutage() {
		s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.Failed, Err: store.ErrUnavailable})
		return
	}
	res := &node.PresenceResult{}
	switch op.Kind {
	case node.PresenceSet:
		if old, ok := p.get(op.Entry.User); ok {
			prev := old
			res.Previous = &prev
		}
		if _, ok := p.entries[op.Entry.User]; !ok {
			p.dirty = true
		}
		p.entries[op.Entry.User] = presenceEntry{e: op.Entry, expires: s.now + int64(op.TTL)}
	case node.PresenceGet:
		res.Found = make([]node.PresenceEntry, len(op.Users))
		for i, u := range op.Users {
			res.Found[i], _ = p.get(u)
		}
	case node.PresenceDelete:
		if cur, ok := p.get(op.Entry.User); ok && cur.Entry == op.Entry.Entry && cur.Conn == op.Entry.Conn {
			delete(p.entries, op.Entry.User)
			p.dirty = true
		}
	case node.PresenceScan:
		res.Found, res.Cursor = p.scan(op.Cursor, op.Count)
	default:
		s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.Failed, Err: store.ErrInvalid})
		return
	}
	s.complete(in, in.inc, at, node.Completion{Req: req, Outcome: node.OK, Presence: res})
}

// get returns the live entry of user (expired entries are gone).
func (p *simPresence) get(user string) (node.PresenceEntry, bool) {
	pe, ok := p.entries[user]
	if !ok {
		return node.PresenceEntry{}, false
	}
	if pe.expires <= p.s.now {
		delete(p.entries, user)
		p.dirty = true
		return node.PresenceEntry{}, false
	}
	return pe.e, true
}

func (p *simPresence) sortedKeys() []string {
	if p.dirty || p.keys == nil {
		p.keys = p.keys[:0]
		for u := range p.entries {
			p.keys = append(p.keys, u)
		}
		sort.Strings(p.keys)
		p.dirty = false
	}
	return p.keys
}

// scan pages through live entries in user order; the cursor is the
// position after the last key returned (Redis SCAN may also miss or repeat
// keys that change during a scan).
func (p *simPresence) scan(cursor uint64, count int) ([]node.PresenceEntry, uint64) {
	if count <= 0 || count > presenceScanCountMax {
		count = presenceScanCountMax
	}
	keys := p.sortedKeys()
	var out []node.PresenceEntry
	i := int(cursor)
	for ; i < len(keys) && len(out) < count; i++ {
		pe := p.entries[keys[i]]
		if pe.expires > p.s.now {
			out = append(out, pe.e)
		}
	}
	if i >= len(keys) {
		return out, 0
	}
	return out, uint64(i)
}

// lose deletes each entry with probability prob (fault).
func (p *simPresence) lose(prob float64) {
	keys := append([]string(nil), p.sortedKeys()...)
	for _, u := range keys {
		if coin(p.s.flt, prob) {
			delete(p.entries, u)
			p.dirty = true
			p.s.obs.presenceLost++
		}
	}
}

// stale points each entry, with probability prob, at a connection that no
// longer exists (fault): pushes to it fail and take the offline path.
func (p *simPresence) stale(prob float64) {
	for _, u := range append([]string(nil), p.sortedKeys()...) {
		if coin(p.s.flt, prob) {
			pe := p.entries[u]
			pe.e.Conn = node.ConnID(p.s.id())
			p.entries[u] = pe
			p.s.obs.presenceStale++
		}
	}
}
