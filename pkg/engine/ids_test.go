package engine

import (
	"fmt"
	"testing"
)

func TestIDsAreSortableHexAndIncreasing(t *testing.T) {
	var g idGen
	g.observe(fmt.Sprintf("%016x", uint64(1)<<62)) // a stored id from the future
	prev := ""
	for _, n := range []int{1, 3, 1000} {
		for _, id := range g.next(n) {
			if want := len("0000000000000000"); len(id) != want {
				t.Fatalf("id %q: length %d, want %d", id, len(id), want)
			}
			var v uint64
			if _, err := fmt.Sscanf(id, "%x", &v); err != nil || fmt.Sprintf("%016x", v) != id {
				t.Fatalf("id %q is not 16 lowercase hex digits", id)
			}
			if id <= prev {
				t.Fatalf("id %q after %q: not increasing", id, prev)
			}
			prev = id
		}
	}
}
