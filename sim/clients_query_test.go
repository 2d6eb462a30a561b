package sim

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
)

// TestSplitQueryMatchesParseQuery: the direct parser gives what
// url.ParseQuery (first value per key; nothing on any error) gives.
func TestSplitQueryMatchesParseQuery(t *testing.T) {
	reference := func(path string) (string, map[string]string) {
		i := strings.IndexByte(path, '?')
		if i < 0 {
			return path, nil
		}
		vals, err := url.ParseQuery(path[i+1:])
		if err != nil {
			return path[:i], nil
		}
		q := make(map[string]string, len(vals))
		for k, v := range vals {
			if len(v) > 0 {
				q[k] = v[0]
			}
		}
		return path[:i], q
	}
	for _, path := range []string{
		"/v1/convs",
		"/v1/convs?",
		"/v1/convs?limit=50",
		"/v1/sync?after_seq=3&conv_id=p%3Au1%3Au2%3Al1&limit=100",
		"/v1/sync?a=1&a=2&b",
		"/v1/sync?a=1&&b=+x+",
		"/v1/sync?=v&k=",
		"/v1/sync?a=1;b=2",
		"/v1/sync?a=%zz&b=2",
		"/v1/sync?a=1?b=2",
	} {
		t.Run(path, func(t *testing.T) {
			gotPath, got := splitQuery(path)
			wantPath, want := reference(path)
			if gotPath != wantPath || !reflect.DeepEqual(got, want) {
				t.Errorf("got %q %v, want %q %v", gotPath, got, wantPath, want)
			}
		})
	}
}
