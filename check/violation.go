package check

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/zzim/zzim/system/store"
)

// Promise numbers, as in DESIGN.md section 1 ("What zzim promises").
const (
	PromiseTotalOrder       = 1
	PromiseDurable          = 2
	PromiseIdempotent       = 3
	PromiseFIFO             = 4
	PromiseNoLoss           = 5
	PromiseNoDuplicates     = 6
	PromiseLinearizableSync = 7
	PromiseUnread           = 8
	PromiseLiveness         = 9
)

// PromiseName names a promise as DESIGN.md does.
func PromiseName(p int) string {
	switch p {
	case PromiseTotalOrder:
		return "total order per conversation"
	case PromiseDurable:
		return "durable before acknowledged"
	case PromiseIdempotent:
		return "idempotent sends"
	case PromiseFIFO:
		return "per-sender FIFO"
	case PromiseNoLoss:
		return "no loss"
	case PromiseNoDuplicates:
		return "no duplicates reach the application"
	case PromiseLinearizableSync:
		return "linearizable sync"
	case PromiseUnread:
		return "unread counts converge"
	case PromiseLiveness:
		return "liveness"
	}
	return fmt.Sprintf("promise %d", p)
}

// Violation is one broken promise, with the evidence.
type Violation struct {
	Promise int    `json:"promise"`
	Name    string `json:"name"`
	Conv    string `json:"conv,omitempty"`
	Message string `json:"message"`
	// Ops are the history lines involved, as JSON; store rows are
	// prefixed "store ".
	Ops []string `json:"ops,omitempty"`
	// Index holds the positions in History.Ops of the ops in Ops (store
	// rows and synthetic operations have none).
	Index []int `json:"index,omitempty"`
	// Visualization is porcupine's HTML file for a linearizability violation.
	Visualization string `json:"visualization,omitempty"`
}

// String renders the violation on one line, then its ops indented.
func (v Violation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "promise %d (%s)", v.Promise, v.Name)
	if v.Conv != "" {
		fmt.Fprintf(&b, " conv=%s", v.Conv)
	}
	fmt.Fprintf(&b, ": %s", v.Message)
	if v.Visualization != "" {
		fmt.Fprintf(&b, " [visualization %s]", v.Visualization)
	}
	for _, op := range v.Ops {
		fmt.Fprintf(&b, "\n    %s", op)
	}
	return b.String()
}

// opLine renders op i of h as its history line.
func opLine(h *History, i int) string {
	b, err := json.Marshal(&h.Ops[i])
	if err != nil {
		return fmt.Sprintf("<op %d: %v>", i, err)
	}
	return string(b)
}

// dumpLineString renders one store row as its dump line.
func dumpLineString(m store.Message) string {
	b, err := json.Marshal(dumpLine{
		ConvID: m.ConvID, Seq: m.Seq, SenderID: m.SenderID, ClientMsgID: m.ClientMsgID,
		CSeq: m.CSeq, Body: m.Body, CreatedAtMs: m.CreatedAtMs,
	})
	if err != nil {
		return fmt.Sprintf("store <%v>", err)
	}
	return "store " + string(b)
}
