package check_test

import (
	"slices"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
)

func generated(seed uint64) (*check.History, check.Options) {
	h, dump := check.Generate(check.GenConfig{
		Seed: seed, Conversations: 20, Users: 15, Ops: 3000,
		UnknownRate: 0.05, ErrorRate: 0.05, PushLossRate: 0.1, SyncLimit: 5,
	})
	return h, check.Options{Dump: dump, LivenessBound: 10 * time.Second, Timeout: 20 * time.Second}
}

func TestGeneratedIsLegalAndDeterministic(t *testing.T) {
	h, opts := generated(11)
	again, _ := generated(11)
	if !slices.EqualFunc(h.Ops, again.Ops, func(a, b check.Op) bool { return a.Call == b.Call && a.Kind == b.Kind && a.Client == b.Client }) {
		t.Fatal("got two different histories from one seed, want the same")
	}
	kinds := map[string]int{}
	unknown := 0
	for _, op := range h.Ops {
		kinds[op.Kind]++
		if op.Unknown {
			unknown++
		}
	}
	for _, k := range []string{check.KindSend, check.KindSync, check.KindRead, check.KindConvList, check.KindLogin, check.KindDeliver, check.KindFinal} {
		if kinds[k] == 0 {
			t.Errorf("got no %s ops, want some", k)
		}
	}
	if unknown == 0 {
		t.Error("got no sends with unknown outcome, want some")
	}
	v, err := check.Check(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Pass {
		t.Fatalf("got %s, want pass; %v", v.Line(), v.Violations[:min(3, len(v.Violations))])
	}
}

// TestMutantsCaught: each mutant of a legal history is caught by the check
// meant for it, naming the promise it breaks.
func TestMutantsCaught(t *testing.T) {
	h, opts := generated(5)
	for _, m := range check.Mutators {
		for seed := uint64(0); seed < 3; seed++ {
			t.Run(m.Name, func(t *testing.T) {
				mutant, err := m.Apply(h, seed)
				if err != nil {
					t.Fatal(err)
				}
				o := opts
				o.Checks = []string{m.Check}
				v, err := check.Check(mutant, o)
				if err != nil {
					t.Fatal(err)
				}
				if v.Pass || !slices.Contains(promises(v), m.Promise) {
					t.Fatalf("got %s promises %v, want promise %d caught by %s", v.Line(), promises(v), m.Promise, m.Check)
				}
			})
		}
	}
}

// TestSyncBeforeAckOnlyLinearizability: the stale-read mutant is invisible
// to the structural pass.
func TestSyncBeforeAckOnlyLinearizability(t *testing.T) {
	h, opts := generated(9)
	for seed := uint64(0); seed < 5; seed++ {
		mutant, err := check.SyncBeforeAck(h, seed)
		if err != nil {
			t.Fatal(err)
		}
		v, err := check.Check(mutant, opts)
		if err != nil {
			t.Fatal(err)
		}
		if v.Counts.StructuralViolations != 0 || v.Counts.PorcupineIllegal != 1 {
			t.Fatalf("seed %d: got %s, want no structural violation and one illegal partition", seed, v.Line())
		}
	}
}

func TestMutatorsDoNotChangeInput(t *testing.T) {
	h, _ := generated(3)
	before := len(h.Ops)
	sum := checksum(h)
	for _, m := range check.Mutators {
		if _, err := m.Apply(h, 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.Ops) != before || checksum(h) != sum {
		t.Fatal("got a changed history after mutating, want the input untouched")
	}
}

func checksum(h *check.History) uint64 {
	var s uint64
	for _, op := range h.Ops {
		s = s*31 + uint64(op.Call) + op.In.CSeq + op.Out.Seq + uint64(len(op.Out.Msgs))
		if op.Return != nil {
			s += uint64(*op.Return)
		}
	}
	return s
}
