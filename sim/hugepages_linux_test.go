//go:build linux

package sim

import "testing"

func TestAnonRWMapping(t *testing.T) {
	cases := []struct {
		line   string
		lo, hi uintptr
		ok     bool
	}{
		{"35d09800000-35d4a000000 rw-p 00000000 00:00 0 ", 0x35d09800000, 0x35d4a000000, true},
		{"7fdcd7400000-7fdce7aba000 ---p 00000000 00:00 0 ", 0, 0, false},                     // reserved, not mapped
		{"5616072e5000-5616072e7000 rw-p 00000000 fe:00 247278   /usr/bin/head", 0, 0, false}, // a file's data
		{"7ffd1c5e1000-7ffd1c602000 rw-p 00000000 00:00 0                          [stack]", 0, 0, false},
		{"7f0000000000-7f0000400000 rw-p 00000000 00:00 0   [anon:Go: heap]", 0x7f0000000000, 0x7f0000400000, true},
		{"nonsense", 0, 0, false},
	}
	for _, c := range cases {
		lo, hi, ok := anonRWMapping([]byte(c.line))
		if lo != c.lo || hi != c.hi || ok != c.ok {
			t.Errorf("%q: %x-%x %v, want %x-%x %v", c.line, lo, hi, ok, c.lo, c.hi, c.ok)
		}
	}
}
