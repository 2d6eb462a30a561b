package logic

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// recentPushes keeps exactly what a plain bounded FIFO keeps: the last
// recentPushesMax pushes, oldest first, minus those dropped from the front.
func TestRecentPushesIsABoundedFIFO(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	var r recentPushes
	var model []recentPush
	t0 := time.Unix(0, 0)
	for i := 0; i < 5*recentPushesMax; i++ {
		if rnd.IntN(50) == 0 && len(model) > 0 { // some age out
			k := rnd.IntN(len(model) + 1)
			r.dropOldest(k)
			model = model[k:]
		}
		p := recentPush{at: t0.Add(time.Duration(i)), user: "u", msg: &wire.ChatMessage{Seq: uint64(i)}}
		r.add(p)
		model = append(model, p)
		if len(model) > recentPushesMax {
			model = model[1:]
		}
		live := r.live()
		if len(live) != len(model) || (len(live) > 0 && (live[0].msg != model[0].msg || live[len(live)-1].msg != model[len(model)-1].msg)) {
			t.Fatalf("after %d adds: %d remembered, want %d (or the ends differ)", i+1, len(live), len(model))
		}
		if len(r.items) > 2*recentPushesMax+1 {
			t.Fatalf("after %d adds: backing slice holds %d items, want at most %d", i+1, len(r.items), 2*recentPushesMax+1)
		}
	}
	for i, p := range r.live() {
		if p.msg != model[i].msg {
			t.Fatalf("item %d: seq %d, want %d", i, p.msg.Seq, model[i].msg.Seq)
		}
	}
}
