package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zzim/zzim/scenarios"
)

// small is a scenario small enough to shrink in a test.
const small = `name: small
description: a few users, one crash
seed: 3
duration: 6s
quiet: 30s
topology:
  entry: 2
  logic: 3
  extlogic: 1
  das: 2
workload:
  users: 8
  conversations: 8
  rate: 10
faults:
  - at: 2s
    for: 2s
    what: crash
    target: logic-1
checks: [structural, linearizability]
`

func runZzim(args ...string) (string, error) {
	cmd := root()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestSimShrink: zzim sim shrink writes a smaller scenario carrying the
// bug switch that zzim sim run reproduces (exit status 1: a violation);
// a run that does not fail is refused with status 1 and no file.
func TestSimShrink(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "small.yaml")
	if err := os.WriteFile(in, []byte(small), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "shrunk.yaml")
	log, err := runZzim("sim", "shrink", in, "--seed", "3", "--bug", "logic-local-seq", "--out", out, "--quiet")
	if err != nil {
		t.Fatalf("shrink: %v\n%s", err, log)
	}
	t.Log(log)
	for _, want := range []string{"before: faults=1 clients(users)=8", "after:  faults=0", "runs: ", "zzim sim run " + out + " --seed 3"} {
		if !strings.Contains(log, want) {
			t.Errorf("output lacks %q:\n%s", want, log)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := scenarios.Parse(out, data)
	if err != nil {
		t.Fatalf("written scenario: %v\n%s", err, data)
	}
	if len(sc.Bugs) != 1 || sc.Bugs[0] != "logic-local-seq" || sc.Seed != 3 {
		t.Errorf("written scenario has bugs %v seed %d, want [logic-local-seq] 3", sc.Bugs, sc.Seed)
	}
	runLog, err := runZzim("sim", "run", out, "--seed", "3")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(runLog, "verdict=fail") {
		t.Errorf("zzim sim run %s: got %v, want a failing verdict (exit 1)\n%s", out, err, runLog)
	}

	none := filepath.Join(dir, "none.yaml")
	_, err = runZzim("sim", "shrink", in, "--seed", "3", "--out", none, "--quiet")
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("shrinking a passing run: got %v, want exit 1", err)
	}
	if _, statErr := os.Stat(none); statErr == nil {
		t.Errorf("shrinking a passing run wrote %s, want no file", none)
	}
}
