package httpentry

import (
	"testing"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// splitHarness: logic slots 0=login, 1=msg, 2=msg, 3=contact.
func splitHarness(t *testing.T) *harness {
	return newHarness(t, func(c *Config) {
		c.Topology = map[node.Role]int{node.RoleLogic: 4}
		c.LogicBusinesses = map[int][]logic.Business{
			0: {logic.BusinessLogin}, 1: {logic.BusinessMsg}, 2: {logic.BusinessMsg}, 3: {logic.BusinessContact},
		}
	})
}

func logicAt(slot int) node.Addr { return node.Addr{Role: node.RoleLogic, Slot: slot} }

// Each request reaches a slot serving its business; a hung msg slot moves
// the send to the other msg slot, never to the login or contact slot; the
// session's end is told to the login slot.
func TestSplitRouting(t *testing.T) {
	x := splitHarness(t)
	msgHome := 1 + route.Home("bob", 2)
	x.login("bob") // login() fails unless LOGIN was forwarded once
	cases := []struct {
		method, path string
		query        map[string]string
		body         string
		want         int
	}{
		{"POST", "/v1/send", nil, `{"conv_id":"p:alice:bob:l1","cseq":"1"}`, msgHome},
		{"GET", "/v1/sync", map[string]string{"conv_id": "p:alice:bob:l1"}, "", msgHome},
		{"GET", "/v1/convs", nil, "", 3},
		{"POST", "/v1/read", nil, `{"conv_id":"p:alice:bob:l1","seq":"1"}`, 3},
	}
	for _, c := range cases {
		_, eff := x.do("bob", c.method, c.path, c.query, c.body)
		if r := requests(eff); len(r) != 1 || r[0].to != logicAt(c.want) {
			t.Errorf("%s %s: got %v, want one request to %v", c.method, c.path, r, logicAt(c.want))
		}
	}
	// Every attempt times out: msg requests move to the other msg slot,
	// contact ones are retried at the only contact slot.
	other := 3 - msgHome
	var moved []forwardedReq
	for _, r := range requests(x.advance(LogicTimeoutDefault)) {
		want := logicAt(3)
		if op := wire.Op(r.req.Op); op == wire.OpSend || op == wire.OpSync {
			want = logicAt(other)
			moved = append(moved, r)
		}
		if r.to != want {
			t.Errorf("got %s resent to %v, want %v", wire.Op(r.req.Op), r.to, want)
		}
	}
	if len(moved) != 2 || wire.Op(moved[0].req.Op) != wire.OpSend || wire.Op(moved[1].req.Op) != wire.OpSync {
		t.Fatalf("got %v resent, want SEND then SYNC", moved)
	}

	eff := x.handle(node.Recv{From: logicAt(0), Msg: &wire.KickRequest{Target: &wire.PushTarget{UserId: "bob", Conn: moved[0].req.Origin.Conn, EntryIncarnation: 1}}})
	var closedTo []node.Addr
	for _, s := range nodetest.Of[nodetest.Sent](eff) {
		if _, ok := s.Msg.(*wire.SessionClosed); ok {
			closedTo = append(closedTo, s.To)
		}
	}
	if len(closedTo) != 1 || closedTo[0] != logicAt(0) {
		t.Errorf("got SessionClosed to %v, want [%v]", closedTo, logicAt(0))
	}
}
