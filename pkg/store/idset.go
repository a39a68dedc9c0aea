package store

import (
	"slices"
	"sort"
)

// maxBlock is the most IDs one block of an idSet holds.
const maxBlock = 512

// idSet is an ordered set of IDs for the memory store's state indexes: a
// sorted list of sorted blocks. Appending ascending IDs (new tasks) fills
// blocks completely; lookups and inserts cost a binary search over blocks
// plus a copy within one block.
type idSet struct {
	blocks [][]string // each non-empty and sorted; blocks[i] < blocks[i+1]
	n      int
}

// block is the index of the block id belongs in: the last block whose
// first ID is <= id, or 0.
func (s *idSet) block(id string) int {
	i := sort.Search(len(s.blocks), func(i int) bool { return s.blocks[i][0] > id })
	if i > 0 {
		i--
	}
	return i
}

// insert adds id.
func (s *idSet) insert(id string) {
	if len(s.blocks) == 0 {
		s.blocks = append(s.blocks, append(make([]string, 0, maxBlock), id))
		s.n++
		return
	}
	bi := s.block(id)
	b := s.blocks[bi]
	j, found := slices.BinarySearch(b, id)
	if found {
		return
	}
	s.n++
	if len(b) >= maxBlock {
		if bi == len(s.blocks)-1 && j == len(b) {
			// Past the end of the set: start a new block, leaving this
			// one full.
			s.blocks = append(s.blocks, append(make([]string, 0, maxBlock), id))
			return
		}
		half := len(b) / 2
		right := append(make([]string, 0, maxBlock), b[half:]...)
		clear(b[half:])
		s.blocks[bi] = b[:half]
		s.blocks = slices.Insert(s.blocks, bi+1, right)
		if j > half {
			bi, j = bi+1, j-half
		}
		b = s.blocks[bi]
	}
	s.blocks[bi] = slices.Insert(b, j, id)
}

// remove deletes id if present.
func (s *idSet) remove(id string) {
	if len(s.blocks) == 0 {
		return
	}
	bi := s.block(id)
	b := s.blocks[bi]
	j, found := slices.BinarySearch(b, id)
	if !found {
		return
	}
	s.n--
	b = slices.Delete(b, j, j+1)
	switch {
	case len(b) == 0:
		s.blocks = slices.Delete(s.blocks, bi, bi+1)
	case len(b) < maxBlock/4 && bi+1 < len(s.blocks) && len(b)+len(s.blocks[bi+1]) <= maxBlock:
		// Merge a sparse block with its successor so that deletions do
		// not leave a long list of tiny blocks.
		s.blocks[bi] = append(b, s.blocks[bi+1]...)
		s.blocks = slices.Delete(s.blocks, bi+1, bi+2)
	default:
		s.blocks[bi] = b
	}
}

// ascend appends to out up to limit IDs above after, in ascending order.
func (s *idSet) ascend(after string, limit int, out []string) []string {
	bi := sort.Search(len(s.blocks), func(i int) bool {
		b := s.blocks[i]
		return b[len(b)-1] > after
	})
	for n := 0; bi < len(s.blocks) && n < limit; bi++ {
		b := s.blocks[bi]
		j := sort.Search(len(b), func(j int) bool { return b[j] > after })
		take := min(len(b)-j, limit-n)
		out = append(out, b[j:j+take]...)
		n += take
	}
	return out
}

// expiryEntry says that task id became terminal with FinishedAt at (Unix
// nanos). Entries are not removed when the task changes again; the janitor
// checks each against the task when it comes due.
type expiryEntry struct {
	at int64
	id string
}

// expiryHeap is a min-heap of expiry entries (container/heap), oldest first.
type expiryHeap []expiryEntry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
