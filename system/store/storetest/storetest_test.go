package storetest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/store/storetest"
	"github.com/zzim/zzim/system/wire"
)

// brokenEnv names the broken store TestBrokenStore runs the suite against;
// it is set only in the child processes of TestSuiteCatchesBrokenStores.
const brokenEnv = "ZZIM_STORETEST_BROKEN"

// brokenStores each break one promise; the suite must fail in the subtests named.
var brokenStores = map[string]struct {
	newStore func() store.Store
	wantFail []string
}{
	"no-dedup": {
		newStore: func() store.Store { return memstore.New(memstore.Options{Bugs: bugs.Set{bugs.NoDedup: true}}) },
		wantFail: []string{"IdempotentResend", "IdempotentSameBatch", "TwoWriters"},
	},
	"non-atomic-batch": {
		newStore: func() store.Store { return nonAtomic{memstore.New(memstore.Options{})} },
		wantFail: []string{"BatchAtomic"},
	},
	"short-pages": {
		newStore: func() store.Store { return shortPages{memstore.New(memstore.Options{})} },
		wantFail: []string{"SyncPages"},
	},
	"no-broadcast-row": {
		newStore: func() store.Store { return noBroadcast{memstore.New(memstore.Options{})} },
		wantFail: []string{"Broadcast"},
	},
}

// nonAtomic applies a batch one request at a time and stops at the first error.
type nonAtomic struct{ store.Store }

func (s nonAtomic) Append(ctx context.Context, reqs []store.AppendReq) ([]store.AppendResult, error) {
	var out []store.AppendResult
	for _, r := range reqs {
		res, err := s.Store.Append(ctx, []store.AppendReq{r})
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
	}
	return out, nil
}

// shortPages drops the last message of every full page.
type shortPages struct{ store.Store }

func (s shortPages) Sync(ctx context.Context, req store.SyncReq) (store.SyncResult, error) {
	res, err := s.Store.Sync(ctx, req)
	if len(res.Messages) == store.ClampSyncLimit(req.Limit) {
		res.Messages = res.Messages[:len(res.Messages)-1]
	}
	return res, err
}

// noBroadcast leaves the broadcast conversation out of lists.
type noBroadcast struct{ store.Store }

func (s noBroadcast) ConvList(ctx context.Context, req store.ConvListReq) ([]store.ConvSummary, error) {
	list, err := s.Store.ConvList(ctx, req)
	out := list[:0]
	for _, c := range list {
		if c.ConvID != wire.BroadcastConvID {
			out = append(out, c)
		}
	}
	return out, err
}

func TestBrokenStore(t *testing.T) {
	name := os.Getenv(brokenEnv)
	if name == "" {
		t.Skip("runs only as a child of TestSuiteCatchesBrokenStores")
	}
	broken := brokenStores[name]
	storetest.Run(t, func(t *testing.T) store.Store { return broken.newStore() })
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child test process per broken store")
	}
	for name, broken := range brokenStores {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStore$", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("suite against %s: got pass, want failure", name)
			}
			for _, sub := range broken.wantFail {
				if want := "--- FAIL: TestBrokenStore/" + sub + " "; !strings.Contains(string(out), want) {
					t.Errorf("suite against %s: got no %q in output:\n%s", name, want, out)
				}
			}
		})
	}
}
