package logic_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/mq"
)

// Contact upkeep is throttled: MessageSent goes out for the first message
// of a conversation, not for the ones that follow within
// ContactTouchInterval, and again once the interval has passed. A negative
// interval restores one per message.
func TestMessageSentThrottled(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		want     [3]int // publishes of sent:<conv>:1, :2, :3
	}{
		{"throttled", time.Second, [3]int{1, 0, 1}},
		{"every-message", -1, [3]int{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, noBugs, func(c *logic.Config) { c.ContactTouchInterval = tc.interval })
			alice := w.entry.Client("alice", "phone")
			send(alice, logic0, 1, 1)
			w.c.Stabilize()
			send(alice, logic0, 2, 2)
			w.c.Stabilize()
			w.c.Advance(2 * time.Second)
			send(alice, logic0, 3, 3)
			w.c.Stabilize()
			for i, want := range tc.want {
				wantPublished(t, w, mq.EventSent, fmt.Sprintf("sent:%s:%d", conv, i+1), want)
			}
			st := w.logics[0].Stats()
			if got := st.SentEvents + st.SentEventsSkipped; got != 3 {
				t.Errorf("sent events + skipped: got %d, want 3", got)
			}
		})
	}
}
