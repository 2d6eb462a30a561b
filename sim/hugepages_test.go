package sim

import "testing"

func TestTHPMode(t *testing.T) {
	for in, want := range map[string]string{
		"always [madvise] never\n": "madvise",
		"[always] madvise never\n": "always",
		"always madvise [never]\n": "never",
		"":                         "",
		"garbage]":                 "",
	} {
		if got := thpMode(in); got != want {
			t.Errorf("thpMode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTHPDisabledByGODEBUG(t *testing.T) {
	for in, want := range map[string]bool{
		"":                            false,
		"disablethp=1":                true,
		"madvdontneed=1,disablethp=1": true,
		"disablethp=0":                false,
	} {
		if got := thpDisabledByGODEBUG(in); got != want {
			t.Errorf("thpDisabledByGODEBUG(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHugePagePreGrow(t *testing.T) {
	if got := hugePagePreGrow(0); got != 1<<30 {
		t.Errorf("unknown memory: %d, want 1 GiB", got)
	}
	if got := hugePagePreGrow(4 << 30); got != 1<<30 {
		t.Errorf("4 GiB machine: %d, want a quarter", got)
	}
	if got := hugePagePreGrow(64 << 30); got != 4<<30 {
		t.Errorf("64 GiB machine: %d, want the 4 GiB cap", got)
	}
}
