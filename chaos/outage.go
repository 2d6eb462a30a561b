package chaos

import (
	"sort"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/store"
)

// lostShownMax bounds the lost messages a report lists (the count is whole).
const lostShownMax = 20

// Outage is what the clients saw of a run's faults.
type Outage struct {
	// FailedSends are sends that failed or never learnt their outcome.
	FailedSends int `json:"failed_sends"`
	// Duration runs from the call of the first failed send to the return of
	// the first send called after it that succeeded: how long clients could
	// not send. 0 when no send failed.
	Duration time.Duration `json:"duration"`
	// FirstFailure is on the history clock (ns); 0 when no send failed.
	FirstFailure int64 `json:"first_failure,omitempty"`
	// Recovered is true when a send succeeded after the first failure.
	Recovered bool `json:"recovered"`
	// AckGapMax is the longest time between two successive acknowledgements
	// (by return time) while the traffic ran: a stall that made sends slow
	// without failing them shows here.
	AckGapMax time.Duration `json:"ack_gap_max"`
}

func sendSucceeded(op *check.Op) bool {
	return op.Kind == check.KindSend && op.Returned() && !op.Unknown && op.Error == "" && op.Out.Seq > 0
}

// clientOutage measures Outage from the history's sends.
func clientOutage(ops []check.Op) Outage {
	var o Outage
	var sends []*check.Op
	for i := range ops {
		if ops[i].Kind == check.KindSend {
			sends = append(sends, &ops[i])
		}
	}
	sort.SliceStable(sends, func(i, j int) bool { return sends[i].Call < sends[j].Call })
	var first *check.Op
	for _, op := range sends {
		if !sendSucceeded(op) {
			o.FailedSends++
			if first == nil {
				first = op
			}
		}
	}
	var acks []int64
	for _, op := range sends {
		if sendSucceeded(op) {
			acks = append(acks, *op.Return)
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i] < acks[j] })
	for i := 1; i < len(acks); i++ {
		o.AckGapMax = max(o.AckGapMax, time.Duration(acks[i]-acks[i-1]))
	}
	if first == nil {
		return o
	}
	o.FirstFailure = first.Call
	var recovered int64
	for _, op := range sends {
		if op.Call > first.Call && sendSucceeded(op) && (recovered == 0 || *op.Return < recovered) {
			recovered = *op.Return
		}
	}
	if recovered > 0 {
		o.Recovered = true
		o.Duration = time.Duration(recovered - first.Call)
	}
	return o
}

// acksResumed sets each ended fault's AcksResumed: how long after its end
// (the database started again, the replica promoted, the node back) the
// first send was acknowledged. A fault's window is the scenario's choice;
// this is what zzim and the dependency add to it.
func acksResumed(records []*FaultRecord, ops []check.Op) {
	for _, r := range records {
		if r.End == 0 || r.Start == 0 {
			continue
		}
		var first int64
		for i := range ops {
			op := &ops[i]
			if sendSucceeded(op) && *op.Return >= r.End && (first == 0 || *op.Return < first) {
				first = *op.Return
			}
		}
		if first > 0 {
			r.AcksResumed = time.Duration(first - r.End)
		}
	}
}

// LostMessage is an acknowledged send the store does not hold.
type LostMessage struct {
	Conv        string `json:"conv"`
	Seq         uint64 `json:"seq"`
	Sender      string `json:"sender"`
	ClientMsgID string `json:"client_msg_id"`
	// Replaced names the client_msg_id the store holds at that seq instead
	// ("" when the seq is not stored at all).
	Replaced string `json:"replaced_by,omitempty"`
}

// lostAcknowledged lists acknowledged sends whose (conversation, seq) the
// dump does not hold with the same client_msg_id, sorted.
func lostAcknowledged(ops []check.Op, dump []store.Message) []LostMessage {
	type key struct {
		conv string
		seq  uint64
	}
	stored := make(map[key]string, len(dump))
	for _, m := range dump {
		stored[key{m.ConvID, m.Seq}] = m.ClientMsgID
	}
	var out []LostMessage
	for i := range ops {
		op := &ops[i]
		if !sendSucceeded(op) {
			continue
		}
		got, ok := stored[key{op.Conv, op.Out.Seq}]
		if ok && got == op.In.ClientMsgID {
			continue
		}
		out = append(out, LostMessage{Conv: op.Conv, Seq: op.Out.Seq, Sender: op.User, ClientMsgID: op.In.ClientMsgID, Replaced: got})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Conv != out[j].Conv {
			return out[i].Conv < out[j].Conv
		}
		return out[i].Seq < out[j].Seq
	})
	return out
}
