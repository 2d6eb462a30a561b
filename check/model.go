package check

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"
	"github.com/zzim/zzim/system/store"
)

// The porcupine model of one conversation: its state is the log, the
// ordered list of message ids (dense per partition, 1-based; 0 marks a
// free slot in a shared backing array). send(m) returns m's seq, its
// position, appending it if absent (sends are idempotent); sync(after,
// limit) returns exactly the messages after `after`, up to the limit.

// logState is immutable from the model's point of view. ids may share a
// backing array with other states: a slot past a state's length is only
// ever written while it is free (0), so two states with the same backing
// array and length have the same contents.
type logState struct {
	ids  []uint32
	hash uint64
}

// hashPrime mixes the log into a polynomial hash: equal logs, equal hashes.
const hashPrime = 1099511628211

func (s logState) appendID(id uint32) logState {
	n := len(s.ids)
	h := s.hash*hashPrime ^ uint64(id)
	if cap(s.ids) > n {
		full := s.ids[:n+1]
		if full[n] == id {
			return logState{full, h}
		}
		if full[n] == 0 {
			full[n] = id
			return logState{full, h}
		}
	}
	ids := make([]uint32, n+1, max(2*n, 8))
	copy(ids, s.ids)
	ids[n] = id
	return logState{ids, h}
}

func equalLog(a, b any) bool {
	x, y := a.(logState), b.(logState)
	if len(x.ids) != len(y.ids) || x.hash != y.hash {
		return false
	}
	if len(x.ids) == 0 || &x.ids[0] == &y.ids[0] {
		return true
	}
	for i := range x.ids {
		if x.ids[i] != y.ids[i] {
			return false
		}
	}
	return true
}

// linInput is an operation's input; linOutput its output.
type linInput struct {
	sync  bool
	id    uint32 // send: the message
	after uint64 // sync
	limit int    // sync, already clamped
}

type linOutput struct {
	seq  uint64   // send: the seq returned, 0 = any (outcome unknown)
	seqs []uint64 // sync: the page
	ids  []uint32
}

// fillerID is an anonymous message: one that occupied a position no
// operation of the history explains (see buildPartition).
const fillerID uint32 = 1

// convModel is the per-conversation model; names and fixed are indexed by id.
type convModel struct {
	conv  string
	names []string // id -> "sender/client_msg_id"
	// fixed[id] is the only position id can take when every operation
	// naming it agrees on one seq; 0 when unknown or disputed.
	fixed []uint64
}

func (m *convModel) step(state, input, output any) (bool, any) {
	s := state.(logState)
	in, out := input.(linInput), output.(linOutput)
	if in.sync {
		return m.stepSync(s, in, out), s
	}
	return m.stepSend(s, in.id, out.seq)
}

func (m *convModel) stepSend(s logState, id uint32, seq uint64) (bool, any) {
	n := uint64(len(s.ids))
	if id == fillerID {
		return seq == 0 || seq == n+1, s.appendID(id)
	}
	if seq > 0 && seq <= n {
		return s.ids[seq-1] == id, s
	}
	if m.contains(s, id) {
		return seq == 0, s
	}
	if seq > 0 && seq != n+1 {
		return false, s
	}
	return true, s.appendID(id)
}

// contains reports whether id is in the log: one probe when its position
// is fixed, a scan otherwise.
func (m *convModel) contains(s logState, id uint32) bool {
	if p := m.fixed[id]; p > 0 {
		return p <= uint64(len(s.ids)) && s.ids[p-1] == id
	}
	for _, x := range s.ids {
		if x == id {
			return true
		}
	}
	return false
}

func (m *convModel) stepSync(s logState, in linInput, out linOutput) bool {
	n := uint64(len(s.ids))
	want := 0
	if in.after < n {
		want = int(min(uint64(in.limit), n-in.after))
	}
	if len(out.ids) != want {
		return false
	}
	for i, id := range out.ids {
		seq := in.after + uint64(i) + 1
		if out.seqs[i] != seq || s.ids[seq-1] != id {
			return false
		}
	}
	return true
}

func (m *convModel) name(id uint32) string {
	if int(id) < len(m.names) {
		return m.names[id]
	}
	return fmt.Sprintf("#%d", id)
}

func (m *convModel) describeOperation(input, output any) string {
	in, out := input.(linInput), output.(linOutput)
	if !in.sync {
		if out.seq == 0 {
			return fmt.Sprintf("send(%s) -> ?", m.name(in.id))
		}
		return fmt.Sprintf("send(%s) -> %d", m.name(in.id), out.seq)
	}
	parts := make([]string, len(out.ids))
	for i, id := range out.ids {
		parts[i] = fmt.Sprintf("%d:%s", out.seqs[i], m.name(id))
	}
	return fmt.Sprintf("sync(after=%d, limit=%d) -> [%s]", in.after, in.limit, strings.Join(parts, " "))
}

// describeStateMax bounds the messages a state description lists.
const describeStateMax = 20

func (m *convModel) describeState(state any) string {
	s := state.(logState)
	start := max(0, len(s.ids)-describeStateMax)
	var b strings.Builder
	fmt.Fprintf(&b, "len=%d [", len(s.ids))
	if start > 0 {
		b.WriteString("... ")
	}
	for i := start; i < len(s.ids); i++ {
		if i > start {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%s", i+1, m.name(s.ids[i]))
	}
	b.WriteByte(']')
	return b.String()
}

// opMeta is attached to each porcupine operation: the history op index
// (-1 for synthetic operations) and a note for the visualization.
type opMeta struct {
	index int
	note  string
}

func describeMeta(info any) string {
	m, ok := info.(opMeta)
	if !ok {
		return ""
	}
	if m.index < 0 {
		return m.note
	}
	return fmt.Sprintf("history op %d %s", m.index, m.note)
}

func (m *convModel) porcupineModel() porcupine.Model {
	return porcupine.Model{
		Init:                      func() any { return logState{} },
		Step:                      m.step,
		Equal:                     equalLog,
		Hash:                      func(s any) uint64 { return s.(logState).hash },
		DescribeOperation:         m.describeOperation,
		DescribeState:             m.describeState,
		DescribeOperationMetadata: describeMeta,
	}
}

// clampLimit is the page limit the store applies to a sync's request.
func clampLimit(n int) int { return store.ClampSyncLimit(n) }
