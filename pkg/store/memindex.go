package store

import "slices"

// slabEntry is one record of the memory store with its state's index,
// kept beside the pointer so that a state change need not read the old
// record (rarely still in the cache).
type slabEntry struct {
	rec   *Record
	state int8
}

// slabPage is the number of entries in one page of a slab.
const slabPage = 4096

// slab keeps entries in pages, addressed by slot, so that a map can point
// at an entry with a small integer and an update changes it in place.
type slab struct {
	pages []*[slabPage]slabEntry
	used  uint32   // slots ever handed out
	free  []uint32 // released slots
}

// alloc returns an empty slot.
func (s *slab) alloc() uint32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		return i
	}
	i := s.used
	if int(i/slabPage) == len(s.pages) {
		s.pages = append(s.pages, new([slabPage]slabEntry))
	}
	s.used++
	return i
}

// at is the entry in slot i.
func (s *slab) at(i uint32) *slabEntry { return &s.pages[i/slabPage][i%slabPage] }

// release empties slot i for reuse.
func (s *slab) release(i uint32) {
	*s.at(i) = slabEntry{}
	s.free = append(s.free, i)
}

// minRun is the fewest consecutive new keys in one Create that get a run.
const minRun = 16

// run holds the entries of consecutive numeric keys created together (an
// engine batch): finding one is a binary search over a few runs and an
// index, where a map lookup would miss the cache.
type run struct {
	first uint64
	ents  []slabEntry // ents[i] is key first+i, empty when removed; nil once retired
	live  int         // non-empty entries
}

// entryIndex finds the memory store's entries by ID. A numeric key lives
// in the live run whose range covers it, else in nums; other IDs in strs.
type entryIndex struct {
	runs    []run  // by first key, ranges disjoint
	retired int    // runs with no entries left, dropped in bulk
	max     uint64 // the largest numeric key ever stored, if hasMax
	hasMax  bool
	slab    slab              // entries of the IDs in the maps
	nums    map[uint64]uint32 // numeric key -> slot
	strs    map[string]uint32 // other ID -> slot
}

func newEntryIndex() entryIndex {
	return entryIndex{nums: make(map[uint64]uint32), strs: make(map[string]uint32)}
}

// fresh reports whether numeric key k is above every key ever stored, so
// certainly absent.
func (x *entryIndex) fresh(k uint64) bool { return !x.hasMax || k > x.max }

// runOf is the live run whose range covers k, or nil.
func (x *entryIndex) runOf(k uint64) *run {
	lo, hi := 0, len(x.runs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if k < x.runs[m].first {
			hi = m
		} else {
			lo = m + 1
		}
	}
	if lo == 0 {
		return nil
	}
	r := &x.runs[lo-1]
	if k-r.first >= uint64(len(r.ents)) {
		return nil // also when retired
	}
	return r
}

// find is the entry of the record with ID id (k, num from hexKey), or nil.
func (x *entryIndex) find(id string, k uint64, num bool) *slabEntry {
	if !num {
		if slot, ok := x.strs[id]; ok {
			return x.slab.at(slot)
		}
		return nil
	}
	if r := x.runOf(k); r != nil {
		if e := &r.ents[k-r.first]; e.rec != nil {
			return e
		}
		return nil
	}
	if slot, ok := x.nums[k]; ok {
		return x.slab.at(slot)
	}
	return nil
}

// startRun opens a run at fresh key k for up to n consecutive keys.
func (x *entryIndex) startRun(k uint64, n int) {
	x.runs = append(x.runs, run{first: k, ents: make([]slabEntry, 0, n)})
}

// add returns a new empty entry for an absent ID: the next of the last
// run when k continues it, else in a map.
func (x *entryIndex) add(id string, k uint64, num bool) *slabEntry {
	if !num {
		slot := x.slab.alloc()
		x.strs[id] = slot
		return x.slab.at(slot)
	}
	if x.fresh(k) {
		x.max, x.hasMax = k, true
		if n := len(x.runs); n > 0 {
			if r := &x.runs[n-1]; r.ents != nil && k == r.first+uint64(len(r.ents)) && len(r.ents) < cap(r.ents) {
				r.ents = r.ents[:len(r.ents)+1]
				r.live++
				return &r.ents[len(r.ents)-1]
			}
		}
	} else if r := x.runOf(k); r != nil {
		r.live++ // an emptied entry of a live run
		return &r.ents[k-r.first]
	}
	slot := x.slab.alloc()
	x.nums[k] = slot
	return x.slab.at(slot)
}

// remove empties the entry of ID id, which must be present.
func (x *entryIndex) remove(id string, k uint64, num bool) {
	if !num {
		x.slab.release(x.strs[id])
		delete(x.strs, id)
		return
	}
	if r := x.runOf(k); r != nil {
		r.ents[k-r.first] = slabEntry{}
		if r.live--; r.live == 0 {
			r.ents = nil
			x.retired++
			if x.retired > len(x.runs)/2 {
				x.runs = slices.DeleteFunc(x.runs, func(r run) bool { return r.ents == nil })
				x.retired = 0
			}
		}
		return
	}
	x.slab.release(x.nums[k])
	delete(x.nums, k)
}
