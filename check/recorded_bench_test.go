package check

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCheckRecorded checks a history a run recorded, so the checkers'
// cost is measured on what a sweep checks (a generated history is more
// uniform). ZZIM_CHECK_DIR names a directory `zzim sim run --out` wrote
// (history.jsonl, store.jsonl); without it the benchmark is skipped. The
// liveness bound is a day: the run's fault windows are not read, and
// liveness is still computed in full.
//
//	zzim sim run bench-standard --swarm --seed 3 --out /tmp/h3
//	ZZIM_CHECK_DIR=/tmp/h3 go test ./check -run '^$' -bench CheckRecorded -benchtime 3x
func BenchmarkCheckRecorded(b *testing.B) {
	dir := os.Getenv("ZZIM_CHECK_DIR")
	if dir == "" {
		b.Skip("ZZIM_CHECK_DIR is not set")
	}
	h := readFile(b, filepath.Join(dir, "history.jsonl"), ReadHistory)
	dump := readFile(b, filepath.Join(dir, "store.jsonl"), ReadStoreDump)
	for _, checks := range []string{CheckStructural, CheckLinearizability} {
		b.Run(checks, func(b *testing.B) {
			opts := Options{Dump: dump, Checks: []string{checks}, LivenessBound: 24 * time.Hour, Timeout: time.Minute}
			for b.Loop() {
				v, err := Check(h, opts)
				if err != nil {
					b.Fatal(err)
				}
				if !v.Pass {
					b.Fatalf("got %s, want pass", v.Line())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(h.Ops)), "ns/history-op")
		})
	}
}

func readFile[T any](b *testing.B, path string, read func(io.Reader) (T, error)) T {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	v, err := read(f)
	if err != nil {
		b.Fatalf("%s: %v", path, err)
	}
	return v
}
