package client

import (
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// limitedServer answers SENDs as logic does under its per-user token
// bucket: in arrival order, the next cseq is acknowledged if a token is
// left and refused RATE_LIMITED if not; a later cseq behind a refused one
// is refused OUT_OF_ORDER (go-back-N); a cseq already stored is
// acknowledged again (dedup) without a token.
type limitedServer struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
	done   uint64 // highest cseq stored, all below it stored too
	frames int    // SEND frames received
}

func (s *limitedServer) answer(t *testing.T, c *Client, e *fakeEnv, w written) {
	m := w.msg.(*wire.Send)
	s.frames++
	s.tokens = min(s.burst, s.tokens+e.now.Sub(s.last).Seconds()*s.rate)
	s.last = e.now
	switch {
	case m.Cseq <= s.done:
		ack(t, c, e, w.reqID, m.Cseq, m.Cseq)
	case m.Cseq == s.done+1 && s.tokens >= 1:
		s.tokens--
		s.done++
		ack(t, c, e, w.reqID, m.Cseq, m.Cseq)
	case m.Cseq == s.done+1:
		reply(t, c, e, w.reqID, &wire.Error{Code: wire.ErrorCode_RATE_LIMITED, Op: uint32(wire.OpSend), Cseq: m.Cseq})
	default:
		reply(t, c, e, w.reqID, &wire.Error{Code: wire.ErrorCode_OUT_OF_ORDER, Op: uint32(wire.OpSend), Cseq: m.Cseq})
	}
}

// burstFrames queues n sends at once against a limitedServer (logic's
// defaults: 20/s, burst 40; answers after rtt) and returns the SEND frames
// the server received and the client's stats once every send is acked.
func burstFrames(t *testing.T, n int, rtt time.Duration) (int, Stats) {
	t.Helper()
	cfg := tcpConfig()
	cfg.RequestTimeout = time.Minute // answers always come: no timeouts here
	c, e := startTCP(t, cfg)
	start := e.now
	srv := &limitedServer{rate: 20, burst: 40, tokens: 40, last: e.now}
	for i := 0; i < n; i++ {
		if _, err := c.Send(e, testConv, "x"); err != nil {
			t.Fatal(err)
		}
	}
	const stepsMax = 100000
	for step := 0; c.Stats().Acks < n; step++ {
		if step == stepsMax {
			t.Fatalf("after %s only %d of %d sends acked", e.now.Sub(start), c.Stats().Acks, n)
		}
		ws := only(e.take(t), wire.OpSend)
		e.advance(c, rtt)
		for _, w := range ws {
			srv.answer(t, c, e, w)
		}
	}
	t.Logf("all acked after %s", e.now.Sub(start))
	return srv.frames, c.Stats()
}

// A burst past the rate limit is delivered with resends proportionate to
// the refusals: after a RATE_LIMITED the client resends one send, not its
// whole window of InflightMax, and widens the window as acks come.
func TestRateLimitedBurstResends(t *testing.T) {
	const n, rtt = 120, 10 * time.Millisecond
	frames, st := burstFrames(t, n, rtt)
	t.Logf("%d sends rate limited (20/s, burst 40, rtt %s): %d SEND frames, %d resends, %d go-back-N rounds, %d window cuts",
		n, rtt, frames, st.Resends, st.GoBackN, st.WindowCuts)
	if frames != n+st.Resends {
		t.Errorf("got %d frames at the server, want sends + resends = %d", frames, n+st.Resends)
	}
	if st.WindowCuts == 0 {
		t.Errorf("got no window cuts, want the window cut on RATE_LIMITED")
	}
	// Each go-back-N round resends what the window allowed since the last
	// cut: a few sends, never a whole InflightMax window per round.
	if max := 4 * st.GoBackN; st.Resends > max {
		t.Errorf("got %d resends over %d rounds, want at most %d (a few per round)", st.Resends, st.GoBackN, max)
	}
}
