package live

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
)

// In-memory dependencies for one process (`zzim up` without Redis, and
// tests). They keep the semantics of the real ones: TTLs, at-least-once
// delivery with AckWait redelivery, publish dedup within mq.DedupWindow.

// MemPresenceMax bounds the users a MemPresence holds; past it, Set fails
// (the caller's error path treats the user as offline, and sync delivers).
const MemPresenceMax = 1 << 20

// MemPresence is presence in a map with TTLs.
type MemPresence struct {
	mu sync.Mutex
	m  map[string]memPresenceEntry
}

type memPresenceEntry struct {
	e       node.PresenceEntry
	expires time.Time
}

func (*MemPresence) inlineDep() {}

// NewMemPresence returns an empty presence map.
func NewMemPresence() *MemPresence { return &MemPresence{m: map[string]memPresenceEntry{}} }

// ErrPresenceFull is returned by Set on a full MemPresence.
var ErrPresenceFull = errorString("live: presence full")

type errorString string

func (e errorString) Error() string { return string(e) }

func (p *MemPresence) Do(_ context.Context, op node.PresenceOp) (node.PresenceResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	var res node.PresenceResult
	switch op.Kind {
	case node.PresenceSet:
		if old, ok := p.m[op.Entry.User]; ok && now.Before(old.expires) {
			prev := old.e
			res.Previous = &prev
		} else if len(p.m) >= MemPresenceMax {
			return res, ErrPresenceFull
		}
		p.m[op.Entry.User] = memPresenceEntry{e: op.Entry, expires: now.Add(op.TTL)}
	case node.PresenceGet:
		res.Found = make([]node.PresenceEntry, len(op.Users))
		for i, u := range op.Users {
			if e, ok := p.m[u]; ok && now.Before(e.expires) {
				res.Found[i] = e.e
			}
		}
	case node.PresenceDelete:
		if e, ok := p.m[op.Entry.User]; ok && e.e.Entry == op.Entry.Entry && e.e.Conn == op.Entry.Conn {
			delete(p.m, op.Entry.User)
		}
	case node.PresenceScan:
		users := make([]string, 0, len(p.m))
		for u, e := range p.m {
			if now.Before(e.expires) {
				users = append(users, u)
			}
		}
		sort.Strings(users)
		start := int(op.Cursor)
		count := op.Count
		if count <= 0 {
			count = 100
		}
		for i := start; i < len(users) && i < start+count; i++ {
			res.Found = append(res.Found, p.m[users[i]].e)
		}
		if start+count < len(users) {
			res.Cursor = uint64(start + count)
		}
	}
	return res, nil
}

// ViewRefresh is how often a registry watch repeats unchanged views.
const ViewRefresh = 5 * time.Second

// MemRegistry is a registry of slot keys with TTLs.
type MemRegistry struct {
	mu   sync.Mutex
	keys map[node.Addr]time.Time
	// Poll is how often watchers look for expiry (200ms if 0).
	Poll time.Duration
}

// NewMemRegistry returns an empty registry.
func NewMemRegistry() *MemRegistry { return &MemRegistry{keys: map[node.Addr]time.Time{}} }

func (r *MemRegistry) Put(_ context.Context, a node.Addr, ttl time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[a] = time.Now().Add(ttl)
	return nil
}

func (r *MemRegistry) Delete(_ context.Context, a node.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, a)
	return nil
}

func (r *MemRegistry) Watch(ctx context.Context, slots map[node.Role]int, fn func(node.View)) error {
	poll := r.Poll
	if poll == 0 {
		poll = 200 * time.Millisecond
	}
	last := map[node.Role]string{}
	t := time.NewTicker(poll)
	defer t.Stop()
	lastRefresh := time.Now()
	for {
		// Repeat every view every ViewRefresh (see natsdeps.ViewRefresh:
		// callers' own dead marks are corrected by the registry's word).
		if time.Since(lastRefresh) >= ViewRefresh {
			lastRefresh = time.Now()
			last = map[node.Role]string{}
		}
		r.mu.Lock()
		now := time.Now()
		for _, role := range node.Roles {
			n := slots[role]
			if n == 0 {
				continue
			}
			alive := make([]bool, n)
			sig := make([]byte, n)
			for a, exp := range r.keys {
				if a.Role == role && a.Slot < n && now.Before(exp) {
					alive[a.Slot] = true
				}
			}
			for i, al := range alive {
				sig[i] = '0'
				if al {
					sig[i] = '1'
				}
			}
			if last[role] != string(sig) {
				last[role] = string(sig)
				r.mu.Unlock()
				fn(node.View{Role: role, Alive: alive})
				r.mu.Lock()
			}
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// MemQueueMax bounds the messages a MemQueue stream holds; a publish past it fails.
const MemQueueMax = 1 << 20

// MemQueue is an at-least-once queue shared by consumers of one process.
type MemQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	msgs    []*memMsg
	dedup   map[string]time.Time
	cursors map[string]int // consumer name → next index
}

type memMsg struct {
	subject, msgID string
	data           []byte
	// per consumer: delivery state
	state map[string]*memDelivery
}

type memDelivery struct {
	acked     bool
	due       time.Time // redeliver after
	delivered int
}

func (*MemQueue) inlineDep() {}

// NewMemQueue returns an empty queue.
func NewMemQueue() *MemQueue {
	q := &MemQueue{dedup: map[string]time.Time{}, cursors: map[string]int{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *MemQueue) Publish(_ context.Context, subject string, data []byte, msgID string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	if msgID != "" {
		if t, ok := q.dedup[msgID]; ok && now.Sub(t) < mq.DedupWindow {
			return nil
		}
		q.dedup[msgID] = now
	}
	if len(q.msgs) >= MemQueueMax {
		return errorString("live: queue full")
	}
	q.msgs = append(q.msgs, &memMsg{subject: subject, msgID: msgID, data: append([]byte(nil), data...), state: map[string]*memDelivery{}})
	q.cond.Broadcast()
	return nil
}

func (q *MemQueue) Consume(ctx context.Context, c mq.Consumer, fn func(QueueDelivery)) error {
	stop := context.AfterFunc(ctx, func() { q.mu.Lock(); q.cond.Broadcast(); q.mu.Unlock() })
	defer stop()
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
				q.mu.Lock()
				q.cond.Broadcast()
				q.mu.Unlock()
			}
		}
	}()
	q.mu.Lock()
	defer q.mu.Unlock()
	for ctx.Err() == nil {
		m, d := q.next(c)
		if m == nil {
			q.cond.Wait()
			continue
		}
		d.delivered++
		d.due = time.Now().Add(c.AckWait)
		qd := QueueDelivery{Subject: m.subject, Data: m.data, MsgID: m.msgID, NumDelivered: d.delivered}
		qd.Ack = func() error { q.mu.Lock(); d.acked = true; q.mu.Unlock(); return nil }
		qd.Nak = func(delay time.Duration) error {
			q.mu.Lock()
			d.due = time.Now().Add(delay)
			q.cond.Broadcast()
			q.mu.Unlock()
			return nil
		}
		q.mu.Unlock()
		fn(qd)
		q.mu.Lock()
	}
	return ctx.Err()
}

// next finds a message for consumer c: a new one, or one whose ack is overdue.
func (q *MemQueue) next(c mq.Consumer) (*memMsg, *memDelivery) {
	now := time.Now()
	// Skip the settled prefix for this consumer so a long-lived queue does not
	// cost a scan of its whole history per delivery.
	start := q.cursors[c.Name]
	for start < len(q.msgs) {
		m := q.msgs[start]
		d := m.state[c.Name]
		if mq.Match(c.Filter, m.subject) && (d == nil || (!d.acked && d.delivered < mq.MaxDeliver)) {
			break
		}
		start++
	}
	q.cursors[c.Name] = start
	for _, m := range q.msgs[start:] {
		if !mq.Match(c.Filter, m.subject) {
			continue
		}
		d := m.state[c.Name]
		if d == nil {
			d = &memDelivery{}
			m.state[c.Name] = d
			return m, d
		}
		if !d.acked && d.delivered < mq.MaxDeliver && now.After(d.due) {
			return m, d
		}
	}
	return nil, nil
}
