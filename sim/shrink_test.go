package sim

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// sendKey is what the workload decides about one send: when, where, what.
type sendKey struct {
	call int64
	user string
	conv string
	body string
}

func sendsOf(res *Result) map[sendKey]bool {
	out := map[sendKey]bool{}
	for _, op := range res.History {
		if op.Kind == "send" {
			out[sendKey{op.Call, op.User, op.Conv, op.In.Body}] = true
		}
	}
	return out
}

// TestRemovingAUserShiftsNoOtherSend: with one user removed by
// Workload.KeepUsers, every other send happens at the same time, from the
// same user, in the same conversation, with the same body.
func TestRemovingAUserShiftsNoOtherSend(t *testing.T) {
	full := smallConfig(7)
	full.Workload.ChurnRate = 0.2
	full.Workload.OfflineMean = time.Second
	resFull, err := Run(full)
	if err != nil {
		t.Fatal(err)
	}
	const removed = "u3"
	cut := full
	for u := 0; u < full.Workload.Users; u++ {
		if "u"+itoa(u) != removed {
			cut.Workload.KeepUsers = append(cut.Workload.KeepUsers, u)
		}
	}
	resCut, err := Run(cut)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resCut.Counters.Clients, resFull.Counters.Clients-1; got != want {
		t.Errorf("got %d clients, want %d", got, want)
	}
	a, b := sendsOf(resFull), sendsOf(resCut)
	kept := 0
	for k := range a {
		conv, err := wire.ParseConvID(k.conv)
		if err != nil {
			t.Fatal(err)
		}
		involved := conv.Buyer == removed || conv.Seller == removed
		if involved {
			continue
		}
		kept++
		if !b[k] {
			t.Errorf("send %+v of the full run is missing with %s removed", k, removed)
		}
	}
	for k := range b {
		if !a[k] {
			t.Errorf("send %+v with %s removed is not in the full run", k, removed)
		}
		if k.user == removed {
			t.Errorf("removed user sent %+v", k)
		}
	}
	if kept == 0 {
		t.Fatalf("no sends compared, want some")
	}
	t.Logf("%d sends compared", kept)
}
