package loadgen

import (
	"encoding/json"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/zzim/zzim/system/wire"
)

// Tracking bounds.
const (
	// trackedMax bounds the sends whose times are kept at once; beyond it a
	// send's raw latency is not measured (counted as untracked).
	trackedMax = 1 << 21
	// deliverHorizon: a send acknowledged this long ago and not delivered
	// is forgotten once it is the sender's oldest: a later delivery is
	// still measured from its intended time (the body carries it), only
	// not from its last write.
	deliverHorizon = time.Minute
	// logCompactMin: a send log moves its live entries to the front once
	// this many (and half of it) are forgotten.
	logCompactMin = 64
	// earlyMax bounds one sender's deliveries seen before their send was
	// added; when full the oldest is forgotten (its raw latency unmeasured).
	earlyMax = 256
)

// early is a delivery that arrived before its send was in the log: the
// sender's goroutine adds a send after the client's Send returns, and the
// frame is on the wire by then, so on a loaded machine a receiver's
// goroutine can take the PUSH first (TestFlashSaleSpikeVerify once counted
// 2,198 raw deliveries of 2,199).
type early struct {
	id uint64
	at int64
}

// sent is what the generator knows of one message until it is both
// acknowledged and delivered. It holds no pointer (the id is kept as a
// seeded 64-bit hash): a run that keeps many sends gives the collector
// nothing to scan. Two ids of one sender colliding (about 1 in 10^13 for
// a thousand kept sends) would swap two raw latencies.
type sent struct {
	id        uint64
	intended  int64 // ns on the run's clock; 0 unknown
	written   int64 // last time a SEND carrying it went on the wire; 0 unknown
	acked     int64 // when acknowledged; 0 not yet
	delivered bool
	failed    bool
}

func (s *sent) finished() bool { return s.failed || s.acked != 0 && s.delivered }

// sendLog is one sender's sends the generator still expects an ack or a
// delivery for, in send order. The sender's client goroutine adds, notes
// writes and acks; receivers' goroutines note deliveries. Acks and
// deliveries come nearly in send order, so each lookup starts at a hint
// (after the last one found) and nearly always hits at once, among entries
// recently touched: no hashing, and no cache miss per send however many a
// run keeps (a sink that never delivers keeps every send).
type sendLog struct {
	mu    sync.Mutex
	q     []sent // q[head:] are live
	head  int
	ackAt int // where the next ack most likely is
	dlvAt int // where the next delivery most likely is
	early []early
	cnt   *atomic.Int64
	seed  maphash.Seed // one per run: every sender's log hashes alike
}

// init shares the run's count of kept sends and its hash seed.
func (l *sendLog) init(cnt *atomic.Int64, seed maphash.Seed) {
	l.cnt, l.seed = cnt, seed
}

// find returns the index of the send with id hash h in q[head:], or -1:
// from hint on, then back from it.
func (l *sendLog) find(h uint64, hint int) int {
	hint = max(hint, l.head)
	for i := hint; i < len(l.q); i++ {
		if l.q[i].id == h {
			return i
		}
	}
	for i := min(hint, len(l.q)) - 1; i >= l.head; i-- {
		if l.q[i].id == h {
			return i
		}
	}
	return -1
}

// add appends a send with its intended time, and its written time unless
// 0. ok is false when the run keeps trackedMax sends already. deliveredAt
// is when the send was delivered if that happened before add (0 if not):
// the caller records its raw latency, which deliver could not.
func (l *sendLog) add(id string, intended, written int64) (ok bool, deliveredAt int64) {
	h := maphash.String(l.seed, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.early {
		if e.id == h {
			deliveredAt = e.at
			l.early[i] = l.early[len(l.early)-1]
			l.early = l.early[:len(l.early)-1]
			break
		}
	}
	if l.cnt.Add(1) > trackedMax {
		l.cnt.Add(-1)
		return false, deliveredAt
	}
	l.q = append(l.q, sent{id: h, intended: intended, written: written, delivered: deliveredAt != 0})
	return true, deliveredAt
}

// wrote notes that a SEND carrying id went on the wire again at now (a
// resend, or a send the window held). False when id is not kept.
func (l *sendLog) wrote(id []byte, now int64) bool {
	h := maphash.Bytes(l.seed, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.find(h, l.ackAt)
	if i < 0 {
		return false
	}
	l.q[i].written = now
	return true
}

// ack marks id acknowledged at now and returns its times (zero when
// unknown).
func (l *sendLog) ack(id string, now int64) (intended, written int64) {
	h := maphash.String(l.seed, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.find(h, l.ackAt)
	if i < 0 {
		return 0, 0
	}
	s := &l.q[i]
	s.acked = now
	intended, written = s.intended, s.written
	l.ackAt = i + 1
	l.trim(now)
	return intended, written
}

// deliver marks id delivered and returns when it was last written (zero
// when unknown).
func (l *sendLog) deliver(id string, now int64) (written int64) {
	h := maphash.String(l.seed, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.find(h, l.dlvAt)
	if i < 0 {
		// Not added yet (or already forgotten: then the entry ages out).
		if len(l.early) >= earlyMax {
			l.early = append(l.early[:0], l.early[1:]...)
		}
		l.early = append(l.early, early{h, now})
		return 0
	}
	s := &l.q[i]
	s.delivered = true
	written = s.written
	l.dlvAt = i + 1
	l.trim(now)
	return written
}

// fail forgets id (its send failed definitively).
func (l *sendLog) fail(id string, now int64) {
	h := maphash.String(l.seed, id)
	l.mu.Lock()
	defer l.mu.Unlock()
	if i := l.find(h, l.ackAt); i >= 0 {
		l.q[i].failed = true
		l.trim(now)
	}
}

// trim forgets the finished sends at the front, and a front send
// acknowledged over deliverHorizon ago; it compacts q now and then.
func (l *sendLog) trim(now int64) {
	for l.head < len(l.q) {
		s := &l.q[l.head]
		if !s.finished() && (s.acked == 0 || now-s.acked < int64(deliverHorizon)) {
			break
		}
		*s = sent{}
		l.head++
		l.cnt.Add(-1)
	}
	if l.head >= logCompactMin && l.head >= len(l.q)/2 {
		n := copy(l.q, l.q[l.head:])
		clear(l.q[n:])
		l.q = l.q[:n]
		l.ackAt = max(l.ackAt-l.head, 0)
		l.dlvAt = max(l.dlvAt-l.head, 0)
		l.head = 0
	}
}

// bodyPrefix starts every generated body; the intended send time (ns on
// the run's clock) follows, so the receiver measures from it even when the
// sender is another generator process.
const bodyPrefix = "zl:"

func makeBody(intended int64, size int) string {
	var b strings.Builder
	b.Grow(max(size, len(bodyPrefix)+20))
	b.WriteString(bodyPrefix)
	var num [20]byte
	b.Write(strconv.AppendInt(num[:0], intended, 10))
	if pad := size - b.Len() - 1; pad > 0 {
		b.WriteByte(':')
		for range pad {
			b.WriteByte('x')
		}
	}
	return b.String()
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

// sendIDOfFrame is the client_msg_id of a SEND frame (nil otherwise). It
// reads that one field (no message decoded) and aliases the frame's body.
func sendIDOfFrame(f wire.Frame) []byte {
	if f.Op != wire.OpSend {
		return nil
	}
	b := f.Body
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == sendClientMsgIDField && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil
			}
			return v
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return nil
		}
		b = b[n:]
	}
	return nil
}

// sendClientMsgIDField is wire.Send's client_msg_id field number.
var sendClientMsgIDField = (&wire.Send{}).ProtoReflect().Descriptor().Fields().ByName("client_msg_id").Number()

// sendIDOfHTTP is the client_msg_id of a POST /v1/send (nil otherwise).
func sendIDOfHTTP(method, path string, body []byte) []byte {
	if method != "POST" || !strings.HasPrefix(path, "/v1/send") {
		return nil
	}
	var s struct {
		ClientMsgID string `json:"client_msg_id"`
	}
	if json.Unmarshal(body, &s) != nil {
		return nil
	}
	return []byte(s.ClientMsgID)
}

func nanos(t time.Time) int64 { return t.UnixNano() }
