// Package check judges client histories against zzim's promises (DESIGN.md
// section 1): a structural pass in linear time and a linearizability check
// with porcupine, partitioned by conversation.
//
// # History format
//
// A history is JSON lines, one Op per line. Everything that records client
// behaviour (the simulator, the chaos harness, the load generator) writes
// this format through Recorder.
//
//	{"client":3,"session":1,"user":"u3","op":"send","conv":"p:u3:u7:l1",
//	 "call":1000,"return":2500,"in":{"client_msg_id":"u3-17","cseq":17,"body":"hi"},
//	 "out":{"seq":42}}
//
// Fields:
//   - client: the client's number, unique in the history.
//   - session: the client's login session (1, 2, ... as it reconnects).
//   - user: the client's user id.
//   - op: send | sync | conv_list | read | login | deliver | final.
//   - conv: the conversation (empty for login and conv_list).
//   - call, return: nanoseconds on one clock no fault skews (the simulator's
//     true time; in the chaos harness and load generator, the recording
//     process's monotonic clock). return is null when the operation never
//     completed.
//   - unknown: the outcome is unknown (a send never acknowledged). Such a
//     send may or may not have taken effect.
//   - error: a definite failure code (e.g. "OVERLOADED"); the op did not happen.
//
// Op kinds:
//   - send: in {client_msg_id, cseq, body}; out {seq}.
//   - sync: in {after_seq, limit}; out {msgs: [{seq, sender, client_msg_id}], last_seq}.
//   - read: in {seq}; out {read_seq}.
//   - conv_list: out {convs: [{conv, last_seq, read_seq, unread}]}.
//   - login: out {} (the session number is in session).
//   - deliver: the application received a message (after dedup and
//     reordering): out {msgs: [one msg]}, "via" push or sync in in.via.
//     call = return = the time it was handed to the application.
//   - final: what the client holds at the end, one line per conversation:
//     out {msgs: [...all held, in seq order], read_seq, unread}.
//
// # How the checkers read a history
//
//   - A message is (conv, sender, client_msg_id); one without a
//     client_msg_id (a system notice) is identified by its seq.
//   - A send is acknowledged when it returned without error, not unknown,
//     with a seq > 0. One with an error did not happen. Any other send
//     (return null, or unknown) may or may not have taken effect; the store
//     dump (dump.go) resolves it when given. A resend of a message may be a
//     new line with the same client_msg_id and cseq.
//   - A sync's page limit is read as the store applies it
//     (store.ClampSyncLimit); its last_seq is not modelled.
//   - Clients that record final lines must hold every conversation of their
//     user through its last_seq; they may forget a delivered prefix. A
//     client's own acknowledged messages are held without a deliver line.
//   - Liveness counts from the latest of the ack, the end of the last fault
//     window and the recipient's last successful login.
//
// The store dump and fault window formats are in dump.go.
package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Op kinds.
const (
	KindSend     = "send"
	KindSync     = "sync"
	KindRead     = "read"
	KindConvList = "conv_list"
	KindLogin    = "login"
	KindDeliver  = "deliver"
	KindFinal    = "final"
)

// HistoryLineSizeMax bounds one history line; a longer one is an error, not a hang.
const HistoryLineSizeMax = 16 << 20

// Op is one line of a history.
type Op struct {
	Client  int    `json:"client"`
	Session int    `json:"session"`
	User    string `json:"user"`
	Kind    string `json:"op"`
	Conv    string `json:"conv,omitempty"`
	Call    int64  `json:"call"`
	Return  *int64 `json:"return"`
	In      Input  `json:"in"`
	Out     Output `json:"out"`
	Unknown bool   `json:"unknown,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Input of an op; fields by kind (see the package comment).
type Input struct {
	ClientMsgID string `json:"client_msg_id,omitempty"`
	CSeq        uint64 `json:"cseq,omitempty"`
	Body        string `json:"body,omitempty"`
	AfterSeq    uint64 `json:"after_seq,omitempty"`
	Limit       int    `json:"limit,omitempty"`
	Seq         uint64 `json:"seq,omitempty"`
	Via         string `json:"via,omitempty"`
}

// Output of an op; fields by kind.
type Output struct {
	Seq     uint64     `json:"seq,omitempty"`
	Msgs    []MsgRef   `json:"msgs,omitempty"`
	LastSeq uint64     `json:"last_seq,omitempty"`
	ReadSeq uint64     `json:"read_seq,omitempty"`
	Unread  uint64     `json:"unread,omitempty"`
	Convs   []ConvView `json:"convs,omitempty"`
}

// MsgRef identifies a message as a client saw it.
type MsgRef struct {
	Seq         uint64 `json:"seq"`
	Sender      string `json:"sender"`
	ClientMsgID string `json:"client_msg_id"`
}

// ConvView is one conversation list row as a client saw it.
type ConvView struct {
	Conv    string `json:"conv"`
	LastSeq uint64 `json:"last_seq"`
	ReadSeq uint64 `json:"read_seq"`
	Unread  uint64 `json:"unread"`
}

// Returned reports whether the op completed.
func (o *Op) Returned() bool { return o.Return != nil }

// ReturnTime is the return time, or max int64 for ops that never returned.
func (o *Op) ReturnTime() int64 {
	if o.Return == nil {
		return 1<<63 - 1
	}
	return *o.Return
}

// History is a whole recorded run.
type History struct {
	Ops []Op
}

// ReadHistory parses JSON lines. Errors name the line.
func ReadHistory(r io.Reader) (*History, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), HistoryLineSizeMax)
	h := &History{}
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			return nil, fmt.Errorf("history line %d: %w", line, err)
		}
		if err := op.validate(); err != nil {
			return nil, fmt.Errorf("history line %d: %w", line, err)
		}
		h.Ops = append(h.Ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history line %d: %w", line+1, err)
	}
	return h, nil
}

func (o *Op) validate() error {
	switch o.Kind {
	case KindSend, KindSync, KindRead, KindDeliver, KindFinal:
		if o.Conv == "" {
			return fmt.Errorf("op %q without conv", o.Kind)
		}
	case KindConvList, KindLogin:
	default:
		return fmt.Errorf("unknown op %q", o.Kind)
	}
	if o.Return != nil && *o.Return < o.Call {
		return fmt.Errorf("op %q returns (%d) before its call (%d)", o.Kind, *o.Return, o.Call)
	}
	return nil
}

// WriteHistory writes ops as JSON lines.
func WriteHistory(w io.Writer, ops []Op) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range ops {
		if err := enc.Encode(&ops[i]); err != nil {
			return fmt.Errorf("write history: %w", err)
		}
	}
	return bw.Flush()
}

// Recorder collects ops from many clients. It is not safe for concurrent
// use; live recorders wrap it with a mutex (see SyncRecorder).
type Recorder struct {
	ops []Op
}

// Add appends one op.
func (r *Recorder) Add(op Op) { r.ops = append(r.ops, op) }

// Ops returns the ops sorted by call time, then client, for stable output.
func (r *Recorder) Ops() []Op {
	out := make([]Op, len(r.ops))
	copy(out, r.ops)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Call != out[j].Call {
			return out[i].Call < out[j].Call
		}
		return out[i].Client < out[j].Client
	})
	return out
}

// Len is the number of ops recorded.
func (r *Recorder) Len() int { return len(r.ops) }
