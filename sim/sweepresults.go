package sim

// A sweep's machine-readable results, and the merge of a sweep split over
// machines (Shard). A results file is JSON lines: a SweepHeader saying what
// the whole sweep is and which shard wrote the file, then one SeedRecord
// per finished seed, written as it finishes (a shard killed half-way keeps
// what it did). Merging checks the shards against the header's range, so a
// lost shard shows as missing seeds, never as a pass.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Record kinds, the "kind" field of every results line.
const (
	kindHeader = "sweep"
	kindSeed   = "seed"
)

// Seed verdicts in a SeedRecord.
const (
	VerdictPass  = "pass"
	VerdictFail  = "fail"
	VerdictError = "error" // the run could not be set up or judged
)

// SweepHeader is the first line of a results file.
type SweepHeader struct {
	Kind string `json:"kind"` // "sweep"
	// Scenario is the argument the sweep was given (an embedded name or a
	// file), so replay commands work as printed; Name is the scenario's own.
	Scenario string `json:"scenario"`
	Name     string `json:"name"`
	// First..Last is the whole sweep's range, over every shard.
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
	Shard string `json:"shard"` // "K/N"
	Bugs  string `json:"bugs,omitempty"`
	// Checks is the --checks list as given ("" is the scenario's).
	Checks string `json:"checks,omitempty"`
	Swarm  bool   `json:"swarm,omitempty"`
}

// sameSweep reports whether two headers describe one sweep (shards aside).
func (h SweepHeader) sameSweep(o SweepHeader) bool {
	h.Shard, o.Shard = "", ""
	return h == o
}

// shard is the header's K/N.
func (h SweepHeader) shard() (Shard, error) { return ParseShard(h.Shard) }

// ReplayCommand is the command line that replays one seed of the sweep.
func (h SweepHeader) ReplayCommand(seed uint64) string {
	args := []string{"zzim", "sim", "run", shellQuote(h.Scenario), "--seed", strconv.FormatUint(seed, 10)}
	if h.Swarm {
		args = append(args, "--swarm")
	}
	if h.Bugs != "" {
		args = append(args, "--bug", shellQuote(h.Bugs))
	}
	if h.Checks != "" {
		args = append(args, "--checks", shellQuote(h.Checks))
	}
	return strings.Join(args, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./,:=+@%-]+$`)

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// SeedRecord is one seed's outcome.
type SeedRecord struct {
	Kind    string `json:"kind"` // "seed"
	Seed    uint64 `json:"seed"`
	Verdict string `json:"verdict"` // pass, fail or error
	// Line is the run's final line (verdict=... seed=... trace=...), or
	// the setup error for an error.
	Line    string   `json:"line"`
	Reasons []string `json:"reasons,omitempty"`
	// Expected: the run failed exactly as its scenario expects ("failed as
	// expected: ..."); the verdict is pass.
	Expected string `json:"expected_failure,omitempty"`
	// Swarm is the fault mix a swarm run drew.
	Swarm string `json:"swarm,omitempty"`
	// WallSeconds is the run and its checks, on the machine that ran it.
	WallSeconds float64 `json:"wall_seconds"`
}

// Failed reports whether the seed counts as a failure in a sweep's total.
func (r SeedRecord) Failed() bool { return r.Verdict != VerdictPass }

// wallField strips the one field of a verdict line that differs between two
// runs of one seed.
var wallField = regexp.MustCompile(` wall_seconds=[0-9.]+`)

// sameOutcome reports whether two records of one seed agree (wall time aside).
func (r SeedRecord) sameOutcome(o SeedRecord) bool {
	return r.Verdict == o.Verdict && wallField.ReplaceAllString(r.Line, "") == wallField.ReplaceAllString(o.Line, "")
}

// ResultsWriter writes a results file line by line.
type ResultsWriter struct {
	w   io.Writer
	err error
}

// NewResultsWriter writes the header at once.
func NewResultsWriter(w io.Writer, h SweepHeader) *ResultsWriter {
	h.Kind = kindHeader
	rw := &ResultsWriter{w: w}
	rw.line(h)
	return rw
}

// Write appends one seed's record; the first error sticks (Err).
func (rw *ResultsWriter) Write(r SeedRecord) {
	r.Kind = kindSeed
	rw.line(r)
}

func (rw *ResultsWriter) line(v any) {
	if rw.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err == nil {
		_, err = rw.w.Write(append(data, '\n'))
	}
	if err != nil {
		rw.err = fmt.Errorf("results: %w", err)
	}
}

// Err is the first write error.
func (rw *ResultsWriter) Err() error { return rw.err }

// ResultsFile is one read results file.
type ResultsFile struct {
	Name    string // where it was read from, for messages
	Header  SweepHeader
	Records []SeedRecord
	// Truncated: the last line was cut short (the shard was killed while
	// writing it) and was left out.
	Truncated bool
}

// resultsLineMax bounds one line of a results file.
const resultsLineMax = 4 << 20

// ReadResults reads a results file; name is only for messages.
func ReadResults(r io.Reader, name string) (*ResultsFile, error) {
	br := bufio.NewReaderSize(r, resultsLineMax)
	f := &ResultsFile{Name: name}
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, n, resultsLineMax)
		case err != nil && !errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		last := err != nil // io.EOF: no newline after this line
		if len(bytes.TrimSpace(line)) > 0 {
			if perr := f.parseLine(line, n); perr != nil {
				if last && n > 1 {
					f.Truncated = true
					return f, nil
				}
				return nil, perr
			}
		}
		if last {
			break
		}
	}
	if f.Header.Kind == "" {
		return nil, fmt.Errorf("%s: empty: not a sweep results file", name)
	}
	return f, nil
}

func (f *ResultsFile) parseLine(line []byte, n int) error {
	var kind struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(line, &kind); err != nil {
		return fmt.Errorf("%s:%d: %w", f.Name, n, err)
	}
	switch {
	case n == 1 && kind.Kind != kindHeader:
		return fmt.Errorf("%s:1: kind %q, want a %q header: not a sweep results file", f.Name, kind.Kind, kindHeader)
	case n == 1:
		if err := json.Unmarshal(line, &f.Header); err != nil {
			return fmt.Errorf("%s:1: %w", f.Name, err)
		}
		if _, err := f.Header.shard(); err != nil {
			return fmt.Errorf("%s:1: shard: %w", f.Name, err)
		}
		if f.Header.First == 0 || f.Header.Last < f.Header.First {
			return fmt.Errorf("%s:1: seed range %d-%d: want 1 <= first <= last", f.Name, f.Header.First, f.Header.Last)
		}
		return nil
	case kind.Kind != kindSeed:
		return fmt.Errorf("%s:%d: kind %q, want %q", f.Name, n, kind.Kind, kindSeed)
	}
	var r SeedRecord
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("%s:%d: %w", f.Name, n, err)
	}
	switch r.Verdict {
	case VerdictPass, VerdictFail, VerdictError:
	default:
		return fmt.Errorf("%s:%d: verdict %q, want pass, fail or error", f.Name, n, r.Verdict)
	}
	f.Records = append(f.Records, r)
	return nil
}

// MergedSweep is every shard's results put together.
type MergedSweep struct {
	Header  SweepHeader // Shard is "0/1": the whole range
	Records []SeedRecord
	// Missing are seeds of the range no file reported; MissingShards the
	// shards (K/N) no file came from at all.
	Missing       []uint64
	MissingShards []string
	// Overlap are seeds more than one file reported (counted once);
	// Conflicts those whose reports disagree (a different build, or a
	// broken determinism promise): they count as failures.
	Overlap   []uint64
	Conflicts []string
	// Truncated names files whose last line was cut short.
	Truncated []string
}

// Merge puts shard results together. Files must be of one sweep (same
// scenario, range, bugs, checks, swarm and shard count); a seed outside the
// range or outside its file's shard is an error.
func Merge(files []*ResultsFile) (*MergedSweep, error) {
	if len(files) == 0 {
		return nil, errors.New("merge: no results files")
	}
	first := files[0].Header
	whole, err := first.shard()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files[0].Name, err)
	}
	m := &MergedSweep{Header: first}
	m.Header.Shard = WholeRange.String()
	seen := map[int]bool{}
	bySeed := map[uint64]SeedRecord{}
	overlap := map[uint64]bool{}
	for _, f := range files {
		if !f.Header.sameSweep(first) {
			return nil, fmt.Errorf("merge: %s is not the sweep %s is (%s vs %s): merge one sweep at a time",
				f.Name, files[0].Name, describe(f.Header), describe(first))
		}
		sh, err := f.Header.shard()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name, err)
		}
		if sh.Count != whole.Count {
			return nil, fmt.Errorf("merge: %s is shard %s, %s is of %d shards: merge one split at a time",
				f.Name, sh, files[0].Name, whole.Count)
		}
		seen[sh.Index] = true
		if f.Truncated {
			m.Truncated = append(m.Truncated, f.Name)
		}
		for _, r := range f.Records {
			if r.Seed < first.First || r.Seed > first.Last || !sh.Owns(r.Seed-first.First) {
				return nil, fmt.Errorf("merge: %s: seed %d is not shard %s's of %d-%d", f.Name, r.Seed, sh, first.First, first.Last)
			}
			prev, dup := bySeed[r.Seed]
			if !dup {
				bySeed[r.Seed] = r
				continue
			}
			overlap[r.Seed] = true
			if !prev.sameOutcome(r) {
				m.Conflicts = append(m.Conflicts, fmt.Sprintf("seed %d: %q vs %q", r.Seed, prev.Line, r.Line))
				prev.Verdict = VerdictError
				prev.Reasons = append(prev.Reasons, "two results disagree: "+r.Line)
				bySeed[r.Seed] = prev
			}
		}
	}
	for k := 0; k < whole.Count; k++ {
		if !seen[k] {
			m.MissingShards = append(m.MissingShards, Shard{Index: k, Count: whole.Count}.String())
		}
	}
	for seed := first.First; seed <= first.Last && seed >= first.First; seed++ {
		if r, ok := bySeed[seed]; ok {
			m.Records = append(m.Records, r)
		} else {
			m.Missing = append(m.Missing, seed)
		}
	}
	for seed := range overlap {
		m.Overlap = append(m.Overlap, seed)
	}
	slices.Sort(m.Overlap)
	return m, nil
}

func describe(h SweepHeader) string {
	s := fmt.Sprintf("%s seeds %d-%d", h.Scenario, h.First, h.Last)
	if h.Bugs != "" {
		s += " --bug " + h.Bugs
	}
	if h.Checks != "" {
		s += " --checks " + h.Checks
	}
	if h.Swarm {
		s += " --swarm"
	}
	return s
}

// Totals are a sweep's final-line figures.
type Totals struct {
	Seeds, Failed int
	FirstFailure  uint64 // 0: none
}

// TotalsOf counts records the way a sweep does: an error is a failure.
func TotalsOf(records []SeedRecord) Totals {
	t := Totals{Seeds: len(records)}
	for _, r := range records {
		if r.Failed() {
			t.Failed++
			if t.FirstFailure == 0 || r.Seed < t.FirstFailure {
				t.FirstFailure = r.Seed
			}
		}
	}
	return t
}

// String is the last line a sweep prints.
func (t Totals) String() string {
	first := "none"
	if t.FirstFailure != 0 {
		first = strconv.FormatUint(t.FirstFailure, 10)
	}
	return fmt.Sprintf("seeds=%d failed=%d first_failure=%s", t.Seeds, t.Failed, first)
}

// SeedRanges writes seeds compactly: 1-4,7,9-10.
func SeedRanges(seeds []uint64) string {
	var parts []string
	for i := 0; i < len(seeds); {
		j := i
		for j+1 < len(seeds) && seeds[j+1] == seeds[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.FormatUint(seeds[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", seeds[i], seeds[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// JUnit XML, the report format CI systems (GitHub Actions reporters,
// GitLab, Jenkins, Buildkite) show as test cases: one case per seed.
type (
	JUnitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []JUnitSuite `xml:"testsuite"`
	}
	JUnitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Properties []JUnitProperty `xml:"properties>property"`
		Cases      []JUnitCase     `xml:"testcase"`
	}
	JUnitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	JUnitCase struct {
		Name      string        `xml:"name,attr"`
		Classname string        `xml:"classname,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *JUnitProblem `xml:"failure,omitempty"`
		Error     *JUnitProblem `xml:"error,omitempty"`
		SystemOut string        `xml:"system-out,omitempty"`
	}
	// JUnitProblem: Message is the one line CI shows; Body the detail.
	JUnitProblem struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr"`
		Body    string `xml:",cdata"`
	}
)

// JUnitCaseName names a seed's case so the replay is obvious:
// SCENARIO/seed=N.
func JUnitCaseName(scenario string, seed uint64) string {
	return fmt.Sprintf("%s/seed=%d", scenario, seed)
}

// JUnit builds the report of a sweep: a case per record, and an error case
// per seed in missing (not run: interrupted, or its shard lost).
func JUnit(h SweepHeader, records []SeedRecord, missing []uint64, missingWhy string) *JUnitSuites {
	suite := JUnitSuite{Name: h.Name, Properties: []JUnitProperty{
		{"scenario", h.Scenario}, {"seeds", fmt.Sprintf("%d-%d", h.First, h.Last)}, {"shard", h.Shard},
		{"bugs", h.Bugs}, {"checks", h.Checks}, {"swarm", strconv.FormatBool(h.Swarm)},
	}}
	class := "zzim.sim." + h.Name
	type seedCase struct {
		seed uint64
		c    JUnitCase
	}
	var cases []seedCase
	var total float64
	for _, r := range records {
		c := JUnitCase{Name: JUnitCaseName(h.Name, r.Seed), Classname: class, Time: seconds(r.WallSeconds)}
		total += r.WallSeconds
		body := "replay: " + h.ReplayCommand(r.Seed) + "\n"
		if r.Swarm != "" {
			c.SystemOut = "swarm: " + r.Swarm + "\n"
			body += "swarm: " + r.Swarm + "\n"
		}
		for _, reason := range r.Reasons {
			body += "fail: " + reason + "\n"
		}
		if r.Expected != "" {
			// A passing case: the expected failure goes to its output.
			c.SystemOut += r.Expected + "\n"
		}
		switch r.Verdict {
		case VerdictFail:
			c.Failure = &JUnitProblem{Message: r.Line, Type: "verdict", Body: body}
			suite.Failures++
		case VerdictError:
			c.Error = &JUnitProblem{Message: r.Line, Type: "setup", Body: body}
			suite.Errors++
		}
		cases = append(cases, seedCase{r.Seed, c})
	}
	for _, seed := range missing {
		cases = append(cases, seedCase{seed, JUnitCase{Name: JUnitCaseName(h.Name, seed), Classname: class, Time: seconds(0),
			Error: &JUnitProblem{Message: fmt.Sprintf("seed=%d no result: %s", seed, missingWhy), Type: "missing",
				Body: "run it with: " + h.ReplayCommand(seed) + "\n"}}})
		suite.Errors++
	}
	sort.SliceStable(cases, func(i, j int) bool { return cases[i].seed < cases[j].seed })
	for _, sc := range cases {
		suite.Cases = append(suite.Cases, sc.c)
	}
	suite.Tests = len(suite.Cases)
	suite.Time = seconds(total)
	return &JUnitSuites{Name: "zzim sim sweep " + h.Name, Tests: suite.Tests, Failures: suite.Failures,
		Errors: suite.Errors, Time: suite.Time, Suites: []JUnitSuite{suite}}
}

// seconds formats a JUnit time: decimal seconds, never an exponent.
func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 3, 64) }

// WriteJUnit writes the report as an XML document.
func WriteJUnit(w io.Writer, s *JUnitSuites) error {
	data, err := xml.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("junit: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s%s\n", xml.Header, data)
	return err
}
