package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/zzim/zzim/system/store"
)

// # Store dump format
//
// The store's final contents, the ground truth the checkers compare a
// history against, are JSON lines with one store.Message each:
//
//	{"conv_id":"p:u3:u7:l1","seq":42,"sender_id":"u3","client_msg_id":"u3-1-17",
//	 "cseq":17,"body":"hi","created_at_ms":1000}
//
// The simulator and the chaos harness write it with WriteStoreDump after a
// run (store.Store.Dump). A nil dump means "no ground truth"; an empty,
// non-nil one means the store held nothing.

// dumpLine is store.Message with the dump's JSON field names.
type dumpLine struct {
	ConvID      string `json:"conv_id"`
	Seq         uint64 `json:"seq"`
	SenderID    string `json:"sender_id"`
	ClientMsgID string `json:"client_msg_id"`
	CSeq        uint64 `json:"cseq,omitempty"`
	Body        string `json:"body,omitempty"`
	CreatedAtMs int64  `json:"created_at_ms,omitempty"`
}

// ReadStoreDump parses a store dump. It never returns a nil slice without an
// error, so an empty file still counts as a dump of an empty store.
func ReadStoreDump(r io.Reader) ([]store.Message, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), HistoryLineSizeMax)
	msgs := []store.Message{}
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var d dumpLine
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("store dump line %d: %w", line, err)
		}
		if d.ConvID == "" || d.Seq == 0 {
			return nil, fmt.Errorf("store dump line %d: conv_id and seq are required", line)
		}
		msgs = append(msgs, store.Message{
			ConvID: d.ConvID, Seq: d.Seq, SenderID: d.SenderID, ClientMsgID: d.ClientMsgID,
			CSeq: d.CSeq, Body: d.Body, CreatedAtMs: d.CreatedAtMs,
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("store dump line %d: %w", line+1, err)
	}
	return msgs, nil
}

// WriteStoreDump writes msgs as JSON lines.
func WriteStoreDump(w io.Writer, msgs []store.Message) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, m := range msgs {
		d := dumpLine{
			ConvID: m.ConvID, Seq: m.Seq, SenderID: m.SenderID, ClientMsgID: m.ClientMsgID,
			CSeq: m.CSeq, Body: m.Body, CreatedAtMs: m.CreatedAtMs,
		}
		if err := enc.Encode(&d); err != nil {
			return fmt.Errorf("write store dump: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write store dump: %w", err)
	}
	return nil
}

// FaultWindow is a period during which a fault was active, on the
// history's clock (ns). Reports annotate it; the liveness check measures
// its bound from the end of the last window.
type FaultWindow struct {
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	What  string `json:"what"`
}

// ReadFaultWindows parses fault windows, one JSON object per line.
func ReadFaultWindows(r io.Reader) ([]FaultWindow, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), HistoryLineSizeMax)
	var out []FaultWindow
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var f FaultWindow
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("fault window line %d: %w", line, err)
		}
		if f.End < f.Start {
			return nil, fmt.Errorf("fault window line %d: ends (%d) before it starts (%d)", line, f.End, f.Start)
		}
		out = append(out, f)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fault window line %d: %w", line+1, err)
	}
	return out, nil
}

// WriteFaultWindows writes fault windows as JSON lines.
func WriteFaultWindows(w io.Writer, faults []FaultWindow) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for i := range faults {
		if err := enc.Encode(&faults[i]); err != nil {
			return fmt.Errorf("write fault windows: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write fault windows: %w", err)
	}
	return nil
}
