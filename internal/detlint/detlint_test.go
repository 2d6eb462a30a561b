package detlint

import (
	"strings"
	"testing"
)

// The fixture package is full of leaks; the linter must find every one, and
// must respect the opt-out comment.
func TestFixtureFails(t *testing.T) {
	got, err := Dir("testdata/leaky")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"time.Now", "math/rand.Intn", "go statement", "select statement", "time.After", "crypto/rand.Read"}
	all := ""
	for _, f := range got {
		all += f.String() + "\n"
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("finding %q missing; got:\n%s", w, all)
		}
	}
	if strings.Contains(all, "allowed") || len(got) != len(want) {
		t.Errorf("got %d findings, want %d:\n%s", len(got), len(want), all)
	}
}
