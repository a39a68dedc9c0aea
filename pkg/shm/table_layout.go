package shm

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The table area follows the worker slots. Its layout is a pure function
// of the specs (tableLayout), so Open recomputes it from the specs stored
// in the directory and refuses any stored number that disagrees.
//
// Directory, at Size(slots) (the header's table directory offset):
//
//	line 0     u64 magic "AFTABDIR", u64 table count, u64 directory size
//	then       one entry of dirEntrySize bytes per table:
//	  0        u64 rows
//	  8        u64 offset of the table (from the region's start)
//	  16       u64 size of the table in bytes
//	  24       u32 row size, u32 size of one data copy
//	  32       u32 column count, u32 name length
//	  40       [32]byte name
//	  128 + 64*c, column c:
//	           u32 type, u32 string size, u32 offset in a data copy, u32 name length,
//	           [32]byte name
//
// Table, line-aligned, the tables one after the other after the directory:
//
//	line 0     u64 insert lock (see lockWord); the rest reserved
//	then       Rows rows of rowSize bytes (a multiple of 64):
//	  0        u64 lock word: 0 free, else owner pid<<32 | owner start time
//	  8        u64 tag: 0 empty, 1 deleted (tombstone), else key hash | 2
//	  16       u64 sequence: bit 0 set while the key is written, bit 1
//	           selects the current data copy, +2 per completed write
//	  24       u64 key length
//	  32       [64]byte key
//	  96       data copy 0, then data copy 1, each the columns in order:
//	           int and float 8 bytes; string(N) a u64 length and N bytes
//	           rounded up to 8
const (
	dirMagic      uint64 = 0x5249444241544641 // "AFTABDIR" little-endian
	dirEntrySize         = LineSize + MaxColumns*dirColumnSize
	dirColumnSize        = 64

	rowLockOff   = 0
	rowTagOff    = 8
	rowSeqOff    = 16
	rowKeyLenOff = 24
	rowKeyOff    = 32
	rowDataOff   = rowKeyOff + MaxKeyLen
	rowAlign     = 64

	tagEmpty uint64 = 0
	tagDead  uint64 = 1
)

// layout is where one table and its columns live.
type layout struct {
	off, size         int64
	rowSize, dataSize int
	colOff            []int
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// columnBytes is a column's size in one data copy.
func columnBytes(c Column) int {
	if c.Type == String {
		return 8 + int(roundUp(int64(c.Size), 8))
	}
	return 8
}

func tableLayout(s TableSpec, off int64) layout {
	l := layout{off: off, colOff: make([]int, len(s.Columns))}
	for i, c := range s.Columns {
		l.colOff[i] = l.dataSize
		l.dataSize += columnBytes(c)
	}
	l.rowSize = int(roundUp(int64(rowDataOff+2*l.dataSize), rowAlign))
	l.size = roundUp(LineSize+int64(s.Rows)*int64(l.rowSize), LineSize)
	return l
}

// tableBytes is the memory one table takes (directory entry excluded).
func tableBytes(s TableSpec) int64 {
	data := int64(0)
	for _, c := range s.Columns {
		if c.Type == String && (c.Size < 0 || c.Size > MaxStringSize) {
			return MaxTableBytes + 1
		}
		data += int64(columnBytes(c))
	}
	row := roundUp(rowDataOff+2*data, rowAlign)
	return roundUp(LineSize+int64(s.Rows)*row, LineSize)
}

func dirSize(n int) int64 { return LineSize + int64(n)*dirEntrySize }

// regionLayout places the directory and the tables after n slots and
// returns the layouts and the region's total size.
func regionLayout(n int, specs []TableSpec) ([]layout, int64) {
	if len(specs) == 0 {
		return nil, int64(Size(n))
	}
	off := int64(Size(n)) + dirSize(len(specs))
	out := make([]layout, len(specs))
	for i, s := range specs {
		out[i] = tableLayout(s, off)
		off += out[i].size
	}
	return out, off
}

// SizeWithTables returns the size in bytes of a region with n slots and
// the given tables. SizeWithTables(n, nil) is Size(n).
func SizeWithTables(n int, specs []TableSpec) (int64, error) {
	if err := checkSpecs(specs); err != nil {
		return 0, err
	}
	_, size := regionLayout(n, specs)
	return size, nil
}

// writeDir stores the directory; Create calls it before the magic, so a
// reader that sees the magic sees the directory.
func (r *Region) writeDir(n int, specs []TableSpec, ls []layout) {
	le := binary.LittleEndian
	d := r.mem[Size(n):]
	le.PutUint64(d[0:], dirMagic)
	le.PutUint64(d[8:], uint64(len(specs)))
	le.PutUint64(d[16:], uint64(dirSize(len(specs))))
	for i, s := range specs {
		e := d[LineSize+i*dirEntrySize:]
		l := ls[i]
		le.PutUint64(e[0:], uint64(s.Rows))
		le.PutUint64(e[8:], uint64(l.off))
		le.PutUint64(e[16:], uint64(l.size))
		le.PutUint32(e[24:], uint32(l.rowSize))
		le.PutUint32(e[28:], uint32(l.dataSize))
		le.PutUint32(e[32:], uint32(len(s.Columns)))
		le.PutUint32(e[36:], uint32(len(s.Name)))
		copy(e[40:40+MaxNameLen], s.Name)
		for c, col := range s.Columns {
			ce := e[LineSize+c*dirColumnSize:]
			le.PutUint32(ce[0:], uint32(col.Type))
			le.PutUint32(ce[4:], uint32(col.Size))
			le.PutUint32(ce[8:], uint32(l.colOff[c]))
			le.PutUint32(ce[12:], uint32(len(col.Name)))
			copy(ce[16:16+MaxNameLen], col.Name)
		}
	}
	r.i64(offTableDir).Store(int64(Size(n)))
}

// readDir decodes and checks the directory of a region with n slots and
// returns the specs, their layouts and the size the region must have.
func (r *Region) readDir(n int) ([]TableSpec, []layout, int64, error) {
	dirOff := r.i64(offTableDir).Load()
	if dirOff == 0 {
		return nil, nil, int64(Size(n)), nil
	}
	if dirOff != int64(Size(n)) {
		return nil, nil, 0, fmt.Errorf("table directory at %d, %d slots end at %d: %w", dirOff, n, Size(n), ErrTableDir)
	}
	if dirOff+LineSize > int64(len(r.mem)) {
		return nil, nil, 0, fmt.Errorf("table directory at %d, file is %d bytes: %w", dirOff, len(r.mem), ErrSize)
	}
	le := binary.LittleEndian
	d := r.mem[dirOff:]
	if m := le.Uint64(d[0:]); m != dirMagic {
		return nil, nil, 0, fmt.Errorf("table directory magic %#x: %w", m, ErrTableDir)
	}
	count := le.Uint64(d[8:])
	if count < 1 || count > MaxTables {
		return nil, nil, 0, fmt.Errorf("table count %d outside 1..%d: %w", count, MaxTables, ErrTableDir)
	}
	if ds := le.Uint64(d[16:]); ds != uint64(dirSize(int(count))) {
		return nil, nil, 0, fmt.Errorf("directory size %d, %d tables need %d: %w", ds, count, dirSize(int(count)), ErrTableDir)
	}
	if dirOff+dirSize(int(count)) > int64(len(r.mem)) {
		return nil, nil, 0, fmt.Errorf("table directory ends past the file (%d bytes): %w", len(r.mem), ErrSize)
	}
	specs := make([]TableSpec, count)
	for i := range specs {
		e := d[LineSize+i*dirEntrySize:]
		ncol, nlen := le.Uint32(e[32:]), le.Uint32(e[36:])
		if ncol < 1 || ncol > MaxColumns || nlen > MaxNameLen {
			return nil, nil, 0, fmt.Errorf("table %d: %d columns, name length %d: %w", i, ncol, nlen, ErrTableDir)
		}
		s := TableSpec{Name: cstr(e[40 : 40+nlen]), Rows: int(min(le.Uint64(e[0:]), MaxTableRows+1))}
		for c := 0; c < int(ncol); c++ {
			ce := e[LineSize+c*dirColumnSize:]
			cl := le.Uint32(ce[12:])
			if cl > MaxNameLen {
				return nil, nil, 0, fmt.Errorf("table %q column %d: name length %d: %w", s.Name, c, cl, ErrTableDir)
			}
			s.Columns = append(s.Columns, Column{
				Name: cstr(ce[16 : 16+cl]),
				Type: ColumnType(le.Uint32(ce[0:])),
				Size: int(min(le.Uint32(ce[4:]), MaxStringSize+1)),
			})
		}
		specs[i] = s
	}
	if err := checkSpecs(specs); err != nil {
		return nil, nil, 0, fmt.Errorf("%w: %w", ErrTableDir, err)
	}
	ls, size := regionLayout(n, specs)
	for i, s := range specs {
		e := d[LineSize+i*dirEntrySize:]
		l := ls[i]
		ok := le.Uint64(e[8:]) == uint64(l.off) && le.Uint64(e[16:]) == uint64(l.size) &&
			le.Uint32(e[24:]) == uint32(l.rowSize) && le.Uint32(e[28:]) == uint32(l.dataSize)
		for c := range s.Columns {
			ok = ok && le.Uint32(e[LineSize+c*dirColumnSize+8:]) == uint32(l.colOff[c])
		}
		if !ok {
			return nil, nil, 0, fmt.Errorf("table %q: stored offsets or sizes differ from its spec %s: %w", s.Name, s, ErrTableDir)
		}
	}
	return specs, ls, size, nil
}

// cstr is a name read from the directory; a NUL inside makes checkName
// refuse it.
func cstr(b []byte) string { return string(bytes.Clone(b)) }
