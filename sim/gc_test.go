package sim

import "testing"

func TestMemoryOf(t *testing.T) {
	const meminfo = "MemTotal:       24684544 kB\nMemFree:        1000 kB\n"
	for _, tc := range []struct {
		name, meminfo, cgroup string
		want                  int64
	}{
		{"machine", meminfo, "max\n", 24684544 * 1024},
		{"cgroup lower", meminfo, "8589934592\n", 8 << 30},
		{"cgroup higher", meminfo, "99999999999999\n", 24684544 * 1024},
		{"cgroup only", "", "1073741824", 1 << 30},
		{"nothing known", "", "", 0},
		{"garbage", "MemTotal: lots kB\n", "none", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := memoryOf(tc.meminfo, tc.cgroup); got != tc.want {
				t.Errorf("memoryOf: got %d, want %d", got, tc.want)
			}
		})
	}
}
