package loadgen

import (
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/zzim/zzim/check"
)

// replayEvent is one send of a recorded trace, mapped onto the run.
type replayEvent struct {
	at     time.Duration
	conv   int // index into the run's conversations
	seller bool
}

// replaySendsMax bounds the sends read from one trace.
const replaySendsMax = 10_000_000

// loadReplay reads a history (check's JSON lines) and keeps each send's
// first call: its offset from the first send, divided by speed, is the
// intended time. Trace conversations map onto the run's in order of first
// appearance (modulo their number); a conversation's first trace sender
// plays the buyer, any other the seller.
func loadReplay(r *Replay, convs int) ([]replayEvent, error) {
	if convs == 0 {
		return nil, fmt.Errorf("replay: the profile has no conversations")
	}
	f, err := os.Open(r.File)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	h, err := check.ReadHistory(f)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", r.File, err)
	}
	type first struct {
		call       int64
		conv, user string
	}
	seen := map[string]first{} // client_msg_id → first send line
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Kind != check.KindSend || op.In.ClientMsgID == "" {
			continue
		}
		if f, ok := seen[op.In.ClientMsgID]; !ok || op.Call < f.call {
			seen[op.In.ClientMsgID] = first{call: op.Call, conv: op.Conv, user: op.User}
		}
		if len(seen) > replaySendsMax {
			return nil, fmt.Errorf("replay %s: more than %d sends", r.File, replaySendsMax)
		}
	}
	sends := make([]first, 0, len(seen))
	for _, f := range seen {
		sends = append(sends, f)
	}
	sort.Slice(sends, func(i, j int) bool {
		if sends[i].call != sends[j].call {
			return sends[i].call < sends[j].call
		}
		return sends[i].conv < sends[j].conv
	})
	speed := r.Speed
	if speed <= 0 {
		speed = 1
	}
	convIdx := map[string]int{}
	buyer := map[string]string{}
	out := make([]replayEvent, 0, len(sends))
	for _, s := range sends {
		k, ok := convIdx[s.conv]
		if !ok {
			k = len(convIdx) % convs
			convIdx[s.conv] = k
			buyer[s.conv] = s.user
		}
		at := time.Duration(float64(s.call-sends[0].call) / speed)
		out = append(out, replayEvent{at: at, conv: k, seller: s.user != buyer[s.conv]})
	}
	return out, nil
}
