package loadgen

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zzim/zzim/check"
)

func TestEmbeddedProfilesParse(t *testing.T) {
	names := Names()
	for _, want := range []string{"steady", "flash-sale-spike", "reconnect-storm"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("embedded profiles %v: %q missing", names, want)
		}
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			p, err := LoadProfile(n)
			if err != nil {
				t.Fatalf("LoadProfile(%q): %v", n, err)
			}
			if p.Name != n {
				t.Errorf("name: got %q, want %q", p.Name, n)
			}
		})
	}
}

func TestParseProfileStrict(t *testing.T) {
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"unknown key", "name: x\nduration: 10s\nworkload:\n  users: 2\n  conversations: 1\n  rate: 1\n  bogus: 3\n", "line 7"},
		{"bad duration", "name: x\nduration: soon\nworkload:\n  users: 2\n", "line 2"},
		{"no users", "name: x\nduration: 10s\nworkload:\n  rate: 0\n", "users 0"},
		{"rate without conversations", "name: x\nduration: 10s\nworkload:\n  users: 2\n  rate: 5\n", "no conversations"},
		{"bad arrivals", "name: x\nduration: 10s\nworkload:\n  users: 2\n  conversations: 1\n  arrivals: bursty\n", "arrivals"},
		{"bad spike", "name: x\nduration: 10s\nworkload:\n  users: 2\n  conversations: 1\n  spikes: [{at: 1s, for: 0s, multiplier: 2}]\n", "spikes[0]"},
		{"ok", "name: x\nduration: 10s\nworkload:\n  users: 2\n  conversations: 1\n  rate: 5\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseProfile([]byte(tt.yaml), "test.yaml")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRateShapes(t *testing.T) {
	s := func(d time.Duration) Duration { return Duration(d) }
	tests := []struct {
		name string
		w    Workload
		at   time.Duration
		want float64
	}{
		{"constant", Workload{Rate: 100}, 5 * time.Second, 100},
		{"spike inside", Workload{Rate: 100, Spikes: []Spike{{At: s(4 * time.Second), For: s(3 * time.Second), Multiplier: 5}}}, 5 * time.Second, 500},
		{"spike after", Workload{Rate: 100, Spikes: []Spike{{At: s(4 * time.Second), For: s(3 * time.Second), Multiplier: 5}}}, 7 * time.Second, 100},
		{"step", Workload{Rate: 100, Steps: []Step{{At: s(2 * time.Second), Rate: 300}}}, 3 * time.Second, 300},
		{"before step", Workload{Rate: 100, Steps: []Step{{At: s(2 * time.Second), Rate: 300}}}, time.Second, 100},
		{"ramp half", Workload{Rate: 100, Ramp: &Ramp{For: s(10 * time.Second), To: 300}}, 5 * time.Second, 200},
		{"ramp done", Workload{Rate: 100, Ramp: &Ramp{For: s(10 * time.Second), To: 300}}, 20 * time.Second, 300},
		{"sine peak", Workload{Rate: 100, Sine: &Sine{Period: s(4 * time.Second), Amplitude: 0.5}}, time.Second, 150},
		{"sine trough", Workload{Rate: 100, Sine: &Sine{Period: s(4 * time.Second), Amplitude: 0.5}}, 3 * time.Second, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.RateAt(tt.at); math.Abs(got-tt.want) > 1e-6 {
				t.Errorf("RateAt(%s): got %g, want %g", tt.at, got, tt.want)
			}
		})
	}
}

func TestArrivalCounts(t *testing.T) {
	spike := []Spike{{At: Duration(4 * time.Second), For: Duration(3 * time.Second), Multiplier: 5}}
	tests := []struct {
		name     string
		arrivals string
		tol      float64
	}{
		{"uniform", ArrivalsUniform, 0.01},
		{"poisson", ArrivalsPoisson, 0.08},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Workload{Rate: 100, Spikes: spike, Arrivals: tt.arrivals}
			a := newArrivals(w, 10*time.Second, rand.New(rand.NewPCG(1, 2)))
			var total, inSpike int
			last := time.Duration(-1)
			for n := 0; n < 1_000_000; n++ {
				at, ok := a.pop()
				if !ok {
					break
				}
				if at < last {
					t.Fatalf("arrival %d at %s before the previous %s", n, at, last)
				}
				last = at
				total++
				if at >= 4*time.Second && at < 7*time.Second {
					inSpike++
				}
			}
			// 7 s at 100/s and 3 s at 500/s.
			if want := 2200.0; math.Abs(float64(total)-want)/want > tt.tol {
				t.Errorf("total arrivals: got %d, want %g ± %g%%", total, want, 100*tt.tol)
			}
			if want := 1500.0; math.Abs(float64(inSpike)-want)/want > tt.tol {
				t.Errorf("arrivals in the spike: got %d, want %g ± %g%%", inSpike, want, 100*tt.tol)
			}
		})
	}
}

func TestSetRateAndDurationKeepShape(t *testing.T) {
	p, err := LoadProfile("flash-sale-spike")
	if err != nil {
		t.Fatal(err)
	}
	p.SetRate(50)
	p.SetDuration(12 * time.Second)
	if p.Workload.Rate != 50 {
		t.Errorf("rate: got %g, want 50", p.Workload.Rate)
	}
	sp := p.Workload.Spikes[0]
	if sp.At.D() != 5*time.Second || sp.For.D() != 3*time.Second {
		t.Errorf("spike: got at %s for %s, want at 5s for 3s", sp.At.D(), sp.For.D())
	}
}

func TestThresholds(t *testing.T) {
	s := &Summary{
		Offered: 1000, ErrorCount: 2, ErrorRate: 0.002, AchievedRate: 950,
		Latency: map[string]Percentiles{SeriesDeliver: {P99: 40}, SeriesAck: {P99: 25}},
	}
	tests := []struct {
		expr string
		pass bool
	}{
		{"p99_deliver<50ms", true},
		{"p99_ack<20ms", false},
		{"p99_ack<=25", true},
		{"errors<0.1%", false},
		{"errors<0.5%", true},
		{"errors<3", true},
		{"achieved_rate>900", true},
		{"achieved_rate>=1000", false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			th, err := ParseThreshold(tt.expr)
			if err != nil {
				t.Fatalf("ParseThreshold: %v", err)
			}
			if got := th.Judge(s); got.Pass != tt.pass {
				t.Errorf("got pass=%v (value %s), want %v", got.Pass, got.Value, tt.pass)
			}
		})
	}
	for _, bad := range []string{"p99_ack", "p98_ack<1ms", "p99_bogus<1ms", "achieved_rate>5%", "p99_ack<fast"} {
		if _, err := ParseThreshold(bad); err == nil {
			t.Errorf("ParseThreshold(%q): got no error, want one", bad)
		}
	}
}

func TestReplayScalesTime(t *testing.T) {
	ret := func(v int64) *int64 { return &v }
	ops := []check.Op{
		{Client: 1, User: "a", Kind: check.KindSend, Conv: "p:a:b:l", Call: 1_000_000_000, Return: ret(1_100_000_000), In: check.Input{ClientMsgID: "a-1", CSeq: 1}, Out: check.Output{Seq: 1}},
		{Client: 2, User: "b", Kind: check.KindSend, Conv: "p:a:b:l", Call: 3_000_000_000, Return: ret(3_100_000_000), In: check.Input{ClientMsgID: "b-1", CSeq: 1}, Out: check.Output{Seq: 2}},
		{Client: 1, User: "a", Kind: check.KindSend, Conv: "p:a:c:l", Call: 5_000_000_000, Return: ret(5_100_000_000), In: check.Input{ClientMsgID: "a-2", CSeq: 2}, Out: check.Output{Seq: 1}},
		{Client: 1, User: "a", Kind: check.KindSync, Conv: "p:a:c:l", Call: 6_000_000_000, Return: ret(6_100_000_000)},
	}
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := check.WriteHistory(f, ops); err != nil {
		t.Fatal(err)
	}
	f.Close()
	evs, err := loadReplay(&Replay{File: path, Speed: 2}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []replayEvent{{at: 0, conv: 0}, {at: time.Second, conv: 0, seller: true}, {at: 2 * time.Second, conv: 1}}
	if len(evs) != len(want) {
		t.Fatalf("events: got %d, want %d", len(evs), len(want))
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, evs[i], want[i])
		}
	}
}

func TestWindows(t *testing.T) {
	w := &Workload{Rate: 100, Spikes: []Spike{{At: Duration(4 * time.Second), For: Duration(3 * time.Second), Multiplier: 5}}}
	var rows []Row
	for s := 0; s < 12; s++ {
		r := Row{T: s, Offered: 100, Achieved: 100}
		if s >= 4 && s < 7 {
			r.Offered, r.Achieved = 500, 480
		}
		rows = append(rows, r)
	}
	ws := windows(w, 12*time.Second, rows)
	if len(ws) != 2 {
		t.Fatalf("windows: got %d, want 2", len(ws))
	}
	// Baseline: seconds 1-3 and 9-11 (0 is the first, 7-8 the aftermath).
	if ws[0].Seconds != 6 || ws[0].AchievedRate != 100 {
		t.Errorf("baseline: got %d s at %g/s, want 6 s at 100/s", ws[0].Seconds, ws[0].AchievedRate)
	}
	if ws[1].Seconds != 3 || ws[1].AchievedRate != 480 {
		t.Errorf("spike: got %d s at %g/s, want 3 s at 480/s", ws[1].Seconds, ws[1].AchievedRate)
	}
}

func TestBody(t *testing.T) {
	for _, size := range []int{0, 10, 100} {
		b := makeBody(123456789, size)
		if size > 20 && len(b) != size {
			t.Errorf("size %d: got body of %d bytes", size, len(b))
		}
		if v, ok := parseBody(b); !ok || v != 123456789 {
			t.Errorf("parseBody(%q): got %d %v, want 123456789 true", b, v, ok)
		}
	}
	if _, ok := parseBody("hello"); ok {
		t.Error("parseBody(hello): got ok, want not the generator's")
	}
}
