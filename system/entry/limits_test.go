package entry

import (
	"strings"
	"testing"

	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// A storm of logins for one user: past ConnsPerUserMax each extra LOGIN gets
// ERROR RATE_LIMITED and only its connection closes, nothing reaches logic,
// other users are unaffected, and a closed connection frees its place.
func TestConnsPerUserMax(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ConnsPerUserMax = 3 })
	h.login(100, "bystander")
	for conn := node.ConnID(1); conn <= 3; conn++ {
		h.login(conn, "storm")
	}
	for conn := node.ConnID(4); conn <= 10; conn++ {
		h.handle(node.ClientConnect{Conn: conn})
		eff := h.frame(conn, wire.OpLogin, 9, &wire.Login{Token: h.token("storm"), DeviceId: "d"})
		if n := len(requests(eff)); n != 0 {
			t.Fatalf("conn %d: got %d requests to logic, want 0", conn, n)
		}
		fs := framesTo(eff, conn)
		if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_RATE_LIMITED || fs[0].ReqID != 9 {
			t.Fatalf("conn %d: got frames %v, want one ERROR RATE_LIMITED with reqID 9", conn, fs)
		}
		if got := closed(eff); len(got) != 1 || got[0] != conn {
			t.Fatalf("conn %d: got closes %v, want only [%d]", conn, got, conn)
		}
	}
	st := h.e.Stats()
	if st.UserConnsRejected != 7 || st.ConnectionsOpen != 4 {
		t.Fatalf("got %d rejected and %d open, want 7 and 4", st.UserConnsRejected, st.ConnectionsOpen)
	}
	h.login(101, "other") // another user logs in as usual
	h.handle(node.ClientDisconnect{Conn: 2, Reason: "test"})
	h.login(11, "storm") // a freed place is usable again
}

// The device id is checked like every id: too long or with separators it is
// BAD_REQUEST and the connection closes; empty is one unnamed device.
func TestLoginDeviceID(t *testing.T) {
	for _, tc := range []struct {
		name, device string
		ok           bool
	}{
		{"named", "phone-1", true},
		{"empty", "", true},
		{"too-long", strings.Repeat("d", 65), false},
		{"separator", "a|b:c", false},
		{"sql", "x'; DROP TABLE messages; --", false},
		{"non-ascii", "caf\u00e9", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.handle(node.ClientConnect{Conn: 1})
			eff := h.frame(1, wire.OpLogin, 1, &wire.Login{Token: h.token("alice"), DeviceId: tc.device})
			if got := len(requests(eff)) == 1; got != tc.ok {
				t.Fatalf("device %q: got forwarded=%v, want %v", tc.device, got, tc.ok)
			}
			if tc.ok {
				return
			}
			fs := framesTo(eff, 1)
			if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_BAD_REQUEST || len(closed(eff)) != 1 {
				t.Fatalf("device %q: got frames %v and closes %v, want ERROR BAD_REQUEST and a close", tc.device, fs, closed(eff))
			}
		})
	}
}

// A LOGIN body that is not protobuf, or whose strings are not UTF-8, is
// BAD_REQUEST and closes only that connection.
func TestLoginGarbageBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}},
		{"invalid-utf8-token", append([]byte{0x0a, 0x02}, 0xc3, 0x28)}, // field 1 (token) = "\xc3("
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.login(2, "bystander")
			h.handle(node.ClientConnect{Conn: 1})
			eff := h.handle(node.ClientFrame{Conn: 1, Frame: wire.Frame{Op: wire.OpLogin, ReqID: 1, Body: tc.body}})
			fs := framesTo(eff, 1)
			if len(fs) != 1 || errorCode(t, fs[0]) != wire.ErrorCode_BAD_REQUEST {
				t.Fatalf("got frames %v, want ERROR BAD_REQUEST", fs)
			}
			if got := closed(eff); len(got) != 1 || got[0] != 1 || h.e.Stats().ConnectionsOpen != 1 {
				t.Fatalf("got closes %v and %d open, want [1] and the bystander open", got, h.e.Stats().ConnectionsOpen)
			}
		})
	}
}
