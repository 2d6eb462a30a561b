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

// recentPushes is a bounded FIFO of one entry's recent pushes.
type recentPushes struct {
	items []recentPush
}

func (r *recentPushes) add(p recentPush) {
	if len(r.items) >= recentPushesMax {
		copy(r.items, r.items[1:])
		r.items = r.items[:len(r.items)-1]
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
	i := 0
	for i < len(r.items) && now.Sub(r.items[i].at) > recentPushWindow {
		i++
	}
	r.items = r.items[i:]
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
	for _, p := range r.items {
		if now.Sub(p.at) <= recentPushWindow {
			l.stats.PushesLostWithEntry++
			l.offline(env, p.user, p.msg)
		}
	}
}
