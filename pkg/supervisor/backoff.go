package supervisor

import (
	"math/rand/v2"
	"time"
)

// Backoff says how long a slot waits before forking again.
type Backoff struct {
	// Initial is the delay after the second quick death in a row (the first
	// restart is immediate). Default 50ms.
	Initial time.Duration
	// Max caps the delay. Default 5s.
	Max time.Duration
	// MinUptime: a worker that lived at least this long before dying
	// resets the backoff. Default 1s.
	MinUptime time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = 50 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Second
	}
	if b.MinUptime <= 0 {
		b.MinUptime = time.Second
	}
	return b
}

// delay returns the wait before the next fork after quick quick deaths in
// a row: 0, then Initial doubling up to Max, with ±20% jitter, never
// more than Max.
func (b Backoff) delay(quick int) time.Duration {
	if quick <= 1 {
		return 0
	}
	d := b.Initial
	for i := 2; i < quick && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	jitter := 0.8 + 0.4*rand.Float64()
	return min(time.Duration(float64(d)*jitter), b.Max)
}
