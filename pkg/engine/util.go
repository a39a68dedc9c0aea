package engine

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// slotForKey maps a key onto a slot: the same key, the same slot, for as
// long as the slot count stays the same.
func slotForKey(key string, slots int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(slots))
}
