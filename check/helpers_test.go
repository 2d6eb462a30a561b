package check_test

import (
	"os"
	"strings"
	"testing"
)

func assertFileContains(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), want) {
		t.Fatalf("got %s without %q, want it annotated", path, want)
	}
}
