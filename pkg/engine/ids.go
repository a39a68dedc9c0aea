package engine

import (
	"fmt"
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
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%016x", now+uint64(i))
	}
	g.last = now + uint64(n) - 1
	return out
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
