package check_test

import (
	"slices"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/check/checktest"
	"github.com/zzim/zzim/system/store"
)

const conv = "p:a:b:l1"

var (
	m1 = checktest.Msg(1, "a", "a-1")
	m2 = checktest.Msg(2, "a", "a-2")
	m3 = checktest.Msg(3, "b", "b-1")
)

// legal is a small history that keeps every promise: user a (client 1)
// sends two messages, user b (client 2) one; pushes, a sync, a read, and
// final holdings.
func legal() (*check.History, []store.Message) {
	h := checktest.New().
		Login(1, "a", 0, 1).
		Login(2, "b", 0, 1).
		Send(1, "a", conv, "a-1", 1, 10, 20, 1).
		Deliver(2, "b", conv, 25, "push", m1).
		Send(1, "a", conv, "a-2", 2, 30, 40, 2).
		Send(2, "b", conv, "b-1", 1, 35, 45, 3).
		Deliver(2, "b", conv, 46, "push", m2).
		Sync(1, "a", conv, 2, 10, 50, 55, 3, m3).
		Deliver(1, "a", conv, 56, "sync", m3).
		Read(2, "b", conv, 3, 70, 75, 3).
		Final(1, "a", conv, 100, 2, 1, m1, m2, m3).
		Final(2, "b", conv, 100, 3, 0, m1, m2, m3).
		History()
	dump := []store.Message{
		{ConvID: conv, Seq: 1, SenderID: "a", ClientMsgID: "a-1", CSeq: 1},
		{ConvID: conv, Seq: 2, SenderID: "a", ClientMsgID: "a-2", CSeq: 2},
		{ConvID: conv, Seq: 3, SenderID: "b", ClientMsgID: "b-1", CSeq: 1},
	}
	return h, dump
}

// opOf returns the first op of kind by client matching pred.
func opOf(t *testing.T, h *check.History, kind string, client int, pred func(*check.Op) bool) *check.Op {
	t.Helper()
	for i := range h.Ops {
		op := &h.Ops[i]
		if op.Kind == kind && op.Client == client && (pred == nil || pred(op)) {
			return op
		}
	}
	t.Fatalf("no %s op of client %d", kind, client)
	return nil
}

func cmid(id string) func(*check.Op) bool {
	return func(op *check.Op) bool { return op.In.ClientMsgID == id }
}

func promises(v *check.Verdict) []int {
	var out []int
	for _, vi := range v.Violations {
		if !slices.Contains(out, vi.Promise) {
			out = append(out, vi.Promise)
		}
	}
	slices.Sort(out)
	return out
}

func TestPromises(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(t *testing.T, h *check.History, dump *[]store.Message)
		checks []string
		bound  time.Duration
		want   int // the promise the edit breaks; 0 for the legal history
	}{
		{name: "legal", edit: func(*testing.T, *check.History, *[]store.Message) {}, bound: time.Second},
		{name: "1 one seq names two messages", want: check.PromiseTotalOrder, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindSync, 1, nil).Out.Msgs = []check.MsgRef{checktest.Msg(3, "b", "b-9")}
			}},
		{name: "1 store seqs with a gap", want: check.PromiseTotalOrder, checks: []string{check.CheckStructural},
			edit: func(_ *testing.T, _ *check.History, dump *[]store.Message) {
				(*dump)[2].Seq = 4
			}},
		{name: "1 sync page skips a seq", want: check.PromiseTotalOrder, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindSync, 1, nil).In.AfterSeq = 1
			}},
		{name: "2 acknowledged send not in the store", want: check.PromiseDurable, checks: []string{check.CheckStructural},
			edit: func(_ *testing.T, _ *check.History, dump *[]store.Message) {
				*dump = (*dump)[:2]
			}},
		{name: "3 a resend got a new seq", want: check.PromiseIdempotent, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				resend := *opOf(t, h, check.KindSend, 1, cmid("a-1"))
				resend.Call, resend.Out.Seq = 90, 4
				ret := int64(95)
				resend.Return = &ret
				h.Ops = append(h.Ops, resend)
			}},
		{name: "4 later cseq got the earlier seq", want: check.PromiseFIFO, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindSend, 1, cmid("a-1")).In.CSeq = 2
				opOf(t, h, check.KindSend, 1, cmid("a-2")).In.CSeq = 1
			}},
		{name: "4 one cseq for two messages", want: check.PromiseFIFO, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindSend, 1, cmid("a-2")).In.CSeq = 1
			}},
		{name: "5 recipient lost a message", want: check.PromiseNoLoss, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindFinal, 2, nil).Out.Msgs = []check.MsgRef{m1, m3}
			}},
		{name: "5 held but never delivered", want: check.PromiseNoLoss, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindDeliver, 1, nil).Kind = check.KindLogin
			}},
		{name: "5 recipient holds nothing", want: check.PromiseNoLoss, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindFinal, 2, nil).Conv = "p:b:c:l2"
			}},
		{name: "6 delivered twice", want: check.PromiseNoDuplicates, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				h.Ops = append(h.Ops, *opOf(t, h, check.KindDeliver, 2, nil))
			}},
		{name: "6 delivered out of order", want: check.PromiseNoDuplicates, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				d := opOf(t, h, check.KindDeliver, 2, nil)
				d.Call, d.Return = 47, &[]int64{47}[0]
			}},
		{name: "7 sync after an ack misses it", want: check.PromiseLinearizableSync,
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				s := opOf(t, h, check.KindSync, 1, nil)
				s.Call, s.Return = 41, &[]int64{42}[0] // after a-2's ack (40), before b-1's (45)
				s.In.AfterSeq, s.Out.Msgs = 1, nil
			}},
		{name: "8 unread does not converge", want: check.PromiseUnread, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				opOf(t, h, check.KindFinal, 1, nil).Out.Unread = 0
			}},
		{name: "8 sending did not advance read_seq", want: check.PromiseUnread, checks: []string{check.CheckStructural},
			edit: func(t *testing.T, h *check.History, _ *[]store.Message) {
				f := opOf(t, h, check.KindFinal, 1, nil)
				f.Out.ReadSeq, f.Out.Unread = 1, 2
			}},
		{name: "9 delivered after the bound", want: check.PromiseLiveness, checks: []string{check.CheckStructural}, bound: 3,
			edit: func(*testing.T, *check.History, *[]store.Message) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, dump := legal()
			tt.edit(t, h, &dump)
			v, err := check.Check(h, check.Options{Dump: dump, Checks: tt.checks, LivenessBound: tt.bound, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			got := promises(v)
			if tt.want == 0 {
				if !v.Pass || len(got) > 0 {
					t.Fatalf("got %s %v, want pass", v.Line(), v.Violations)
				}
				return
			}
			if v.Pass || !slices.Contains(got, tt.want) {
				t.Fatalf("got %s promises %v, want promise %d broken; %v", v.Line(), got, tt.want, v.Violations)
			}
			for _, vi := range v.Violations {
				if vi.Promise == tt.want && (vi.Name != check.PromiseName(tt.want) || len(vi.Ops) == 0 && tt.want != check.PromiseTotalOrder) {
					t.Errorf("got violation %v, want name %q and the ops involved", vi, check.PromiseName(tt.want))
				}
			}
		})
	}
}

// TestRealTimeOnly: a sync that starts after an ack and misses the message,
// with everything else consistent, passes the structural pass and fails
// linearizability.
func TestRealTimeOnly(t *testing.T) {
	h := checktest.New().
		Login(1, "a", 0, 1).Login(2, "b", 0, 1).
		Send(1, "a", conv, "a-1", 1, 10, 20, 1).
		Sync(2, "b", conv, 0, 10, 30, 40, 0).
		Sync(2, "b", conv, 0, 10, 50, 60, 1, m1).
		Deliver(2, "b", conv, 61, "sync", m1).
		Final(1, "a", conv, 100, 1, 0, m1).
		Final(2, "b", conv, 100, 0, 1, m1).
		History()
	dump := []store.Message{{ConvID: conv, Seq: 1, SenderID: "a", ClientMsgID: "a-1", CSeq: 1}}
	if vs := check.Structural(h, dump, check.StructuralOptions{LivenessBound: time.Second}); len(vs) != 0 {
		t.Fatalf("structural: got %v, want none", vs)
	}
	out := t.TempDir()
	v, err := check.Check(h, check.Options{Dump: dump, OutDir: out, Faults: []check.FaultWindow{{Start: 15, End: 35, What: "das-0 paused"}}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Pass || v.Counts.PorcupineIllegal != 1 || v.Counts.StructuralViolations != 0 {
		t.Fatalf("got %s, want one illegal partition and no structural violation", v.Line())
	}
	vi := v.Violations[0]
	if vi.Promise != check.PromiseLinearizableSync || vi.Conv != conv || vi.Visualization == "" {
		t.Fatalf("got %v, want promise 7 on %s with a visualization", vi, conv)
	}
	if !slices.Contains(vi.Index, 3) {
		t.Errorf("got ops %v, want the stale sync (op 3) among them", vi.Index)
	}
	assertFileContains(t, vi.Visualization, "das-0 paused")
}

func TestUnknownSends(t *testing.T) {
	// a-1's outcome is unknown; a-2 was acknowledged at seq 1. An unknown
	// send may take effect any time after its call, or never.
	base := func() *checktest.Builder {
		return checktest.New().
			Login(1, "a", 0, 1).Login(2, "b", 0, 1).
			SendUnknown(1, "a", conv, "a-1", 1, 10).
			Send(1, "a", conv, "a-2", 2, 200, 210, 1)
	}
	tests := []struct {
		name string
		h    *check.History
		dump []store.Message
		want string
	}{
		{"unresolved, never seen", base().Sync(2, "b", conv, 0, 10, 300, 310, 1, checktest.Msg(1, "a", "a-2")).History(), nil, "pass"},
		{"resolved by an observation", base().Sync(2, "b", conv, 0, 10, 300, 310, 2,
			checktest.Msg(1, "a", "a-2"), checktest.Msg(2, "a", "a-1")).History(), nil, "pass"},
		{"resolved by the store: absent", base().Sync(2, "b", conv, 0, 10, 300, 310, 1, checktest.Msg(1, "a", "a-2")).History(),
			[]store.Message{{ConvID: conv, Seq: 1, SenderID: "a", ClientMsgID: "a-2"}}, "pass"},
		{"resolved by the store: took seq 1, which the ack of a-2 names", base().
			Sync(2, "b", conv, 0, 10, 300, 310, 1, checktest.Msg(1, "a", "a-2")).History(),
			[]store.Message{{ConvID: conv, Seq: 1, SenderID: "a", ClientMsgID: "a-1"}, {ConvID: conv, Seq: 2, SenderID: "a", ClientMsgID: "a-2"}}, "fail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := check.Check(tt.h, check.Options{Dump: tt.dump, Checks: []string{check.CheckLinearizability}})
			if err != nil {
				t.Fatal(err)
			}
			if v.Word() != tt.want || v.Counts.UnknownSends != 1 {
				t.Fatalf("got %s %v, want %s with 1 unknown send", v.Line(), v.Violations, tt.want)
			}
		})
	}
}
