package sim

import (
	"testing"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/bugs"
)

// TestCheckersJudgeRuns: a faulty run of the healthy system passes the
// checkers; the same run with a bug switch on is caught.
func TestCheckersJudgeRuns(t *testing.T) {
	tests := []struct {
		name     string
		bug      bugs.Switch
		wantPass bool
	}{
		{"healthy", "", true},
		{"logic-local-seq", bugs.LogicLocalSeq, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := faultyConfig(5)
			if tt.bug != "" {
				cfg.Bugs = bugs.Set{tt.bug: true}
			}
			res, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Err != nil {
				t.Fatalf("run failed: %v", res.Err)
			}
			v, err := res.Check(check.Options{Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(v.Line())
			if v.Pass != tt.wantPass {
				for i, vi := range v.Violations {
					if i < 5 {
						t.Log(vi.String())
					}
				}
				t.Errorf("verdict pass=%v, want %v", v.Pass, tt.wantPass)
			}
		})
	}
}
