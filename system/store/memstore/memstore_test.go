package memstore_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

// Two das instances share one memstore by holding the same value.
func TestConformanceShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		s := memstore.New(memstore.Options{})
		return s, s
	})
}

func TestNoDedupStoresResends(t *testing.T) {
	tests := []struct {
		name    string
		bugs    bugs.Set
		wantSeq uint64
		wantDup bool
		wantLen int
	}{
		{name: "guarded", wantSeq: 1, wantDup: true, wantLen: 1},
		{name: "no-dedup", bugs: bugs.Set{bugs.NoDedup: true}, wantSeq: 2, wantDup: false, wantLen: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := memstore.New(memstore.Options{Bugs: tt.bugs})
			req := store.AppendReq{ConvID: "p:a:b:l", SenderID: "a", PeerID: "b", ClientMsgID: "a-1", Body: "hi"}
			if _, err := s.Append(t.Context(), []store.AppendReq{req}); err != nil {
				t.Fatalf("append: got error %v, want nil", err)
			}
			res, err := s.Append(t.Context(), []store.AppendReq{req})
			if err != nil {
				t.Fatalf("resend: got error %v, want nil", err)
			}
			if res[0].Seq != tt.wantSeq || res[0].Duplicate != tt.wantDup {
				t.Errorf("resend: got seq %d duplicate %v, want seq %d duplicate %v", res[0].Seq, res[0].Duplicate, tt.wantSeq, tt.wantDup)
			}
			dump, err := s.Dump(t.Context())
			if err != nil {
				t.Fatalf("dump: got error %v, want nil", err)
			}
			if len(dump) != tt.wantLen {
				t.Errorf("dump: got %d messages, want %d", len(dump), tt.wantLen)
			}
		})
	}
}

func TestRowsMax(t *testing.T) {
	s := memstore.New(memstore.Options{RowsMax: 7})
	ctx := t.Context()
	req := func(i int) store.AppendReq {
		return store.AppendReq{ConvID: "p:a:b:l", SenderID: "a", PeerID: "b", ClientMsgID: fmt.Sprintf("a-%d", i)}
	}
	// First append: message + two rows = 3; second: 1 more; a third would need up to 3 free.
	for i := range 2 {
		if _, err := s.Append(ctx, []store.AppendReq{req(i)}); err != nil {
			t.Fatalf("append %d: got error %v, want nil", i, err)
		}
	}
	if _, err := s.Append(ctx, []store.AppendReq{req(2), req(3)}); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append past RowsMax: got error %v, want ErrUnavailable", err)
	}
	if dump, _ := s.Dump(ctx); len(dump) != 2 {
		t.Errorf("dump after a refused append: got %d messages, want 2", len(dump))
	}
}

// BenchmarkAppend measures appends of fresh messages spread over
// conversations as the simulator makes them; ns/msg is per message.
func BenchmarkAppend(b *testing.B) {
	const convCount = 1024
	convs := make([]store.AppendReq, convCount)
	for i := range convs {
		convs[i] = store.AppendReq{
			ConvID: fmt.Sprintf("p:u%d:v%d:l", i, i), SenderID: fmt.Sprintf("u%d", i), PeerID: fmt.Sprintf("v%d", i),
			ListingID: "l", Body: "hello there",
		}
	}
	// Message n goes to conversation n%convCount with client_msg_id ids[n/convCount]:
	// ids are made once each, outside the appends' cost but for 1 in convCount.
	var ids []string
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := memstore.New(memstore.Options{})
			ctx := b.Context()
			reqs := make([]store.AppendReq, batch)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for i := range reqs {
					round := n / convCount
					if round == len(ids) {
						ids = append(ids, fmt.Sprintf("m%d", round))
					}
					reqs[i] = convs[n%convCount]
					reqs[i].ClientMsgID, reqs[i].CreatedAtMs = ids[round], int64(n)
					n++
				}
				if _, err := s.Append(ctx, reqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
		})
	}
}
