package check_test

import (
	"slices"
	"testing"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/check/checktest"
)

// TestViolationsMaxPerPromise: the report bound applies per promise, so a
// flood of one promise's violations cannot hide another broken promise.
func TestViolationsMaxPerPromise(t *testing.T) {
	h, dump := legal()
	// Promise 1: a sync names seq 3 as another message (found first).
	opOf(t, h, check.KindSync, 1, nil).Out.Msgs = []check.MsgRef{checktest.Msg(3, "b", "b-9")}
	// Promise 2: an acknowledged send is missing from the store.
	dump = dump[:2]
	got := check.Structural(h, dump, check.StructuralOptions{ViolationsMax: 1})
	var named []int
	for _, v := range got {
		if !slices.Contains(named, v.Promise) {
			named = append(named, v.Promise)
		}
	}
	for _, want := range []int{check.PromiseTotalOrder, check.PromiseDurable} {
		if !slices.Contains(named, want) {
			t.Errorf("promises named %v, want %d among them", named, want)
		}
	}
	per := map[int]int{}
	for _, v := range got {
		if per[v.Promise]++; per[v.Promise] > 1 {
			t.Errorf("promise %d listed %d times, want at most 1 (ViolationsMax)", v.Promise, per[v.Promise])
		}
	}
}
