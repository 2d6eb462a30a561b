package scenarios

import (
	"fmt"
	"slices"
	"strings"
)

// Expectation is the failure an expect: fail scenario exists to show.
type Expectation struct {
	// Promises must each be violated (DESIGN.md's numbers, 1..9).
	Promises []int `yaml:"promises,flow"`
	// Consequences are promises whose violation follows from the expected
	// one (a lost message whose seq is handed out again also breaks total
	// order): tolerated, never required.
	Consequences []int `yaml:"consequences,omitempty,flow"`
}

// promiseMax is the highest promise number (DESIGN.md section 1).
const promiseMax = 9

// Failure is one reason a run did not pass, with the promise it breaks
// (0 when it breaks none: a run error, an exercised counter that stayed
// zero, a counting check that is not a promise's).
type Failure struct {
	Promise int
	Reason  string
}

// Judgement is a run judged against what its scenario expects.
type Judgement struct {
	Pass bool
	// AsExpected: the run failed, and the scenario expected exactly that.
	AsExpected bool
	// Reasons say why it did not pass, one line each; for AsExpected they
	// list the expected failures seen.
	Reasons []string
}

// Judge decides a run from its failures, the same way in the simulator and
// the chaos harness:
//   - expect pass: the run passes when nothing failed;
//   - expect fail with no expect_violations: it passes when anything failed
//     (a reproducer written by the shrinker);
//   - expect fail with expect_violations: it passes when every expected
//     promise is broken and every failure is an expected promise or one of
//     its consequences.
func (s *Scenario) Judge(failures []Failure) Judgement {
	reasons := func(fs []Failure) []string {
		out := make([]string, 0, len(fs))
		for _, f := range fs {
			out = append(out, f.Reason)
		}
		return out
	}
	if s.Expect != Fail {
		return Judgement{Pass: len(failures) == 0, Reasons: reasons(failures)}
	}
	if len(failures) == 0 {
		return Judgement{Reasons: []string{"expected a failure, but the run passed"}}
	}
	e := s.ExpectViolations
	if e == nil {
		return Judgement{Pass: true, AsExpected: true, Reasons: reasons(failures)}
	}
	seen := map[int]bool{}
	var unexpected []Failure
	for _, f := range failures {
		seen[f.Promise] = true
		if f.Promise == 0 || !(slices.Contains(e.Promises, f.Promise) || slices.Contains(e.Consequences, f.Promise)) {
			unexpected = append(unexpected, f)
		}
	}
	var out []string
	for _, p := range e.Promises {
		if !seen[p] {
			out = append(out, fmt.Sprintf("expected a violation of promise %d, none seen", p))
		}
	}
	for _, f := range unexpected {
		out = append(out, "unexpected: "+f.Reason)
	}
	if len(out) > 0 {
		return Judgement{Reasons: out}
	}
	return Judgement{Pass: true, AsExpected: true, Reasons: reasons(failures)}
}

// Summary is the judgement in one line.
func (j Judgement) Summary() string {
	switch {
	case j.AsExpected:
		return "failed as expected: " + strings.Join(j.Reasons, "; ")
	case j.Pass:
		return "pass"
	}
	return strings.Join(j.Reasons, "; ")
}

func (s *Scenario) validateExpectation(bad badFunc) error {
	e := s.ExpectViolations
	if e == nil {
		return nil
	}
	if s.Expect != Fail {
		return bad("expect_violations", "expect_violations needs expect: fail")
	}
	if len(e.Promises) == 0 {
		return bad("expect_violations.promises", "expect_violations.promises is empty: name the promises the run must break")
	}
	for _, list := range []struct {
		key string
		ps  []int
	}{{"promises", e.Promises}, {"consequences", e.Consequences}} {
		for i, p := range list.ps {
			path := fmt.Sprintf("expect_violations.%s[%d]", list.key, i)
			if p < 1 || p > promiseMax {
				return bad(path, "promise %d, want 1..%d", p, promiseMax)
			}
			if slices.Contains(list.ps[:i], p) || (list.key == "consequences" && slices.Contains(e.Promises, p)) {
				return bad(path, "promise %d listed twice", p)
			}
		}
	}
	return nil
}
