package entry

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/node/nodetest"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/wire"
)

// splitHarness is entry with logic slots split by business, as
// `zzim up --logic-businesses 0=login,1=msg+...` configures them.
func splitHarness(t *testing.T, slots int, split map[int][]logic.Business) *harness {
	return newHarness(t, func(c *Config) {
		c.Topology = map[node.Role]int{node.RoleLogic: slots}
		c.LogicBusinesses = split
	})
}

// userWithGroupHome finds a user whose home within a group of n slots is index i.
func userWithGroupHome(n, i int) string {
	for k := 0; ; k++ {
		u := fmt.Sprintf("user%d", k)
		if route.Home(u, n) == i {
			return u
		}
	}
}

// loginAnswered logs user in on conn and answers the LOGIN from wherever it went.
func (h *harness) loginAnswered(conn node.ConnID, user string) node.Addr {
	h.t.Helper()
	r := requests(h.login(conn, user))[0]
	h.respond(r.to.Slot, r.req, wire.OpLoginAck, &wire.LoginAck{UserId: user}, false)
	return r.to
}

// Entry sorts ops into businesses exactly as logic does: a logic slot
// serving only business b answers UNAVAILABLE to an op exactly when
// BusinessOf(op) is not b.
func TestBusinessOfMatchesLogic(t *testing.T) {
	ops := []wire.Op{wire.OpLogin, wire.OpLogout, wire.OpHeartbeat, wire.OpSend, wire.OpSync, wire.OpConvList, wire.OpRead}
	for _, b := range businesses {
		for _, op := range ops {
			t.Run(fmt.Sprintf("%s/%s", b, op), func(t *testing.T) {
				l := logic.New(logic.Config{Topology: map[node.Role]int{node.RoleLogic: 1, node.RoleDas: 1, node.RoleEntry: 1},
					Businesses: []logic.Business{b}})
				env := nodetest.New(node.Addr{Role: node.RoleLogic, Slot: 0})
				l.Start(env)
				env.Take()
				l.Handle(env, node.Recv{From: node.Addr{Role: node.RoleEntry}, Msg: &wire.ClientRequest{
					Origin: &wire.Origin{Entry: "entry-0", Conn: 1}, UserId: "alice", Op: uint32(op), ReqId: 7,
				}})
				refused := false
				for _, r := range sentOf[*wire.ClientResponse](env.Take()) {
					if wire.Op(r.Op) == wire.OpError && slices.Contains(wireErrors(t, r.Body), wire.ErrorCode_UNAVAILABLE) {
						refused = true
					}
				}
				if want := BusinessOf(op) != b; refused != want {
					t.Errorf("got logic serving %s refusing %s: %v, want %v (entry says %s)", b, op, refused, want, BusinessOf(op))
				}
			})
		}
	}
}

func wireErrors(t *testing.T, body []byte) []wire.ErrorCode {
	t.Helper()
	return []wire.ErrorCode{errorCode(t, wire.Frame{Op: wire.OpError, Body: body})}
}

// With 0=login, 1=msg, 2=contact every op reaches the slot serving it,
// whatever the user's hash says; SessionClosed goes to the login slot.
func TestSplitRoutesByBusiness(t *testing.T) {
	split := map[int][]logic.Business{0: {logic.BusinessLogin}, 1: {logic.BusinessMsg}, 2: {logic.BusinessContact}}
	for _, user := range []string{userWithHome(0), userWithHome(1), userWithHome(2)} {
		t.Run(user, func(t *testing.T) {
			h := splitHarness(t, 3, split)
			if got := h.loginAnswered(1, user); got != logicAt(0) {
				t.Fatalf("got LOGIN to %v, want %v", got, logicAt(0))
			}
			cases := []struct {
				op   wire.Op
				want int
			}{
				{wire.OpSend, 1}, {wire.OpSync, 1}, {wire.OpConvList, 2}, {wire.OpRead, 2}, {wire.OpHeartbeat, 0},
			}
			for i, c := range cases {
				r := requests(h.frame(1, c.op, uint32(10+i), nil))
				if len(r) != 1 || r[0].to != logicAt(c.want) {
					t.Errorf("got %s forwarded to %v, want only %v", c.op, targets(r), logicAt(c.want))
				}
			}
			eff := h.frame(1, wire.OpLogout, 20, nil)
			if r := requests(eff); len(r) != 1 || r[0].to != logicAt(0) {
				t.Errorf("got LOGOUT to %v, want %v", targets(r), logicAt(0))
			}
			var closedTo []node.Addr
			for _, s := range nodetest.Of[nodetest.Sent](eff) {
				if _, ok := s.Msg.(*wire.SessionClosed); ok {
					closedTo = append(closedTo, s.To)
				}
			}
			if fmt.Sprint(closedTo) != fmt.Sprint([]node.Addr{logicAt(0)}) {
				t.Errorf("got SessionClosed to %v, want [%v]", closedTo, logicAt(0))
			}
		})
	}
}

// Home within a group is Hash(user) % len(group): with the login-storm
// split (login, login, msg, contact) users spread over both login slots.
func TestSplitHomeWithinGroup(t *testing.T) {
	split := map[int][]logic.Business{0: {logic.BusinessLogin}, 1: {logic.BusinessLogin}, 2: {logic.BusinessMsg}, 3: {logic.BusinessContact}}
	for i := 0; i < 2; i++ {
		user := userWithGroupHome(2, i)
		h := splitHarness(t, 4, split)
		if got := h.loginAnswered(1, user); got != logicAt(i) {
			t.Errorf("user %s: got LOGIN to %v, want %v", user, got, logicAt(i))
		}
		if r := requests(h.frame(1, wire.OpSend, 2, nil)); len(r) != 1 || r[0].to != logicAt(2) {
			t.Errorf("user %s: got SEND to %v, want %v", user, targets(r), logicAt(2))
		}
	}
}

// msgSplit is 0=login, 1=msg, 2=msg, 3=contact: a group of two to fail over in.
var msgSplit = map[int][]logic.Business{0: {logic.BusinessLogin}, 1: {logic.BusinessMsg}, 2: {logic.BusinessMsg}, 3: {logic.BusinessContact}}

// A hung msg slot moves only the msg group, to the other msg slot, with
// SEND and SYNC resent in order (per-sender FIFO); a new SEND follows them.
// The contact group's pending request stays where it is. When the view
// shows the home msg slot alive again, the msg group fails back, resending
// in order, and the contact group still does not move.
func TestSplitFailoverAndFailbackWithinGroup(t *testing.T) {
	user := userWithGroupHome(2, 0) // msg home: slot 1
	h := splitHarness(t, 4, msgSplit)
	h.loginAnswered(1, user)
	var first []forwardedReq
	first = append(first, requests(h.frame(1, wire.OpSend, 2, &wire.Send{Cseq: 1}))...)
	first = append(first, requests(h.frame(1, wire.OpSync, 3, &wire.Sync{}))...)
	first = append(first, requests(h.frame(1, wire.OpSend, 4, &wire.Send{Cseq: 2}))...)
	if got := targets(first); len(got) != 1 || !got[logicAt(1)] {
		t.Fatalf("got msg targets %v, want only home %v", got, logicAt(1))
	}
	h.advance(LogicTimeoutDefault / 2)
	if r := requests(h.frame(1, wire.OpConvList, 5, &wire.ConvList{})); len(r) != 1 || r[0].to != logicAt(3) {
		t.Fatalf("got CONV_LIST to %v, want %v", targets(r), logicAt(3))
	}

	moved := requests(h.advance(LogicTimeoutDefault / 2)) // slot 1 hangs
	if got, want := fmt.Sprint(reqIDs(moved)), "[2 3 4]"; got != want {
		t.Fatalf("got resent reqIDs %s, want %s in order", got, want)
	}
	if got := targets(moved); len(got) != 1 || !got[logicAt(2)] {
		t.Fatalf("got failover targets %v, want only the other msg slot %v", got, logicAt(2))
	}
	if r := requests(h.frame(1, wire.OpSend, 6, &wire.Send{Cseq: 3})); len(r) != 1 || r[0].to != logicAt(2) {
		t.Fatalf("got SEND 6 to %v, want %v after the resent ones", targets(r), logicAt(2))
	}

	back := requests(h.handle(node.View{Role: node.RoleLogic, Alive: []bool{true, true, true, true}}))
	if got, want := fmt.Sprint(reqIDs(back)), "[2 3 4 6]"; got != want {
		t.Fatalf("got fail-back reqIDs %s, want %s in order (no CONV_LIST: its group did not move)", got, want)
	}
	if got := targets(back); len(got) != 1 || !got[logicAt(1)] {
		t.Fatalf("got fail-back targets %v, want only home %v", got, logicAt(1))
	}
	s := h.e.Stats()
	if s.Failovers != 1 || s.Failbacks != 1 || s.Resends != 7 {
		t.Errorf("got failovers %d failbacks %d resends %d, want 1 1 7", s.Failovers, s.Failbacks, s.Resends)
	}
}

// With every msg slot believed dead, attempts rotate within the msg group
// and never reach a slot that does not serve msg.
func TestSplitRotatesWithinDeadGroup(t *testing.T) {
	user := userWithGroupHome(2, 1) // msg home: slot 2
	h := splitHarness(t, 4, msgSplit)
	h.loginAnswered(1, user)
	h.handle(node.View{Role: node.RoleLogic, Alive: []bool{true, false, false, true}})
	var got []node.Addr
	for _, r := range requests(h.frame(1, wire.OpSend, 2, &wire.Send{Cseq: 1})) {
		got = append(got, r.to)
	}
	for i := 0; i < 3; i++ {
		for _, r := range requests(h.advance(LogicTimeoutDefault)) {
			got = append(got, r.to)
		}
	}
	want := []node.Addr{logicAt(2), logicAt(1), logicAt(2), logicAt(1)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got SEND attempts at %v, want %v", got, want)
	}
}

// A msg slot's link going down moves the sessions with requests pending
// there, and only their msg group.
func TestSplitLinkDownMovesOnlyItsGroup(t *testing.T) {
	user := userWithGroupHome(2, 0) // msg home: slot 1
	h := splitHarness(t, 4, msgSplit)
	h.loginAnswered(1, user)
	h.frame(1, wire.OpSend, 2, &wire.Send{Cseq: 1})
	h.frame(1, wire.OpRead, 3, &wire.Read{})
	r := requests(h.handle(node.LinkDown{Peer: logicAt(1)}))
	if len(r) != 1 || r[0].req.ReqId != 2 || r[0].to != logicAt(2) {
		t.Fatalf("got %v resent to %v, want only reqID 2 to %v", reqIDs(r), targets(r), logicAt(2))
	}
	// The contact slot's link going down moves the READ alone, to no other
	// slot than its own group's: with one contact slot, it stays.
	if r := requests(h.handle(node.LinkDown{Peer: logicAt(3)})); len(r) != 0 {
		t.Fatalf("got %v resent to %v, want none (slot 3 is the contact group's only slot)", reqIDs(r), targets(r))
	}
}

// A business no slot serves is answered UNAVAILABLE at entry, not
// forwarded to a slot that would refuse it.
func TestSplitUnservedBusiness(t *testing.T) {
	h := splitHarness(t, 2, map[int][]logic.Business{0: {logic.BusinessLogin}, 1: {logic.BusinessMsg}})
	h.loginAnswered(1, "alice")
	eff := h.frame(1, wire.OpConvList, 2, &wire.ConvList{})
	if r := requests(eff); len(r) != 0 {
		t.Fatalf("got CONV_LIST forwarded to %v, want none", targets(r))
	}
	fs := framesTo(eff, 1)
	if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_UNAVAILABLE {
		t.Fatalf("got frames %v, want ERROR UNAVAILABLE", fs)
	}
}

// Slots the map leaves out serve everything (logic: empty Businesses is
// all), so they belong to every group.
func TestSplitMissingSlotServesAll(t *testing.T) {
	r := &Router{Views: node.NewViews(map[node.Role]int{node.RoleLogic: 3}), AttemptTimeout: time.Second,
		Businesses: map[int][]logic.Business{0: {logic.BusinessLogin}}}
	for _, c := range []struct {
		b    logic.Business
		want []int
	}{
		{logic.BusinessLogin, []int{0, 1, 2}}, {logic.BusinessMsg, []int{1, 2}}, {logic.BusinessContact, []int{1, 2}},
	} {
		if got := r.members(r.groupNumber(c.b)); !slices.Equal(got, c.want) {
			t.Errorf("got %s group %v, want %v", c.b, got, c.want)
		}
	}
	if r.groupNumber(logic.BusinessMsg) != r.groupNumber(logic.BusinessContact) {
		t.Errorf("got msg and contact in groups %d and %d, want one shared group", r.groupNumber(logic.BusinessMsg), r.groupNumber(logic.BusinessContact))
	}
	if nosplit := (&Router{Views: r.Views}); nosplit.groupNumber(logic.BusinessLogin) != 0 ||
		nosplit.groupNumber(logic.BusinessMsg) != 0 || nosplit.groupNumber(logic.BusinessContact) != 0 {
		t.Errorf("got groups %v without a split, want all 0", nosplit.groups())
	}
}
