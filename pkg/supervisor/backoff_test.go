package supervisor

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}.withDefaults()
	for _, tc := range []struct {
		quick    int
		base     time.Duration // before jitter
		wantZero bool
	}{
		{quick: 0, wantZero: true},
		{quick: 1, wantZero: true}, // the first restart is immediate
		{quick: 2, base: 100 * time.Millisecond},
		{quick: 3, base: 200 * time.Millisecond},
		{quick: 4, base: 400 * time.Millisecond},
		{quick: 5, base: 800 * time.Millisecond},
		{quick: 6, base: time.Second}, // capped
		{quick: 50, base: time.Second},
	} {
		for range 200 {
			d := b.delay(tc.quick)
			if tc.wantZero {
				if d != 0 {
					t.Fatalf("delay(%d) = %v, want 0", tc.quick, d)
				}
				continue
			}
			lo, hi := tc.base*8/10, min(tc.base*12/10, b.Max)
			if d < lo || d > hi {
				t.Fatalf("delay(%d) = %v, want %v..%v", tc.quick, d, lo, hi)
			}
			if d > b.Max {
				t.Fatalf("delay(%d) = %v over Max %v", tc.quick, d, b.Max)
			}
		}
	}
}

func TestBackoffDefaults(t *testing.T) {
	b := Backoff{}.withDefaults()
	if b.Initial != 50*time.Millisecond || b.Max != 5*time.Second || b.MinUptime != time.Second {
		t.Fatalf("defaults %+v", b)
	}
	for range 1000 {
		if d := b.delay(100); d > b.Max {
			t.Fatalf("delay %v over Max %v", d, b.Max)
		}
	}
}
