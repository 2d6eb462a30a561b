package entry

import (
	"testing"

	"github.com/zzim/zzim/system/wire"
)

// An idle session keeps nothing of the requests it had answered: an entry
// holds sessions by the ten thousand.
func TestIdleSessionRetainsNoAnsweredRequest(t *testing.T) {
	h := newHarness(t, nil)
	login := requests(h.login(1, "alice"))[0]
	h.respond(login.to.Slot, login.req, wire.OpLogin, &wire.LoginAck{}, false)
	for reqID := uint32(2); reqID < 6; reqID++ {
		// Two in flight, answered out of order.
		a := requests(h.frame(1, wire.OpHeartbeat, reqID, &wire.Heartbeat{}))[0]
		b := requests(h.frame(1, wire.OpHeartbeat, reqID+100, &wire.Heartbeat{}))[0]
		h.respond(a.to.Slot, a.req, wire.OpHeartbeat, &wire.Heartbeat{}, false)
		h.respond(b.to.Slot, b.req, wire.OpHeartbeat, &wire.Heartbeat{}, false)
	}
	c := h.e.conns[1]
	if c == nil || !c.authed {
		t.Fatal("alice's session is gone")
	}
	for _, g := range c.lane.groups {
		if len(g.pending) != 0 {
			t.Fatalf("pending: got %d, want none", len(g.pending))
		}
		for i, p := range g.pending[:cap(g.pending)] {
			if p != nil {
				t.Errorf("pending's backing array slot %d still holds answered request %d", i, p.Req.ReqId)
			}
		}
	}
}
