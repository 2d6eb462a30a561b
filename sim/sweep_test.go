package sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestSweep: parallel runs give the same results as sequential ones, in
// seed order, and progress hears about every seed once.
func TestSweep(t *testing.T) {
	seeds := []uint64{3, 1, 4, 15, 9, 2}
	heard := map[uint64]int{}
	out := Sweep(smallConfig, seeds, 3, func(r SweepResult) { heard[r.Seed]++ })
	if len(out) != len(seeds) {
		t.Fatalf("got %d results, want %d", len(out), len(seeds))
	}
	for i, r := range out {
		if r.Seed != seeds[i] {
			t.Errorf("result %d is seed %d, want %d", i, r.Seed, seeds[i])
		}
		if r.Err != nil {
			t.Fatalf("seed %d: %v", r.Seed, r.Err)
		}
		if heard[r.Seed] != 1 {
			t.Errorf("progress heard seed %d %d times, want 1", r.Seed, heard[r.Seed])
		}
		alone, err := Run(smallConfig(r.Seed))
		if err != nil {
			t.Fatal(err)
		}
		if alone.TraceHash != r.Result.TraceHash {
			t.Errorf("seed %d: sweep hash %016x, alone %016x, want equal", r.Seed, r.Result.TraceHash, alone.TraceHash)
		}
	}
}

func TestParseShard(t *testing.T) {
	tests := []struct {
		in      string
		want    Shard
		wantErr bool
	}{
		{"0/4", Shard{0, 4}, false}, {"3/4", Shard{3, 4}, false}, {" 0/1 ", Shard{0, 1}, false},
		{"4/4", Shard{}, true}, {"-1/4", Shard{}, true}, {"1/0", Shard{}, true}, {"1", Shard{}, true},
		{"a/4", Shard{}, true}, {"1/4/2", Shard{}, true}, {"", Shard{}, true}, {"0/1000000", Shard{}, true},
	}
	for _, tt := range tests {
		got, err := ParseShard(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseShard(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestShardOf: the shards of a range cover it exactly once, each seed in
// the shard its index says.
func TestShardOf(t *testing.T) {
	for _, n := range []int{1, 2, 3, 4, 7, 50} {
		seen := map[uint64]int{}
		for k := 0; k < n; k++ {
			sh := Shard{k, n}
			for _, seed := range sh.Of(11, 40) {
				seen[seed]++
				if !sh.Owns(seed - 11) {
					t.Errorf("shard %v lists seed %d it does not own", sh, seed)
				}
			}
		}
		for seed := uint64(11); seed <= 40; seed++ {
			if seen[seed] != 1 {
				t.Errorf("N=%d: seed %d in %d shards, want 1", n, seed, seen[seed])
			}
		}
		if len(seen) != 30 {
			t.Errorf("N=%d: %d seeds, want 30", n, len(seen))
		}
	}
	if got := (Shard{1, 4}).Of(1, 10); !slices.Equal(got, []uint64{2, 6, 10}) {
		t.Errorf("1/4 of 1-10 = %v, want [2 6 10]", got)
	}
}

// shardFile writes shard sh of a synthetic sweep of seeds 1-12 in which
// the seeds in failing fail, and reads it back.
func shardFile(t *testing.T, sh Shard, failing map[uint64]bool, extra ...SeedRecord) *ResultsFile {
	t.Helper()
	var buf bytes.Buffer
	h := SweepHeader{Scenario: "tiny.yaml", Name: "tiny", First: 1, Last: 12, Shard: sh.String(), Bugs: "no-dedup"}
	w := NewResultsWriter(&buf, h)
	for _, seed := range sh.Of(1, 12) {
		r := SeedRecord{Seed: seed, Verdict: VerdictPass, Line: fmt.Sprintf("verdict=pass seed=%d trace=00 wall_seconds=0.10", seed), WallSeconds: 0.1}
		if failing[seed] {
			r.Verdict, r.Line, r.Reasons = VerdictFail, fmt.Sprintf("verdict=fail seed=%d trace=00 wall_seconds=0.10", seed), []string{"broken"}
		}
		w.Write(r)
	}
	for _, r := range extra {
		w.Write(r)
	}
	if w.Err() != nil {
		t.Fatal(w.Err())
	}
	f, err := ReadResults(&buf, "shard-"+sh.String())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestMerge(t *testing.T) {
	failing := map[uint64]bool{3: true, 8: true, 10: true}
	all := func(skip ...int) []*ResultsFile {
		var fs []*ResultsFile
		for k := 0; k < 3; k++ {
			if !slices.Contains(skip, k) {
				fs = append(fs, shardFile(t, Shard{k, 3}, failing))
			}
		}
		return fs
	}
	t.Run("whole", func(t *testing.T) {
		m, err := Merge(all())
		if err != nil {
			t.Fatal(err)
		}
		if got, want := TotalsOf(m.Records).String(), "seeds=12 failed=3 first_failure=3"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if len(m.Missing)+len(m.MissingShards)+len(m.Overlap)+len(m.Conflicts) != 0 {
			t.Errorf("missing %v shards %v overlap %v conflicts %v, want none", m.Missing, m.MissingShards, m.Overlap, m.Conflicts)
		}
		for i, r := range m.Records {
			if r.Seed != uint64(i+1) {
				t.Fatalf("record %d is seed %d, want seeds in order", i, r.Seed)
			}
		}
	})
	t.Run("lost shard", func(t *testing.T) {
		m, err := Merge(all(1))
		if err != nil {
			t.Fatal(err)
		}
		if got := SeedRanges(m.Missing); got != "2,5,8,11" {
			t.Errorf("missing %s, want 2,5,8,11", got)
		}
		if !slices.Equal(m.MissingShards, []string{"1/3"}) {
			t.Errorf("missing shards %v, want [1/3]", m.MissingShards)
		}
	})
	t.Run("overlap", func(t *testing.T) {
		m, err := Merge(append(all(), shardFile(t, Shard{0, 3}, failing)))
		if err != nil {
			t.Fatal(err)
		}
		if got := SeedRanges(m.Overlap); got != "1,4,7,10" || len(m.Conflicts) != 0 || len(m.Records) != 12 {
			t.Errorf("overlap %s conflicts %v records %d, want 1,4,7,10, none, 12", got, m.Conflicts, len(m.Records))
		}
	})
	t.Run("conflict", func(t *testing.T) {
		m, err := Merge(append(all(), shardFile(t, Shard{0, 3}, map[uint64]bool{4: true})))
		if err != nil {
			t.Fatal(err)
		}
		// Shard 0/3 is seeds 1, 4, 7, 10: the second copy fails 4 and passes 10.
		if len(m.Conflicts) != 2 || !strings.HasPrefix(m.Conflicts[0], "seed 4:") || !strings.HasPrefix(m.Conflicts[1], "seed 10:") {
			t.Errorf("conflicts %q, want seeds 4 and 10", m.Conflicts)
		}
		if tot := TotalsOf(m.Records); tot.Failed != 4 {
			t.Errorf("failed %d, want 4 (3 and 8, and the disagreeing 4 and 10)", tot.Failed)
		}
	})
	t.Run("errors", func(t *testing.T) {
		other := shardFile(t, Shard{1, 4}, failing)
		if _, err := Merge(append(all(), other)); err == nil {
			t.Error("shards of 3 and of 4 merged, want an error")
		}
		stray := shardFile(t, Shard{0, 3}, nil, SeedRecord{Seed: 2, Verdict: VerdictPass})
		if _, err := Merge([]*ResultsFile{stray}); err == nil || !strings.Contains(err.Error(), "seed 2") {
			t.Errorf("seed 2 in shard 0/3: got %v, want an error naming it", err)
		}
		f := shardFile(t, Shard{0, 3}, nil)
		f.Header.Bugs = ""
		if _, err := Merge(append(all(), f)); err == nil {
			t.Error("two different sweeps merged, want an error")
		}
	})
}

func TestReadResults(t *testing.T) {
	good := `{"kind":"sweep","scenario":"s","name":"s","first":1,"last":4,"shard":"0/2"}
{"kind":"seed","seed":1,"verdict":"pass","line":"verdict=pass seed=1"}
`
	tests := []struct {
		name, in      string
		wantErr       bool
		wantRecords   int
		wantTruncated bool
	}{
		{"good", good, false, 1, false},
		{"cut last line", good + `{"kind":"seed","seed":3,"verd`, false, 1, true},
		{"no header", `{"kind":"seed","seed":1,"verdict":"pass"}` + "\n", true, 0, false},
		{"empty", "", true, 0, false},
		{"bad verdict", strings.Replace(good, `"pass"`, `"meh"`, 1), true, 0, false},
		{"bad shard", strings.Replace(good, `"0/2"`, `"2/2"`, 1), true, 0, false},
		{"broken middle line", strings.Replace(good, "\n{", "\n{x", 1) + "\n", true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ReadResults(strings.NewReader(tt.in), "r.jsonl")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(f.Records) != tt.wantRecords || f.Truncated != tt.wantTruncated {
				t.Errorf("records %d truncated %v, want %d, %v", len(f.Records), f.Truncated, tt.wantRecords, tt.wantTruncated)
			}
		})
	}
}

// TestJUnit: the report parses back with a case per seed, failures and
// missing seeds counted, and the replay command in each failure.
func TestJUnit(t *testing.T) {
	m, err := Merge([]*ResultsFile{shardFile(t, Shard{0, 2}, map[uint64]bool{5: true, 7: true})})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, JUnit(m.Header, m.Records, m.Missing, "lost")); err != nil {
		t.Fatal(err)
	}
	var got JUnitSuites
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("parse back: %v\n%s", err, buf.String())
	}
	if got.Tests != 12 || got.Failures != 2 || got.Errors != 6 || len(got.Suites) != 1 || len(got.Suites[0].Cases) != 12 {
		t.Fatalf("tests=%d failures=%d errors=%d suites=%d, want 12, 2, 6 (the missing shard's seeds), 1",
			got.Tests, got.Failures, got.Errors, len(got.Suites))
	}
	for i, c := range got.Suites[0].Cases {
		seed := uint64(i + 1)
		if c.Name != fmt.Sprintf("tiny/seed=%d", seed) {
			t.Errorf("case %d named %q, want tiny/seed=%d", i, c.Name, seed)
		}
		replay := fmt.Sprintf("zzim sim run tiny.yaml --seed %d --bug no-dedup\n", seed)
		switch {
		case seed == 5 || seed == 7:
			if c.Failure == nil || !strings.Contains(c.Failure.Body, "replay: "+replay) || !strings.HasPrefix(c.Failure.Message, "verdict=fail") {
				t.Errorf("seed %d: failure %+v, want the verdict line and %q", seed, c.Failure, replay)
			}
		case seed%2 == 0:
			if c.Error == nil || c.Error.Type != "missing" || !strings.Contains(c.Error.Body, replay) {
				t.Errorf("seed %d: error %+v, want a missing case with %q", seed, c.Error, replay)
			}
		default:
			if c.Failure != nil || c.Error != nil || c.Time != "0.100" {
				t.Errorf("seed %d: %+v, want a pass taking 0.100s", seed, c)
			}
		}
	}
}

func TestReplayCommandQuotes(t *testing.T) {
	h := SweepHeader{Scenario: "my scenario's.yaml", Bugs: "no-dedup,stale-sync", Swarm: true, Checks: "structural"}
	want := `zzim sim run 'my scenario'\''s.yaml' --seed 9 --swarm --bug no-dedup,stale-sync --checks structural`
	if got := h.ReplayCommand(9); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
