package loadgen

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

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

func serveSink(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 16<<10)
	w := bufio.NewWriterSize(c, 16<<10)
	seqs := map[string]uint64{}
	var buf []byte
	tmp := make([]byte, 16<<10)
	for {
		n, err := r.Read(tmp)
		buf = append(buf, tmp[:n]...)
		for {
			f, used, derr := wire.Decode(buf)
			if errors.Is(derr, wire.ErrShort) {
				break
			}
			if derr != nil {
				return
			}
			if resp := sinkAnswer(f, seqs); resp != nil {
				out, _ := wire.EncodeMessage(f.ReqID, resp)
				b, _ := wire.AppendFrame(nil, out)
				_, _ = w.Write(b)
			}
			buf = buf[used:]
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func sinkAnswer(f wire.Frame, seqs map[string]uint64) proto.Message {
	switch f.Op {
	case wire.OpLogin:
		return &wire.LoginAck{UserId: "sink", SessionId: 1}
	case wire.OpSend:
		var m wire.Send
		if proto.Unmarshal(f.Body, &m) != nil {
			return nil
		}
		seqs[m.ConvId]++
		return &wire.SendAck{ConvId: m.ConvId, ClientMsgId: m.ClientMsgId, Cseq: m.Cseq, Seq: seqs[m.ConvId]}
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
	p := &Profile{Name: "sink", Duration: Duration(10 * time.Second), Drain: Duration(3 * time.Second), Workload: Workload{
		Users: 500, Conversations: 1000, Rate: rate, StartOver: Duration(200 * time.Millisecond),
	}}
	res, err := Run(context.Background(), Config{TCP: []string{s.ln.Addr().String()}, Secret: []byte("x"), Profile: p, Seed: 1, Progress: testWriter{t}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	sm := res.Summary
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
