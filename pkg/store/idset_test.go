package store

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// check fails unless s holds exactly want (sorted) and keeps its block
// invariants.
func check[K cmp.Ordered](t *testing.T, s *sortedSet[K], want []K) {
	t.Helper()
	var got []K
	var zero K
	for i, b := range s.blocks {
		if b.lo < 0 || b.hi > blockCap || b.lo >= b.hi {
			t.Fatalf("block %d: bad bounds [%d,%d)", i, b.lo, b.hi)
		}
		for j, k := range b.keys {
			if (j < b.lo || j >= b.hi) && k != zero {
				t.Fatalf("block %d: stale key %v in slot %d outside [%d,%d)", i, k, j, b.lo, b.hi)
			}
		}
		got = append(got, b.live()...)
	}
	if !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
		t.Fatalf("keys not strictly ascending: %v", got)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("set holds %d keys, want %d\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	if s.len() != len(want) {
		t.Fatalf("len = %d, want %d", s.len(), len(want))
	}
	// ascend from a few points agrees with the model.
	for _, from := range []int{0, len(want) / 3, len(want) - 1} {
		if from < 0 || from >= len(want) {
			continue
		}
		var asc []K
		s.ascend(want[from], func(k K) bool { asc = append(asc, k); return len(asc) < 700 })
		exp := want[from:min(len(want), from+700)]
		if !slices.Equal(asc, exp) {
			t.Fatalf("ascend(%v) = %d keys, want %d", want[from], len(asc), len(exp))
		}
	}
}

// model is a plain sorted slice to compare a sortedSet with.
type model[K cmp.Ordered] []K

func (m *model[K]) insert(k K) {
	if j, ok := slices.BinarySearch(*m, k); !ok {
		*m = slices.Insert(*m, j, k)
	}
}

func (m *model[K]) remove(k K) {
	if j, ok := slices.BinarySearch(*m, k); ok {
		*m = slices.Delete(*m, j, j+1)
	}
}

// TestSortedSet drives the set through the patterns of a task index and
// random ones, comparing with a sorted slice after every step.
func TestSortedSet(t *testing.T) {
	type op struct {
		insert bool
		k      uint64
	}
	patterns := map[string]func(r *rand.Rand) []op{
		"fifo": func(r *rand.Rand) []op {
			var ops []op
			next, head := uint64(1), uint64(1)
			for range 6000 {
				if r.IntN(3) > 0 {
					ops = append(ops, op{true, next})
					next++
				} else if head < next {
					ops = append(ops, op{false, head})
					head++
				}
			}
			return ops
		},
		"gap runs": func(r *rand.Rand) []op {
			// Batches created out of order: ascending runs into a gap.
			var ops []op
			for b := uint64(0); b < 20; b += 2 {
				for i := range uint64(700) {
					ops = append(ops, op{true, (b+1)*1000 + i})
				}
				for i := range uint64(700) {
					ops = append(ops, op{true, b*1000 + i})
				}
			}
			for range 3000 {
				ops = append(ops, op{false, uint64(r.IntN(21000))})
			}
			return ops
		},
		"descending": func(r *rand.Rand) []op {
			var ops []op
			for i := range uint64(1500) {
				ops = append(ops, op{true, 10_000 + i})
			}
			for i := range uint64(1500) {
				ops = append(ops, op{true, 5000 - i})
			}
			for i := range uint64(1500) {
				ops = append(ops, op{true, 9000 - i})
			}
			return ops
		},
		"interleaved": func(r *rand.Rand) []op {
			// Two workers finishing their chunks in turn.
			var ops []op
			for c := uint64(0); c < 6; c++ {
				for i := range uint64(500) {
					ops = append(ops, op{true, c*2000 + i}, op{true, c*2000 + 1000 + i})
				}
				for i := range uint64(500) {
					ops = append(ops, op{false, c*2000 + i})
					if r.IntN(2) == 0 {
						ops = append(ops, op{false, c*2000 + 1000 + i})
					}
				}
			}
			return ops
		},
		"random": func(r *rand.Rand) []op {
			var ops []op
			for range 8000 {
				ops = append(ops, op{r.IntN(3) > 0, uint64(r.IntN(3000))})
			}
			return ops
		},
		"edges": func(r *rand.Rand) []op {
			ops := []op{{false, 7}} // from an empty set
			for i := range uint64(3 * blockCap) {
				ops = append(ops, op{true, 2 * i}) // three full blocks
			}
			ops = append(ops, op{true, 2*blockCap - 1}) // between two full blocks
			for i := range uint64(blockCap) {
				ops = append(ops, op{false, 2 * (blockCap + i)}) // empty the middle one
			}
			return ops
		},
		"drain": func(r *rand.Rand) []op {
			var ops []op
			for i := range uint64(3000) {
				ops = append(ops, op{true, i})
			}
			for _, i := range r.Perm(3000) {
				ops = append(ops, op{false, uint64(i)})
			}
			return ops
		},
	}
	for name, gen := range patterns {
		t.Run(name, func(t *testing.T) {
			ops := gen(rand.New(rand.NewPCG(1, 2)))
			var nums sortedSet[uint64]
			var strs sortedSet[string]
			var mn model[uint64]
			var ms model[string]
			for i, o := range ops {
				id := fmt.Sprintf("%016x", o.k)
				if o.insert {
					nums.insert(o.k)
					strs.insert(id)
					mn.insert(o.k)
					ms.insert(id)
				} else {
					nums.remove(o.k)
					strs.remove(id)
					mn.remove(o.k)
					ms.remove(id)
				}
				if i%97 == 0 || i == len(ops)-1 {
					check(t, &nums, mn)
					check(t, &strs, ms)
				}
			}
		})
	}
}

func TestJanitorHeap(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h expiryHeap
	var want []expiryEntry
	for range 2000 {
		e := expiryEntry{at: int64(r.IntN(500)), id: fmt.Sprint(r.IntN(100))}
		h.push(e)
		want = append(want, e)
	}
	slices.SortFunc(want, func(a, b expiryEntry) int {
		if a.less(b) {
			return -1
		}
		if b.less(a) {
			return 1
		}
		return 0
	})
	for i, w := range want {
		if got := h.pop(); got != w {
			t.Fatalf("pop %d = %v, want %v", i, got, w)
		}
	}
	if len(h) != 0 {
		t.Fatalf("%d entries left", len(h))
	}
}
