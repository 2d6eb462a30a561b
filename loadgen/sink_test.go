package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/wire"
)

// sink is a trivial entry stand-in: it answers LOGIN, SEND (seq per
// conversation and connection), SYNC and CONV_LIST at once and discards
// everything else. It measures the generator, not zzim.
type sink struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startSink(t *testing.T) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() { defer s.wg.Done(); serveSink(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

// serveSink answers one connection. It reads into one buffer, decodes
// frames in place, answers each whole frame of a read and writes the
// answers in one write; SEND (nearly every frame) is parsed and answered
// with protowire, no message allocated.
func serveSink(c net.Conn) {
	defer c.Close()
	seqs := map[string]*uint64{}
	buf := make([]byte, 16<<10)
	var out []byte
	var start, end int
	for {
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
		if end == len(buf) {
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := c.Read(buf[end:])
		end += n
		for start < end {
			f, used, derr := wire.Decode(buf[start:end])
			if errors.Is(derr, wire.ErrShort) {
				break
			}
			if derr != nil {
				return
			}
			start += used
			if f.Op == wire.OpSend {
				out = appendSendAck(out, f, seqs)
			} else if resp := sinkAnswer(f); resp != nil {
				fr, _ := wire.EncodeMessage(f.ReqID, resp)
				out, _ = wire.AppendFrame(out, fr)
			}
		}
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
			out = out[:0]
		}
		if err != nil {
			return
		}
	}
}

// appendSendAck appends the SEND_ACK of SEND frame f: conv_id,
// client_msg_id and cseq echoed, seq the conversation's next.
func appendSendAck(out []byte, f wire.Frame, seqs map[string]*uint64) []byte {
	var conv, id []byte
	var cseq uint64
	for b := f.Body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			conv, n = protowire.ConsumeBytes(b)
		case num == 2 && typ == protowire.BytesType:
			id, n = protowire.ConsumeBytes(b)
		case num == 3 && typ == protowire.VarintType:
			cseq, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return out
		}
		b = b[n:]
	}
	seq := seqs[string(conv)]
	if seq == nil {
		seq = new(uint64)
		seqs[string(conv)] = seq
	}
	*seq++
	// Header (length filled in below), then the body.
	h := len(out)
	out = append(out, make([]byte, wire.HeaderSize)...)
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	out = protowire.AppendBytes(out, conv)
	out = protowire.AppendTag(out, 2, protowire.BytesType)
	out = protowire.AppendBytes(out, id)
	out = protowire.AppendTag(out, 3, protowire.VarintType)
	out = protowire.AppendVarint(out, cseq)
	out = protowire.AppendTag(out, 4, protowire.VarintType)
	out = protowire.AppendVarint(out, *seq)
	binary.BigEndian.PutUint32(out[h:], uint32(len(out)-h-4))
	out[h+4] = wire.Version
	out[h+5] = byte(wire.OpSendAck)
	binary.BigEndian.PutUint32(out[h+8:], f.ReqID)
	return out
}

func sinkAnswer(f wire.Frame) proto.Message {
	switch f.Op {
	case wire.OpLogin:
		return &wire.LoginAck{UserId: "sink", SessionId: 1}
	case wire.OpSync:
		var m wire.Sync
		if proto.Unmarshal(f.Body, &m) != nil {
			return nil
		}
		return &wire.SyncResp{ConvId: m.ConvId}
	case wire.OpConvList:
		return &wire.ConvListResp{}
	}
	return nil
}

// TestGeneratorThroughput: against the sink, the generator sustains 50,000
// scheduled sends per second with schedule-lag p99 under 5 ms. Behind
// ZZIM_LOADBENCH=1 (it takes both cores for ~12 s).
func TestGeneratorThroughput(t *testing.T) {
	if os.Getenv("ZZIM_LOADBENCH") == "" {
		t.Skip("set ZZIM_LOADBENCH=1 to measure the generator against a sink")
	}
	s := startSink(t)
	rate := 50_000.0
	if v := os.Getenv("ZZIM_LOADBENCH_RATE"); v != "" { // measure CPU per action at another rate
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			t.Fatalf("ZZIM_LOADBENCH_RATE=%q: want a positive rate", v)
		}
		rate = r
	}
	p := &Profile{Name: "sink", Duration: Duration(10 * time.Second), Drain: Duration(3 * time.Second), Workload: Workload{
		Users: 500, Conversations: 1000, Rate: rate, StartOver: Duration(200 * time.Millisecond),
	}}
	var user0, sys0 time.Duration
	res, err := Run(context.Background(), Config{TCP: []string{s.ln.Addr().String()}, Secret: []byte("x"), Profile: p, Seed: 1, Progress: testWriter{t},
		OnStart: func(time.Time) { user0, sys0 = cpuTime(t) }})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	user, sys := cpuTime(t)
	user, sys = user-user0, sys-sys0
	sm := res.Summary
	// CPU of the whole process (generator and sink) from traffic start to
	// the end of the run (drain included), per send offered. The kernel's
	// share is mostly loopback TCP, both ends' (a write carries the
	// receiver's processing too).
	n := float64(max(sm.Offered, 1))
	perAction := float64((user + sys).Microseconds()) / n
	t.Logf("cpu %.2fs (user %.2fs, sys %.2fs) for %d actions: %.1f µs/action (user %.1f, sys %.1f; generator+sink); 2 free cores at this cost: %.0f actions/s",
		(user + sys).Seconds(), user.Seconds(), sys.Seconds(), sm.Offered, perAction,
		float64(user.Microseconds())/n, float64(sys.Microseconds())/n, 2e6/perAction)
	t.Logf("offered %.0f/s, achieved %.0f/s, lag p50 %.3fms p99 %.3fms max %.1fms, dropped %d, ack p99 %.2fms (from intended), errors %v",
		sm.OfferedRate, sm.AchievedRate, sm.Latency[SeriesLag].P50, sm.Generator.LagP99MS, sm.Generator.LagMaxMS,
		sm.Generator.Dropped, sm.Latency[SeriesAck].P99, sm.Errors)
	if sm.OfferedRate < 0.99*rate {
		t.Errorf("offered rate: got %.0f/s, want >= %.0f/s", sm.OfferedRate, 0.99*rate)
	}
	if sm.Generator.LagP99MS >= 5 {
		t.Errorf("schedule lag p99: got %.3fms, want < 5ms", sm.Generator.LagP99MS)
	}
	if sm.Generator.Dropped != 0 {
		t.Errorf("dropped actions: got %d, want 0", sm.Generator.Dropped)
	}
}

// cpuTime is the process's user and system CPU so far.
func cpuTime(t *testing.T) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

var _ io.Writer = testWriter{}

// TestSchedulerThroughput (ZZIM_LOADBENCH=1): the scheduler alone, its
// actions handed to one consumer goroutine over a channel (the clients'
// cost excluded), at 50,000 actions per second for 3 s.
func TestSchedulerThroughput(t *testing.T) {
	if os.Getenv("ZZIM_LOADBENCH") == "" {
		t.Skip("set ZZIM_LOADBENCH=1 to measure the scheduler")
	}
	const rate = 50_000
	w := &Workload{Rate: rate}
	start := time.Now()
	m := NewMetrics(start, 5, nil)
	ch := make(chan int64, 4096)
	done := make(chan int64)
	go func() {
		var n int64
		for range ch {
			n++
		}
		done <- n
	}()
	sch := &scheduler{now: time.Now, start: start, end: 3 * time.Second}
	arr := newArrivals(w, 3*time.Second, nil)
	var dropped int64
	sch.add(&source{name: "sends", pop: arr.pop, fire: func(intended time.Time, _ time.Duration) {
		m.offer(intended, time.Since(intended))
		select {
		case ch <- intended.UnixNano():
		default:
			dropped++
		}
	}})
	fired := sch.run(context.Background())
	close(ch)
	got := <-done
	lag := m.Hist(SeriesLag)
	t.Logf("fired %d (%.0f/s), consumed %d, dropped %d, lag p50 %.3fms p99 %.3fms max %.3fms",
		fired, float64(fired)/3, got, dropped, ms(lag.ValueAtQuantile(50)), ms(lag.ValueAtQuantile(99)), ms(lag.Max()))
	if fired < rate*3*99/100 {
		t.Errorf("fired %d, want >= %d", fired, rate*3*99/100)
	}
	if p99 := ms(lag.ValueAtQuantile(99)); p99 >= 5 {
		t.Errorf("lag p99: got %.3fms, want < 5ms", p99)
	}
}

// TestSinkSendAck: the sink's hand-encoded SEND_ACK is the one proto would
// make (the throughput test depends on clients matching it).
func TestSinkSendAck(t *testing.T) {
	seqs := map[string]*uint64{}
	send := &wire.Send{ConvId: "p:a:b:l1", ClientMsgId: "a-load-7", Cseq: 7, Body: "zl:1", AckFloor: 3}
	f, err := wire.EncodeMessage(42, send)
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for range 2 {
		out = appendSendAck(out, f, seqs)
	}
	for i := range 2 {
		g, used, err := wire.Decode(out)
		if err != nil {
			t.Fatalf("decode %d: %v", i, err)
		}
		out = out[used:]
		m, err := wire.DecodeBody(g)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		want := &wire.SendAck{ConvId: send.ConvId, ClientMsgId: send.ClientMsgId, Cseq: 7, Seq: uint64(i + 1)}
		if g.ReqID != 42 || !proto.Equal(m, want) {
			t.Errorf("ack %d: got req %d %v, want req 42 %v", i, g.ReqID, m, want)
		}
	}
	if id := sendIDOfFrame(f); string(id) != send.ClientMsgId {
		t.Errorf("sendIDOfFrame: got %q, want %q", id, send.ClientMsgId)
	}
}
