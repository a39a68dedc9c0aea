package store

import (
	"cmp"
	"slices"
)

// blockCap is the most keys one block of a sortedSet holds.
const blockCap = 512

// block holds sorted keys in keys[lo:hi]; every other slot is the zero
// value (so that dropped strings can be collected). Room on both sides
// makes the usual moves of a task index cheap: removing the oldest key
// (FIFO dispatch) and appending the newest need no copying, and an insert
// or removal elsewhere shifts the shorter side.
type block[K cmp.Ordered] struct {
	lo, hi int
	keys   [blockCap]K
}

func (b *block[K]) len() int  { return b.hi - b.lo }
func (b *block[K]) first() K  { return b.keys[b.lo] }
func (b *block[K]) last() K   { return b.keys[b.hi-1] }
func (b *block[K]) live() []K { return b.keys[b.lo:b.hi] }

// newBlock returns a block holding only k, in slot at.
func newBlock[K cmp.Ordered](k K, at int) *block[K] {
	b := &block[K]{lo: at, hi: at + 1}
	b.keys[at] = k
	return b
}

// search is the position of k in keys (sorted), or where it would go.
// Unlike slices.BinarySearch it compares with < only (no NaN checks,
// which cost a string comparison each).
func search[K cmp.Ordered](keys []K, k K) (int, bool) {
	lo, hi := 0, len(keys)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if keys[m] < k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(keys) && keys[lo] == k
}

// moveTo shifts the live keys to start at slot lo and zeroes the slots
// they left.
func (b *block[K]) moveTo(lo int) {
	n := b.len()
	copy(b.keys[lo:lo+n], b.live())
	if lo < b.lo {
		clear(b.keys[max(lo+n, b.lo):b.hi])
	} else {
		clear(b.keys[b.lo:min(lo, b.hi)])
	}
	b.lo, b.hi = lo, lo+n
}

// insertAt puts k at position j of a block that is not full, shifting
// the shorter side; a side with no room first gets half the free slots.
func (b *block[K]) insertAt(j int, k K) {
	n := b.len()
	free := blockCap - n
	if j < n-j {
		if b.lo == 0 {
			b.moveTo((free + 1) / 2)
		}
		copy(b.keys[b.lo-1:], b.keys[b.lo:b.lo+j])
		b.lo--
	} else {
		if b.hi == blockCap {
			b.moveTo(free / 2)
		}
		copy(b.keys[b.lo+j+1:b.hi+1], b.keys[b.lo+j:b.hi])
		b.hi++
	}
	b.keys[b.lo+j] = k
}

// removeAt drops the key at position j, shifting the shorter side.
func (b *block[K]) removeAt(j int) {
	var zero K
	if n := b.len(); j < n-j {
		copy(b.keys[b.lo+1:b.lo+j+1], b.keys[b.lo:b.lo+j])
		b.keys[b.lo] = zero
		b.lo++
	} else {
		copy(b.keys[b.lo+j:b.hi-1], b.keys[b.lo+j+1:b.hi])
		b.hi--
		b.keys[b.hi] = zero
	}
}

// sortedSet is an ordered set of keys for the memory store's state
// indexes: a sorted list of non-empty sorted blocks. Keys mostly arrive
// ascending and leave oldest first, which both cost O(1) here.
type sortedSet[K cmp.Ordered] struct {
	blocks []*block[K] // blocks[i].last() < blocks[i+1].first()
}

// find is the index of the block k belongs in: the last block whose first
// key is <= k, or 0. The set must not be empty.
func (s *sortedSet[K]) find(k K) int {
	lo, hi := 0, len(s.blocks)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k < s.blocks[m].first() {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return max(lo-1, 0)
}

// insert adds k.
func (s *sortedSet[K]) insert(k K) {
	nb := len(s.blocks)
	if nb == 0 || s.blocks[nb-1].last() < k {
		// Past the end: new tasks, the common case.
		if nb > 0 {
			if b := s.blocks[nb-1]; b.hi < blockCap {
				b.keys[b.hi] = k
				b.hi++
				return
			}
		}
		s.blocks = append(s.blocks, newBlock(k, 0))
		return
	}
	bi := s.find(k)
	b := s.blocks[bi]
	j, found := search(b.live(), k)
	if found {
		return
	}
	n := b.len()
	if n < blockCap {
		b.insertAt(j, k)
		return
	}
	if j == n {
		// After a full block (not the last one): the front of the next
		// block if it has room there, else a block of its own with room
		// on both sides for the keys that may follow into the same gap.
		if next := s.blocks[bi+1]; next.lo > 0 {
			next.lo--
			next.keys[next.lo] = k
			return
		}
		s.blocks = slices.Insert(s.blocks, bi+1, newBlock(k, blockCap/2))
		return
	}
	// Split the full block. At j when neither part is small, so that a
	// run of ascending keys into one gap appends to the left part;
	// else in half.
	at := j
	if min(j, n-j) < blockCap/8 {
		at = n / 2
	}
	right := &block[K]{lo: blockCap - (n - at), hi: blockCap}
	copy(right.keys[right.lo:], b.keys[b.lo+at:b.hi])
	clear(b.keys[b.lo+at : b.hi])
	b.hi = b.lo + at
	s.blocks = slices.Insert(s.blocks, bi+1, right)
	if j <= at {
		b.insertAt(j, k)
	} else {
		right.insertAt(j-at, k)
	}
}

// remove deletes k if present.
func (s *sortedSet[K]) remove(k K) {
	if len(s.blocks) == 0 {
		return
	}
	bi := 0
	if b := s.blocks[0]; b.first() == k {
		// The oldest key: FIFO dispatch, the common case.
		b.keys[b.lo] = *new(K)
		b.lo++
	} else {
		bi = s.find(k)
		b = s.blocks[bi]
		j, found := search(b.live(), k)
		if !found {
			return
		}
		b.removeAt(j)
	}
	b := s.blocks[bi]
	switch n := b.len(); {
	case n == 0 && bi == 0:
		// Drop from the front without moving the other pointers.
		s.blocks[0] = nil
		s.blocks = s.blocks[1:]
	case n == 0:
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
	case n < blockCap/4 && bi+1 < len(s.blocks) && n+s.blocks[bi+1].len() <= blockCap:
		// Merge a sparse block with its successor so that removals do
		// not leave a long list of tiny blocks.
		next := s.blocks[bi+1]
		b.moveTo(0)
		copy(b.keys[n:], next.live())
		b.hi = n + next.len()
		s.blocks = slices.Delete(s.blocks, bi+1, bi+2)
	}
}

// ascend calls yield for the keys >= from in ascending order until it
// returns false.
func (s *sortedSet[K]) ascend(from K, yield func(K) bool) {
	bi, _ := slices.BinarySearchFunc(s.blocks, from, func(b *block[K], k K) int {
		return cmp.Compare(b.last(), k)
	})
	for ; bi < len(s.blocks); bi++ {
		b := s.blocks[bi]
		j, _ := search(b.live(), from)
		for _, k := range b.keys[b.lo+j : b.hi] {
			if !yield(k) {
				return
			}
		}
	}
}

// len is the number of keys (for tests).
func (s *sortedSet[K]) len() int {
	n := 0
	for _, b := range s.blocks {
		n += b.len()
	}
	return n
}

// expiryEntry says that task id became terminal with FinishedAt at (Unix
// nanos). Entries are not removed when the task changes again; the janitor
// checks each against the task when it comes due.
type expiryEntry struct {
	at int64
	id string
}

func (e expiryEntry) less(o expiryEntry) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.id < o.id
}

// expiryHeap is a min-heap of expiry entries, oldest first. Its own push
// and pop (not container/heap) avoid boxing an entry per push.
type expiryHeap []expiryEntry

func (h *expiryHeap) push(e expiryEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *expiryHeap) pop() expiryEntry {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = expiryEntry{}
	s = s[:n]
	for i := 0; ; {
		m := i
		if l := 2*i + 1; l < n && s[l].less(s[m]) {
			m = l
		}
		if r := 2*i + 2; r < n && s[r].less(s[m]) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
