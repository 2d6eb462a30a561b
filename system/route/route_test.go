package route

import (
	"testing"
)

// Golden vectors: FNV-1a 64 of well-known strings. If these change, every
// deployed user moves to another slot.
func TestHashGolden(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
	}{
		{"", 0xcbf29ce484222325},
		{"a", 0xaf63dc4c8601ec8c},
		{"foobar", 0x85944171f73967e8},
		{"u1", 0x08c47b07b56747f3},
	}
	for _, c := range cases {
		if got := Hash(c.in); got != c.want {
			t.Errorf("Hash(%q) = %#x, want %#x", c.in, got, c.want)
		}
	}
}

func TestPick(t *testing.T) {
	key := "foobar" // home = 0x85944171f73967e8 % 3
	home := Home(key, 3)
	cases := []struct {
		name  string
		alive []bool
		want  int
		ok    bool
	}{
		{"all alive", []bool{true, true, true}, home, true},
		{"home dead", deadAt(3, home), (home + 1) % 3, true},
		{"home and next dead", deadAt(3, home, (home+1)%3), (home + 2) % 3, true},
		{"none alive", []bool{false, false, false}, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Pick(key, c.alive)
			if got != c.want || ok != c.ok {
				t.Fatalf("Pick = %d,%v, want %d,%v", got, ok, c.want, c.ok)
			}
		})
	}
}

func deadAt(n int, dead ...int) []bool {
	a := make([]bool, n)
	for i := range a {
		a[i] = true
	}
	for _, d := range dead {
		a[d] = false
	}
	return a
}

func TestNextWrapsInProbeOrder(t *testing.T) {
	alive := []bool{true, true, false, true}
	if got, _ := Next(1, 1, alive); got != 3 {
		t.Fatalf("Next(home 1, at 1) = %d, want 3 (2 is dead)", got)
	}
	if got, _ := Next(1, 3, alive); got != 0 {
		t.Fatalf("Next(home 1, at 3) = %d, want 0", got)
	}
	if got, _ := Next(1, 0, alive); got != 1 {
		t.Fatalf("Next(home 1, at 0) = %d, want 1 (back home)", got)
	}
}

// Moving only the dead slot's keys: with slot d dead, every key whose home is
// alive keeps its home, and every key of d goes to an alive slot.
func TestDeathMovesOnlyDeadSlotsKeys(t *testing.T) {
	n := 5
	for d := 0; d < n; d++ {
		alive := deadAt(n, d)
		moved := 0
		for i := 0; i < 2000; i++ {
			key := "user-" + string(rune('a'+i%26)) + itoa(i)
			home := Home(key, n)
			got, ok := Pick(key, alive)
			if !ok || !alive[got] {
				t.Fatalf("key %q: no alive pick", key)
			}
			if home != d && got != home {
				t.Fatalf("key %q with alive home %d moved to %d", key, home, got)
			}
			if home == d {
				moved++
			}
		}
		if moved == 0 {
			t.Fatalf("slot %d had no keys: test proves nothing", d)
		}
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func FuzzPick(f *testing.F) {
	f.Add("u1", uint8(3), uint16(0b101))
	f.Add("", uint8(1), uint16(1))
	f.Add("seller-42", uint8(16), uint16(0))
	f.Fuzz(func(t *testing.T, key string, n uint8, mask uint16) {
		if n == 0 || n > 16 {
			return
		}
		alive := make([]bool, n)
		any := false
		for i := range alive {
			alive[i] = mask&(1<<i) != 0
			any = any || alive[i]
		}
		s1, ok1 := Pick(key, alive)
		s2, ok2 := Pick(key, alive)
		if s1 != s2 || ok1 != ok2 {
			t.Fatalf("Pick not deterministic: %d,%v vs %d,%v", s1, ok1, s2, ok2)
		}
		if ok1 != any {
			t.Fatalf("Pick ok=%v with some alive=%v", ok1, any)
		}
		if ok1 && !alive[s1] {
			t.Fatalf("Pick chose dead slot %d", s1)
		}
		if home := Home(key, int(n)); alive[home] && s1 != home {
			t.Fatalf("home %d alive but key moved to %d", home, s1)
		}
	})
}
