package logic_test

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/wire"
)

// rateLimited is a world whose logic allows 10 sends per second, burst 3.
func rateLimited(t *testing.T, tweak func(*logic.Config)) *world {
	return newWorld(t, noBugs, func(c *logic.Config) {
		c.SendRatePerSecond, c.SendBurst = 10, 3
		if tweak != nil {
			tweak(c)
		}
	})
}

// A flood past the burst: the first send over it gets RATE_LIMITED, the
// later pipelined ones OUT_OF_ORDER (go-back-N), nothing after the limited
// one is stored, and the client's resend from it, once tokens are back,
// stores everything in cseq order.
func TestRateLimitGoBackN(t *testing.T) {
	w := rateLimited(t, nil)
	alice := w.entry.Client("alice", "phone")
	var first []uint32
	for c := uint64(1); c <= 6; c++ {
		first = append(first, send(alice, logic0, c, 1))
	}
	w.c.Stabilize()
	want := []wire.ErrorCode{0, 0, 0, wire.ErrorCode_RATE_LIMITED, wire.ErrorCode_OUT_OF_ORDER, wire.ErrorCode_OUT_OF_ORDER}
	for i, r := range first {
		if want[i] == 0 {
			w.sendAcksAgree(alice, r, uint64(i+1))
			continue
		}
		if got := w.errCode(alice, r); got != want[i] {
			t.Errorf("cseq %d: got %s, want %s", i+1, got, want[i])
		}
	}
	if got, want := w.stored(), "1:m1 2:m2 3:m3"; got != want {
		t.Fatalf("stored after the flood: got %q, want %q", got, want)
	}
	// Straight away the bucket is still empty: the resend is refused again.
	r := send(alice, logic0, 4, 4)
	w.c.Stabilize()
	if got := w.errCode(alice, r); got != wire.ErrorCode_RATE_LIMITED {
		t.Fatalf("resend with an empty bucket: got %s, want RATE_LIMITED", got)
	}
	// 300ms later three tokens are back: the client goes back to cseq 4.
	w.c.Advance(300 * time.Millisecond)
	var again []uint32
	for c := uint64(4); c <= 6; c++ {
		again = append(again, send(alice, logic0, c, 4))
	}
	w.c.Stabilize()
	for i, r := range again {
		w.sendAcksAgree(alice, r, uint64(i+4))
	}
	if got, want := w.stored(), "1:m1 2:m2 3:m3 4:m4 5:m5 6:m6"; got != want {
		t.Fatalf("stored: got %q, want %q", got, want)
	}
	st := w.logics[0].Stats()
	if st.RateLimited != 2 {
		t.Errorf("RateLimited: got %d, want 2", st.RateLimited)
	}
}

// The bucket is per user: a second device of the same user shares it, and
// another user has their own.
func TestRateLimitPerUser(t *testing.T) {
	for _, tc := range []struct {
		name        string
		user, dev   string
		wantLimited bool
	}{
		{"same-user-other-device", "alice", "tablet", true},
		{"other-user", "bob", "phone", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rateLimited(t, nil)
			alice := w.entry.Client("alice", "phone")
			for c := uint64(1); c <= 3; c++ {
				send(alice, logic0, c, 1)
			}
			w.c.Stabilize()
			other := w.entry.Client(tc.user, tc.dev)
			r := send(other, logic0, 1, 1)
			w.c.Stabilize()
			_, limited := other.Response(r).(*wire.Error)
			if limited != tc.wantLimited {
				t.Fatalf("%s/%s after alice spent her burst: got answer %v, want limited=%v", tc.user, tc.dev, other.Response(r), tc.wantLimited)
			}
		})
	}
}

// A steady rate at the limit is never refused; twice the limit is, and the
// share refused is about half.
func TestRateLimitSteady(t *testing.T) {
	for _, tc := range []struct {
		name        string
		every       time.Duration
		wantLimited bool
	}{
		{"at-the-rate", 100 * time.Millisecond, false},
		{"twice-the-rate", 50 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := rateLimited(t, nil)
			alice := w.entry.Client("alice", "phone")
			cseq, limited := uint64(1), 0
			for i := 0; i < 40; i++ {
				r := send(alice, logic0, cseq, cseq)
				w.c.Stabilize()
				switch m := alice.Response(r).(type) {
				case *wire.SendAck:
					cseq++
				case *wire.Error:
					if m.Code != wire.ErrorCode_RATE_LIMITED {
						t.Fatalf("cseq %d: got %s, want RATE_LIMITED or an ack", cseq, m.Code)
					}
					limited++
				default:
					t.Fatalf("cseq %d: got %v, want an answer", cseq, m)
				}
				w.c.Advance(tc.every)
			}
			if (limited > 0) != tc.wantLimited {
				t.Fatalf("got %d of 40 sends limited, want limited=%v", limited, tc.wantLimited)
			}
			if tc.wantLimited && (limited < 14 || limited > 22) {
				t.Errorf("got %d of 40 sends limited at twice the rate, want about half", limited)
			}
		})
	}
}

// Past RateBucketsMax the least recently used bucket is forgotten, so memory
// stays bounded; a negative rate turns the limit off.
func TestRateLimitBounds(t *testing.T) {
	t.Run("buckets-max", func(t *testing.T) {
		// One bucket: bob's send evicts alice's empty bucket, so alice
		// starts full again (the documented price of the bound).
		w := rateLimited(t, func(c *logic.Config) { c.RateBucketsMax = 1 })
		alice, bob := w.entry.Client("alice", "phone"), w.entry.Client("bob", "phone")
		for c := uint64(1); c <= 4; c++ {
			send(alice, logic0, c, 1)
		}
		w.c.Stabilize()
		if st := w.logics[0].Stats(); st.RateLimited != 1 {
			t.Fatalf("alice over her burst: got %d limited, want 1", st.RateLimited)
		}
		send(bob, logic0, 1, 1)
		w.c.Stabilize()
		r := send(alice, logic0, 4, 4)
		w.c.Stabilize()
		w.sendAcksAgree(alice, r, 5) // bob's message took seq 4
		if st := w.logics[0].Stats(); st.RateLimited != 1 {
			t.Fatalf("after eviction: got %d limited, want still 1", st.RateLimited)
		}
	})
	t.Run("off", func(t *testing.T) {
		w := rateLimited(t, func(c *logic.Config) { c.SendRatePerSecond = -1 })
		alice := w.entry.Client("alice", "phone")
		for c := uint64(1); c <= 20; c++ {
			send(alice, logic0, c, 1)
		}
		w.c.Stabilize()
		if st := w.logics[0].Stats(); st.RateLimited != 0 || st.Acks != 20 {
			t.Fatalf("got %d limited and %d acks, want 0 and 20", st.RateLimited, st.Acks)
		}
	})
}
