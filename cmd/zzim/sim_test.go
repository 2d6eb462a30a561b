package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// tinyScenario runs in well under a second.
const tinyScenario = `name: tiny
description: a few users, one logic crash
seed: 5
duration: 8s
quiet: 30s
liveness_bound: 20s
topology:
  entry: 2
  httpentry: 1
  logic: 3
  extlogic: 1
  das: 2
workload:
  users: 10
  conversations: 10
  rate: 10
faults:
  - at: 2s
    for: 3s
    what: crash
    target: logic-1
checks: [structural, linearizability, liveness]
exercised: [users_remapped]
`

// runSim runs the zzim command in-process: stdout, stderr and the exit
// status main would use.
func runSim(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := root()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	var ee *exitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.code
	default:
		code = 2
	}
	return out.String(), errOut.String(), code
}

func tinyFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tiny.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

var verdictLine = regexp.MustCompile(`^verdict=(pass|fail|skipped) seed=(\d+) trace=[0-9a-f]{16} events=\d+ sim_seconds=[0-9.]+ wall_seconds=[0-9.]+$`)

func TestSimRunExitCodes(t *testing.T) {
	file := tinyFile(t, tinyScenario)
	noCounter := tinyFile(t, strings.Replace(tinyScenario, "exercised: [users_remapped]", "exercised: [unknown_resolved_by_dedup]", 1))
	tests := []struct {
		name     string
		args     []string
		wantCode int
		// wantVerdict is the final line's verdict ("" for usage errors: no line).
		wantVerdict string
		wantOut     string
	}{
		{"pass", []string{"sim", "run", file, "--seed", "7"}, 0, "pass", "* users_remapped"},
		{"bug caught", []string{"sim", "run", file, "--bug", "logic-local-seq"}, 1, "fail", "promise"},
		{"required counter zero", []string{"sim", "run", noCounter}, 1, "fail", "unknown_resolved_by_dedup stayed zero"},
		{"swarm", []string{"sim", "run", file, "--swarm", "--seed", "3"}, -1, "", "seed=3 swarm: "},
		{"unknown scenario", []string{"sim", "run", "no-such-scenario"}, 2, "", ""},
		{"bad bug", []string{"sim", "run", file, "--bug", "nope"}, 2, "", ""},
		{"bad checks", []string{"sim", "run", file, "--checks", "vibes"}, 2, "", ""},
		{"no argument", []string{"sim", "run"}, 2, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runSim(t, tt.args...)
			if tt.wantCode >= 0 && code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errOut)
			}
			if tt.wantOut != "" && !strings.Contains(out, tt.wantOut) {
				t.Errorf("output lacks %q:\n%s", tt.wantOut, out)
			}
			if code == 2 {
				if verdictLine.MatchString(lastLine(out)) {
					t.Errorf("usage error printed a verdict line: %q", lastLine(out))
				}
				return
			}
			m := verdictLine.FindStringSubmatch(lastLine(out))
			if m == nil {
				t.Fatalf("last line %q, want a verdict line", lastLine(out))
			}
			if tt.wantVerdict != "" && m[1] != tt.wantVerdict {
				t.Errorf("verdict %s, want %s", m[1], tt.wantVerdict)
			}
			if n := strings.Count(out, "\nverdict="); n != 1 {
				t.Errorf("%d verdict lines, want exactly 1", n)
			}
		})
	}
}

// TestSimRunReplays: one seed twice gives one verdict line (same trace).
func TestSimRunReplays(t *testing.T) {
	file := tinyFile(t, tinyScenario)
	trace := regexp.MustCompile(`trace=[0-9a-f]+`)
	a, _, _ := runSim(t, "sim", "run", file, "--seed", "9")
	b, _, _ := runSim(t, "sim", "run", file, "--seed", "9")
	if ta, tb := trace.FindString(lastLine(a)), trace.FindString(lastLine(b)); ta == "" || ta != tb {
		t.Errorf("seed 9 twice: got %q and %q, want one trace", ta, tb)
	}
}

func TestSimRunOutAndJSON(t *testing.T) {
	file := tinyFile(t, tinyScenario)
	dir := t.TempDir()
	out, errOut, code := runSim(t, "sim", "run", file, "--out", dir, "--json", "--bug", "logic-local-seq")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want a JSON object and the verdict line:\n%s", len(lines), out)
	}
	var summary jsonSummary
	if err := json.Unmarshal([]byte(lines[0]), &summary); err != nil {
		t.Fatalf("JSON summary: %v", err)
	}
	if summary.Verdict != "fail" || summary.Check == nil || summary.Check.Counts.Ops == 0 {
		t.Errorf("summary verdict %q check %+v, want fail with ops counted", summary.Verdict, summary.Check)
	}
	for _, name := range []string{"history.jsonl", "store.jsonl", "faults.jsonl", "trace", "scenario.yaml", "report.txt"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (size %v), want a non-empty file", name, err, st)
		}
	}
	// The written scenario replays the run: same seed, same bugs, same trace.
	replay, _, code := runSim(t, "sim", "run", filepath.Join(dir, "scenario.yaml"))
	noWall := func(s string) string { return strings.SplitN(lastLine(s), " wall_seconds=", 2)[0] }
	if code != 1 || noWall(replay) != noWall(out) {
		t.Errorf("replay: exit %d, line %q, want 1 and %q (wall time aside)", code, lastLine(replay), lastLine(out))
	}
}

func TestSimSweep(t *testing.T) {
	file := tinyFile(t, tinyScenario)
	final := regexp.MustCompile(`^seeds=(\d+) failed=(\d+) first_failure=(\S+)$`)
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantFinal string
	}{
		{"pass", []string{"sim", "sweep", file, "--seeds", "1-3", "--jobs", "2"}, 0, "seeds=3 failed=0 first_failure=none"},
		{"bug", []string{"sim", "sweep", file, "--seeds", "4-5", "--bug", "logic-local-seq"}, 1, "seeds=2 failed=2 first_failure=4"},
		{"swarm", []string{"sim", "sweep", file, "--seeds", "2", "--swarm"}, -1, ""},
		{"bad seeds", []string{"sim", "sweep", file, "--seeds", "5-1"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runSim(t, tt.args...)
			if tt.wantCode >= 0 && code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tt.wantCode, out, errOut)
			}
			if code == 2 {
				return
			}
			if !final.MatchString(lastLine(out)) {
				t.Fatalf("last line %q, want seeds=N failed=F first_failure=SEED", lastLine(out))
			}
			if tt.wantFinal != "" && lastLine(out) != tt.wantFinal {
				t.Errorf("got %q, want %q", lastLine(out), tt.wantFinal)
			}
			if !strings.Contains(errOut, "seeds ") || !strings.Contains(errOut, "rate=") {
				t.Errorf("stderr lacks the progress line: %q", errOut)
			}
			if tt.name == "swarm" && !strings.Contains(out, "seed=2 swarm: ") {
				t.Errorf("swarm sweep does not print the seed's mix:\n%s", out)
			}
		})
	}
}

func TestScenariosList(t *testing.T) {
	out, _, code := runSim(t, "scenarios")
	if code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
	for _, name := range []string{"logic-failover", "bench-standard", "login-storm"} {
		if !strings.Contains(out, name+" ") {
			t.Errorf("scenarios lacks %s:\n%s", name, out)
		}
	}
}

func TestParseSeeds(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"1-200", 200, false}, {"7", 1, false}, {"3-3", 1, false},
		{"0-5", 0, true}, {"5-1", 0, true}, {"a-b", 0, true}, {"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSeeds(tt.in)
		if (err != nil) != tt.wantErr || len(got) != tt.want {
			t.Errorf("parseSeeds(%q): got %d seeds, err %v; want %d, err %v", tt.in, len(got), err, tt.want, tt.wantErr)
		}
	}
}
