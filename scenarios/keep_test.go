package scenarios

import (
	"reflect"
	"strings"
	"testing"
)

// TestKeepLists: keep_users and keep_conversations parse, survive Marshal,
// and out-of-range or repeated indices are refused with their line.
func TestKeepLists(t *testing.T) {
	withKeep := func(keep string) string {
		return strings.Replace(valid, "  rate: 3\n", "  rate: 3\n"+keep, 1)
	}
	s, err := Parse("t.yaml", []byte(withKeep("  keep_users: [1, 7]\n  keep_conversations: [0, 3]\n")))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := s.Workload.KeepUsers, []int{1, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("keep_users %v, want %v", got, want)
	}
	if got, want := s.Workload.KeepConversations, []int{0, 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("keep_conversations %v, want %v", got, want)
	}
	data, err := Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("t.yaml", data)
	if err != nil {
		t.Fatalf("Parse(Marshal): %v\n%s", err, data)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("round trip differs:\n%s", data)
	}
	bad := []struct{ keep, want string }{
		{"  keep_users: [10]\n", "t.yaml:12: workload.keep_users index 10, want 0..9"},
		{"  keep_users: [2, 2]\n", "t.yaml:12: workload.keep_users index 2 listed twice"},
		{"  keep_conversations: [-1]\n", "t.yaml:12: workload.keep_conversations index -1"},
	}
	for _, b := range bad {
		_, err := Parse("t.yaml", []byte(withKeep(b.keep)))
		if err == nil || !strings.HasPrefix(err.Error(), b.want) {
			t.Errorf("%q: got error %v, want one starting %q", b.keep, err, b.want)
		}
	}
}
