package loadgen

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// Tracker bounds.
const (
	trackShards = 64
	// trackedMax bounds the sends whose times are kept at once; beyond it a
	// send's raw latency is not measured (counted as untracked).
	trackedMax = 1 << 21
)

// sent is what the generator knows of one message until it is both
// acknowledged and delivered.
type sent struct {
	intended  int64 // ns on the run's clock
	written   int64 // last time a SEND carrying it went on the wire; 0 unknown
	acked     bool
	delivered bool
}

// tracker maps client_msg_id → times, sharded so that client goroutines
// rarely contend. Sender and receiver are different client goroutines.
type tracker struct {
	shards [trackShards]struct {
		mu sync.Mutex
		m  map[string]*sent
	}
	cnt atomic.Int64
}

func newTracker() *tracker {
	t := &tracker{}
	for i := range t.shards {
		t.shards[i].m = map[string]*sent{}
	}
	return t
}

// shard: FNV-1a of id, inline (no hasher allocation per call).
func (t *tracker) shard(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % trackShards)
}

// with runs fn on id's entry, creating it when create is set (and there is
// room); fn returns whether the entry is finished and may be forgotten.
func (t *tracker) with(id string, create bool, fn func(s *sent) (done bool)) bool {
	sh := &t.shards[t.shard(id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m[id]
	if s == nil {
		if !create || !t.reserve() {
			return false
		}
		s = &sent{}
		sh.m[id] = s
	}
	if fn(s) {
		delete(sh.m, id)
		t.release()
	}
	return true
}

func (t *tracker) reserve() bool {
	if t.cnt.Add(1) > trackedMax {
		t.cnt.Add(-1)
		return false
	}
	return true
}

func (t *tracker) release() { t.cnt.Add(-1) }

// bodyPrefix starts every generated body; the intended send time (ns on
// the run's clock) follows, so the receiver measures from it even when the
// sender is another generator process.
const bodyPrefix = "zl:"

func makeBody(intended int64, size int) string {
	s := bodyPrefix + strconv.FormatInt(intended, 10)
	if pad := size - len(s) - 1; pad > 0 {
		s += ":" + strings.Repeat("x", pad)
	}
	return s
}

func parseBody(body string) (int64, bool) {
	rest, ok := strings.CutPrefix(body, bodyPrefix)
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	v, err := strconv.ParseInt(rest, 10, 64)
	return v, err == nil
}

// sendIDOfFrame is the client_msg_id of a SEND frame ("" otherwise).
func sendIDOfFrame(f wire.Frame) string {
	if f.Op != wire.OpSend {
		return ""
	}
	var s wire.Send
	if proto.Unmarshal(f.Body, &s) != nil {
		return ""
	}
	return s.ClientMsgId
}

// sendIDOfHTTP is the client_msg_id of a POST /v1/send ("" otherwise).
func sendIDOfHTTP(method, path string, body []byte) string {
	if method != "POST" || !strings.HasPrefix(path, "/v1/send") {
		return ""
	}
	var s struct {
		ClientMsgID string `json:"client_msg_id"`
	}
	if json.Unmarshal(body, &s) != nil {
		return ""
	}
	return s.ClientMsgID
}

func nanos(t time.Time) int64 { return t.UnixNano() }
