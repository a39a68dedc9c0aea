package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// The on-disk format of bbolt v1 (go.etcd.io/bbolt/internal/common), as
// far as checkPages reads it. All integers are little-endian.
//
//	page header (16 bytes): id u64, flags u16, count u16, overflow u32
//	meta (after the header): magic u32, version u32, page size u32,
//	    flags u32, root bucket {root page u64, sequence u64}, freelist u64,
//	    high-water mark u64, txid u64, checksum u64 (FNV-64a of the 56
//	    bytes before it)
//	branch element (16 bytes): pos u32, key size u32, child page u64
//	leaf element (16 bytes): flags u32 (1 = bucket), pos u32, key size u32,
//	    value size u32
//	    pos is relative to the element; the value follows the key
//	bucket value: root page u64, sequence u64; root 0 means an inline
//	    bucket whose leaf page (id 0, no overflow) follows in the value
//	freelist page: count page IDs after the header; a count of 0xFFFF
//	    means the first u64 holds the real count
const (
	pageHeaderSize   = 16
	elementSize      = 16
	bucketHeaderSize = 16
	metaSize         = 64

	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01

	boltMagic     = 0xED0CDAED
	boltVersion   = 2
	noFreelist    = ^uint64(0)
	maxTreeDepth  = 64
	maxOverflowed = 1 << 20 // pages per element: values up to 4 GiB at 4 KiB pages
)

// boltMeta is the part of a meta page checkPages needs.
type boltMeta struct {
	root, freelist, hwm, txid uint64
}

// pageChecker walks every page reachable from the meta page and proves two
// things. First, that bbolt's pointer arithmetic on them stays inside the
// file: each page names itself, has a branch or leaf type, lies below the
// high-water mark and is referenced once; every element, key and value lies
// inside its page. Second, that the keys obey the order rules of bbolt's
// Tx.Check. A writable Open (with NoFreelistSync) rebuilds the free list
// with exactly those checks and panics on the first violation, while a
// goroutine of its own goes on reading pages; that cannot be recovered, and
// Tx.Check itself starts that same rebuild, so it cannot be used to find
// out either. The checker reads with ReadAt: a damaged file can only
// produce errors here, never faults.
type pageChecker struct {
	f    io.ReaderAt
	ps   uint64
	hwm  uint64
	seen []uint64 // bitmap of referenced pages
}

// checkPages runs a pageChecker over the bolt file at path, whose page size
// bbolt reported.
func checkPages(path string, pageSize int, fileSize int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	c := &pageChecker{f: f, ps: uint64(pageSize)}
	m, err := c.meta()
	if err != nil {
		return err
	}
	if m.hwm < 2 || m.hwm > uint64(fileSize)/c.ps {
		return fmt.Errorf("%w: %d pages of %d bytes do not fit the %d-byte file", ErrCorrupt, m.hwm, c.ps, fileSize)
	}
	c.hwm = m.hwm
	c.seen = make([]uint64, (c.hwm+63)/64)
	c.seen[0] |= 3 // the meta pages
	if m.freelist != noFreelist {
		if err := c.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	_, _, err = c.visit(m.root, 0, nil, nil)
	return err
}

// meta returns the meta page bbolt uses: the valid one with the higher txid.
func (c *pageChecker) meta() (boltMeta, error) {
	var best boltMeta
	found := false
	for i := uint64(0); i < 2; i++ {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := c.f.ReadAt(buf, int64(i*c.ps)); err != nil {
			continue
		}
		b := buf[pageHeaderSize:]
		h := fnv.New64a()
		_, _ = h.Write(b[:56])
		if le32(b) != boltMagic || le32(b[4:]) != boltVersion || le64(b[56:]) != h.Sum64() {
			continue
		}
		m := boltMeta{root: le64(b[16:]), freelist: le64(b[32:]), hwm: le64(b[40:]), txid: le64(b[48:])}
		if !found || m.txid > best.txid {
			best, found = m, true
		}
	}
	if !found {
		return best, fmt.Errorf("%w: no valid meta page", ErrCorrupt)
	}
	return best, nil
}

// page reads page id with its overflow pages, checking its header and
// marking it referenced.
func (c *pageChecker) page(id uint64, what string) ([]byte, uint16, error) {
	if id < 2 || id >= c.hwm {
		return nil, 0, fmt.Errorf("%w: %s page %d outside pages 2..%d", ErrCorrupt, what, id, c.hwm-1)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := c.f.ReadAt(hdr, int64(id*c.ps)); err != nil {
		return nil, 0, fmt.Errorf("%w: read page %d: %w", ErrCorrupt, id, err)
	}
	overflow := uint64(le32(hdr[12:]))
	switch {
	case le64(hdr) != id:
		return nil, 0, fmt.Errorf("%w: page %d names itself %d", ErrCorrupt, id, le64(hdr))
	case overflow >= c.hwm-id || overflow > maxOverflowed:
		return nil, 0, fmt.Errorf("%w: page %d overflows by %d pages past the high-water mark %d", ErrCorrupt, id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p/64]&(1<<(p%64)) != 0 {
			return nil, 0, fmt.Errorf("%w: page %d referenced twice", ErrCorrupt, p)
		}
		c.seen[p/64] |= 1 << (p % 64)
	}
	buf := make([]byte, (overflow+1)*c.ps)
	if _, err := c.f.ReadAt(buf, int64(id*c.ps)); err != nil {
		return nil, 0, fmt.Errorf("%w: read page %d: %w", ErrCorrupt, id, err)
	}
	return buf, le16(hdr[8:]), nil
}

// visit checks the tree rooted at page id, whose keys must lie in
// [minKey, maxKey) (nil: unbounded), and returns its smallest and largest
// keys. The order rules are those of bbolt's Tx.Check, which the free-list
// rebuild of a writable Open applies and panics on. On top of them every
// branch key must equal the first key of its child, as bbolt always writes
// it: rebalancing finds a child in its parent by that key, and a child it
// cannot find is freed while still linked, which panics later.
func (c *pageChecker) visit(id uint64, depth int, minKey, maxKey []byte) (first, last []byte, err error) {
	if depth > maxTreeDepth {
		return nil, nil, fmt.Errorf("%w: page tree deeper than %d", ErrCorrupt, maxTreeDepth)
	}
	p, flags, err := c.page(id, "tree")
	if err != nil {
		return nil, nil, err
	}
	switch flags {
	case branchPageFlag:
		return c.branch(id, p, depth, minKey, maxKey)
	case leafPageFlag:
		return c.leaf(id, p, depth, minKey, maxKey)
	}
	return nil, nil, fmt.Errorf("%w: page %d has type flags %#x, want branch or leaf", ErrCorrupt, id, flags)
}

// keyInRange applies bbolt's order rules to key i of page id: the first key
// is at least prev (the parent's lower bound), later keys are above prev
// (the previous key or subtree maximum), every key is below maxKey.
func keyInRange(id uint64, i int, key, prev, maxKey []byte) error {
	switch {
	case i == 0 && prev != nil && bytes.Compare(prev, key) > 0,
		i > 0 && bytes.Compare(prev, key) >= 0,
		maxKey != nil && bytes.Compare(key, maxKey) >= 0:
		return fmt.Errorf("%w: page %d: key %d (%x) out of order", ErrCorrupt, id, i, key)
	}
	return nil
}

// elements returns the element count of page p, checking that the element
// array fits.
func elements(id uint64, p []byte) (int, error) {
	n := int(le16(p[10:]))
	if pageHeaderSize+n*elementSize > len(p) {
		return 0, fmt.Errorf("%w: page %d: %d elements do not fit %d bytes", ErrCorrupt, id, n, len(p))
	}
	return n, nil
}

// branch checks a branch page and its children; see visit.
func (c *pageChecker) branch(id uint64, p []byte, depth int, minKey, maxKey []byte) (first, last []byte, err error) {
	n, err := elements(id, p)
	if err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%w: branch page %d is empty", ErrCorrupt, id)
	}
	keys := make([][]byte, n)
	for i := range n {
		e := pageHeaderSize + i*elementSize
		pos, ksize := uint64(le32(p[e:])), uint64(le32(p[e+4:]))
		if uint64(e)+pos+ksize > uint64(len(p)) {
			return nil, nil, fmt.Errorf("%w: branch page %d: key %d outside the page", ErrCorrupt, id, i)
		}
		keys[i] = p[uint64(e)+pos : uint64(e)+pos+ksize]
	}
	prev := minKey
	for i := range n {
		if err := keyInRange(id, i, keys[i], prev, maxKey); err != nil {
			return nil, nil, err
		}
		upper := maxKey
		if i < n-1 {
			upper = keys[i+1]
		}
		e := pageHeaderSize + i*elementSize
		child := le64(p[e+8:])
		cfirst, clast, err := c.visit(child, depth+1, keys[i], upper)
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(cfirst, keys[i]) {
			return nil, nil, fmt.Errorf("%w: branch page %d: key %d (%x) differs from the first key of page %d (%x)", ErrCorrupt, id, i, keys[i], child, cfirst)
		}
		prev = clast
	}
	return keys[0], prev, nil
}

// leaf checks a leaf page (a real one, or with nil bounds an inline
// bucket's) and the buckets it holds; see visit.
func (c *pageChecker) leaf(id uint64, p []byte, depth int, minKey, maxKey []byte) (first, last []byte, err error) {
	n, err := elements(id, p)
	if err != nil {
		return nil, nil, err
	}
	prev := minKey
	for i := range n {
		e := pageHeaderSize + i*elementSize
		flags, pos := le32(p[e:]), uint64(le32(p[e+4:]))
		ksize, vsize := uint64(le32(p[e+8:])), uint64(le32(p[e+12:]))
		kstart := uint64(e) + pos
		if kstart+ksize+vsize > uint64(len(p)) {
			return nil, nil, fmt.Errorf("%w: leaf page %d: entry %d outside the page", ErrCorrupt, id, i)
		}
		key := p[kstart : kstart+ksize]
		if i == 0 {
			first = key
		}
		if err := keyInRange(id, i, key, prev, maxKey); err != nil {
			return nil, nil, err
		}
		prev = key
		if flags&bucketLeafFlag == 0 {
			continue
		}
		v := p[kstart+ksize : kstart+ksize+vsize]
		if len(v) < bucketHeaderSize {
			return nil, nil, fmt.Errorf("%w: leaf page %d: bucket entry %d of %d bytes", ErrCorrupt, id, i, len(v))
		}
		if depth > maxTreeDepth {
			return nil, nil, fmt.Errorf("%w: buckets nested deeper than %d", ErrCorrupt, maxTreeDepth)
		}
		if root := le64(v); root != 0 {
			if _, _, err := c.visit(root, depth+1, nil, nil); err != nil {
				return nil, nil, err
			}
			continue
		}
		inline := v[bucketHeaderSize:]
		// bbolt writes an inline page into a zeroed buffer: id 0 (it
		// becomes the node's page ID, which a later write would free)
		// and no overflow.
		if len(inline) < pageHeaderSize || le16(inline[8:]) != leafPageFlag || le64(inline) != 0 || le32(inline[12:]) != 0 {
			return nil, nil, fmt.Errorf("%w: leaf page %d: inline bucket %d has a bad page header", ErrCorrupt, id, i)
		}
		if _, _, err := c.leaf(id, inline, depth+1, nil, nil); err != nil {
			return nil, nil, err
		}
	}
	if n == 0 {
		return nil, nil, nil
	}
	return first, prev, nil
}

// checkFreelist checks a synced free list (files written without
// NoFreelistSync), which a writable Open reads.
func (c *pageChecker) checkFreelist(id uint64) error {
	p, flags, err := c.page(id, "freelist")
	if err != nil {
		return err
	}
	if flags != freelistPageFlag {
		return fmt.Errorf("%w: freelist page %d has type flags %#x", ErrCorrupt, id, flags)
	}
	start, count := uint64(pageHeaderSize), uint64(le16(p[10:]))
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("%w: freelist page %d is short", ErrCorrupt, id)
		}
		start, count = pageHeaderSize+8, le64(p[pageHeaderSize:])
	}
	if count > (uint64(len(p))-start)/8 {
		return fmt.Errorf("%w: freelist page %d: %d IDs do not fit", ErrCorrupt, id, count)
	}
	for i := range count {
		if free := le64(p[start+8*i:]); free < 2 || free >= c.hwm {
			return fmt.Errorf("%w: freelist page %d lists page %d", ErrCorrupt, id, free)
		}
	}
	return nil
}

func le16(b []byte) uint16 { return binary.LittleEndian.Uint16(b) }
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
