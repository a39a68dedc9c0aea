package engine

import (
	"strconv"
	"sync"
	"time"
)

// idGen makes task ids: 16 hex digits of a strictly increasing number
// seeded from the clock in nanoseconds, so ids sort by creation and do not
// repeat across master restarts.
type idGen struct {
	mu   sync.Mutex
	last uint64
}

func (g *idGen) next(n int) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := uint64(time.Now().UnixNano())
	if now <= g.last {
		now = g.last + 1
	}
	g.last = now + uint64(n) - 1
	// One buffer for the whole batch, sliced into strings: one allocation
	// instead of one per id.
	const width = 16
	buf := make([]byte, n*width)
	for i := range n {
		putHex(buf[i*width:(i+1)*width], now+uint64(i))
	}
	all := string(buf)
	out := make([]string, n)
	for i := range out {
		out[i] = all[i*width : (i+1)*width]
	}
	return out
}

// putHex writes v as len(dst) lowercase hex digits, zero-padded.
func putHex(dst []byte, v uint64) {
	const digits = "0123456789abcdef"
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = digits[v&0xf]
		v >>= 4
	}
}

// observe moves the generator past an id seen in the store.
func (g *idGen) observe(id string) {
	v, err := strconv.ParseUint(id, 16, 64)
	if err != nil {
		return
	}
	g.mu.Lock()
	if v > g.last {
		g.last = v
	}
	g.mu.Unlock()
}
