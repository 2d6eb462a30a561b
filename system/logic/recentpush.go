package logic

import (
	"time"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// Pushes lost with their entry. Entry reports a push it could not deliver
// with PushFailed, but an entry that died cannot: logic's Send to it only
// raises LinkDown. So logic remembers, per entry, the pushes it sent within
// the last recentPushWindow, and on LinkDown takes the offline path for
// them. Some of them may have been delivered already: the offline path is
// idempotent (queue msgID, notification dedupe) and clients dedupe by seq.
// The chaos harness found this gap: a killed entry's pushes never reached
// the offline path (clients still got the messages by sync).
const (
	// recentPushWindow matches entry's pushAckTimeout: a push older than
	// that was either acknowledged or reported by entry itself.
	recentPushWindow = 5 * time.Second
	// recentPushesMax bounds the pushes remembered per entry; the oldest
	// are forgotten first (those messages still arrive by sync).
	recentPushesMax = 4096
)

type recentPush struct {
	at   time.Time
	user string
	msg  *wire.ChatMessage
}

// recentPushes is a bounded FIFO of one entry's recent pushes:
// items[start:], oldest first. Dropping from the front only advances start
// (a full FIFO used to copy all recentPushesMax items on every push, 160 KB
// a push past about 800 pushes/s per entry); the dead prefix is reclaimed
// by one copy when it reaches half the slice, O(1) a push amortised.
type recentPushes struct {
	items []recentPush
	start int
}

// live is the remembered pushes, oldest first.
func (r *recentPushes) live() []recentPush { return r.items[r.start:] }

// dropOldest forgets the k oldest pushes.
func (r *recentPushes) dropOldest(k int) {
	clear(r.items[r.start : r.start+k]) // let the messages go
	r.start += k
}

func (r *recentPushes) add(p recentPush) {
	if len(r.live()) >= recentPushesMax {
		r.dropOldest(1)
	}
	if r.start > 0 && r.start >= len(r.items)/2 {
		n := copy(r.items, r.live())
		clear(r.items[n:])
		r.items, r.start = r.items[:n], 0
	}
	r.items = append(r.items, p)
}

// rememberPush records a push sent to entry.
func (l *Logic) rememberPush(env node.Env, entry node.Addr, user string, msg *wire.ChatMessage) {
	r := l.recent[entry]
	if r == nil {
		r = &recentPushes{}
		l.recent[entry] = r
	}
	now := env.Now()
	// Drop what has aged out, so the buffer holds only the window.
	live, i := r.live(), 0
	for i < len(live) && now.Sub(live[i].at) > recentPushWindow {
		i++
	}
	r.dropOldest(i)
	r.add(recentPush{at: now, user: user, msg: msg})
}

// onEntryDown sends every push of the window to the offline path.
func (l *Logic) onEntryDown(env node.Env, entry node.Addr) {
	r := l.recent[entry]
	if r == nil {
		return
	}
	delete(l.recent, entry)
	now := env.Now()
	for _, p := range r.live() {
		if now.Sub(p.at) <= recentPushWindow {
			l.stats.PushesLostWithEntry++
			l.offline(env, p.user, p.msg)
		}
	}
}
