package check

import (
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// TestLogStateSharing: states that share a backing array never see each
// other's appends.
func TestLogStateSharing(t *testing.T) {
	base := logState{}.appendID(5).appendID(6)
	a := base.appendID(7)
	b := base.appendID(8) // slot 2 holds 7: b must copy
	c := base.appendID(7) // same as a
	if got := a.ids; len(got) != 3 || got[2] != 7 {
		t.Fatalf("got a=%v, want [5 6 7]", got)
	}
	if got := b.ids; len(got) != 3 || got[2] != 8 {
		t.Fatalf("got b=%v, want [5 6 8]", got)
	}
	if !equalLog(a, c) || equalLog(a, b) {
		t.Fatalf("got equal(a,c)=%v equal(a,b)=%v, want true, false", equalLog(a, c), equalLog(a, b))
	}
	if a.hash != c.hash {
		t.Fatalf("got hashes %d and %d for equal logs, want equal", a.hash, c.hash)
	}
	if len(base.ids) != 2 {
		t.Fatalf("got base=%v, want it unchanged", base.ids)
	}
}

func TestModelStep(t *testing.T) {
	m := &convModel{names: []string{"", "?", "x", "y", "z"}, fixed: make([]uint64, 5)}
	s := logState{}
	tests := []struct {
		name string
		in   linInput
		out  linOutput
		ok   bool
		len  int
	}{
		{"send x gets 1", linInput{id: 2}, linOutput{seq: 1}, true, 1},
		{"resend x gets 1 again", linInput{id: 2}, linOutput{seq: 1}, true, 1},
		{"resend x cannot get 2", linInput{id: 2}, linOutput{seq: 2}, false, 1},
		{"send y gets 2", linInput{id: 3}, linOutput{seq: 2}, true, 2},
		{"send z cannot skip to 4", linInput{id: 4}, linOutput{seq: 4}, false, 2},
		{"unknown z appends", linInput{id: 4}, linOutput{}, true, 3},
		{"sync after 1 limit 1", linInput{sync: true, after: 1, limit: 1}, linOutput{seqs: []uint64{2}, ids: []uint32{3}}, true, 3},
		{"sync page too short", linInput{sync: true, after: 1, limit: 5}, linOutput{seqs: []uint64{2}, ids: []uint32{3}}, false, 3},
		{"sync names the wrong message", linInput{sync: true, after: 0, limit: 1}, linOutput{seqs: []uint64{1}, ids: []uint32{3}}, false, 3},
		{"sync past the end is empty", linInput{sync: true, after: 9, limit: 5}, linOutput{}, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, next := m.step(s, tt.in, tt.out)
			if ok != tt.ok {
				t.Fatalf("got ok=%v, want %v", ok, tt.ok)
			}
			if ok {
				s = next.(logState)
			}
			if len(s.ids) != tt.len {
				t.Fatalf("got log length %d, want %d", len(s.ids), tt.len)
			}
		})
	}
	if got := m.describeState(s); !strings.Contains(got, "3:z") {
		t.Errorf("got state %q, want it to name 3:z", got)
	}
}

// TestPorcupineUnknownIsUnknown: a partition porcupine cannot decide in
// time is reported unknown, never ok.
func TestPorcupineUnknownIsUnknown(t *testing.T) {
	slow := porcupine.Model{
		Init: func() any { return 0 },
		Step: func(state, input, output any) (bool, any) {
			time.Sleep(time.Millisecond)
			return true, state.(int) + 1
		},
	}
	var ops []porcupine.Operation
	for i := 0; i < 40; i++ {
		ops = append(ops, porcupine.Operation{ClientId: i, Call: 0, Return: 100, Input: i, Output: i})
	}
	if got := checkPartition(slow, ops, budget{each: 20 * time.Millisecond, deadline: time.Now().Add(time.Hour)}); got != ResultUnknown {
		t.Fatalf("per-partition bound: got %s, want %s", got, ResultUnknown)
	}
	if got := checkPartition(slow, ops, budget{each: time.Hour, deadline: time.Now().Add(20 * time.Millisecond)}); got != ResultUnknown {
		t.Fatalf("total bound: got %s, want %s", got, ResultUnknown)
	}
	if got := checkPartition(slow, ops, budget{each: time.Hour, deadline: time.Now().Add(-time.Second)}); got != ResultUnknown {
		t.Fatalf("past the deadline: got %s, want %s", got, ResultUnknown)
	}
}

// TestTimeoutIsPerConversation: the timeout bounds each conversation, not
// the whole check, so a history of many conversations whose total check
// takes longer than one timeout is still decided (before, every
// conversation not reached when the shared deadline passed was unknown:
// on a starved machine, 2,607 of 3,001).
func TestTimeoutIsPerConversation(t *testing.T) {
	h, dump := Generate(GenConfig{Seed: 1, Conversations: 400, Ops: 40000})
	start := time.Now()
	if _, err := Check(h, Options{Dump: dump, Checks: []string{CheckLinearizability}}); err != nil {
		t.Fatal(err)
	}
	whole := time.Since(start)
	// A per-conversation bound under the whole check's time, but far above
	// any one conversation's (a few ms; 100 ms leaves room for a
	// descheduled worker).
	each := max(whole/4, 100*time.Millisecond)
	v, err := Check(h, Options{Dump: dump, Checks: []string{CheckLinearizability}, Timeout: each})
	if err != nil {
		t.Fatal(err)
	}
	if v.Unknown || v.Counts.PorcupineOK != v.Counts.Conversations {
		t.Fatalf("timeout %v per conversation (the whole check took %v): got %s, want every conversation ok", each, whole, v.Line())
	}
	v, err = Check(h, Options{Dump: dump, Checks: []string{CheckLinearizability}, TotalTimeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if v.Pass || !v.Unknown {
		t.Fatalf("total timeout 1ns: got %s, want unknown", v.Line())
	}
}

// TestDefaultTimeoutScalesWithSize: without an explicit Timeout, a large
// conversation's bound is raised to DefaultTimeoutPerOp per operation (a
// search that is linear in its size must not turn unknown on a busy
// machine); an explicit Timeout is exact; the total deadline caps both.
func TestDefaultTimeoutScalesWithSize(t *testing.T) {
	far := time.Now().Add(time.Hour)
	def := budget{each: DefaultTimeout, perOp: DefaultTimeoutPerOp, deadline: far}
	if got := def.left(1000); got != DefaultTimeout {
		t.Fatalf("default bound for 1,000 ops: %v, want %v", got, DefaultTimeout)
	}
	if got, want := def.left(2_600_000), 2_600_000*DefaultTimeoutPerOp; got != want || got <= DefaultTimeout {
		t.Fatalf("default bound for 2.6M ops: %v, want %v (> %v)", got, want, DefaultTimeout)
	}
	explicit := budget{each: time.Second, deadline: far}
	if got := explicit.left(2_600_000); got != time.Second {
		t.Fatalf("explicit 1s bound for 2.6M ops: %v, want 1s", got)
	}
	soon := budget{each: DefaultTimeout, perOp: DefaultTimeoutPerOp, deadline: time.Now().Add(time.Second)}
	if got := soon.left(2_600_000); got > time.Second {
		t.Fatalf("bound %v past a deadline 1s away", got)
	}
}

func TestCheckTimeoutIsNotPass(t *testing.T) {
	h, dump := Generate(GenConfig{Seed: 1, Conversations: 5, Ops: 300})
	v, err := Check(h, Options{Dump: dump, Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if v.Pass || !v.Unknown || v.Word() != "unknown" || v.Counts.PorcupineUnknown == 0 {
		t.Fatalf("got %s (pass=%v unknown=%v), want unknown and not pass", v.Line(), v.Pass, v.Unknown)
	}
}

func TestCheckRejectsUnknownCheck(t *testing.T) {
	if _, err := Check(&History{}, Options{Checks: []string{"vibes"}}); err == nil {
		t.Fatal("got no error for an unknown check, want one")
	}
}
