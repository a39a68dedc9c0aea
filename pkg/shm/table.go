package shm

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Row is one row's values by column name: int64 for Int64 columns, float64
// for Float64 columns and string for String columns. Get and Range return
// every column; Set takes any subset (see Table.Set for the Go types it
// accepts). The typed accessors Int, Float and Text read a value without a
// type assertion.
type Row map[string]any

// Int returns the int64 value of column col, 0 when it is missing or not an
// int64.
func (r Row) Int(col string) int64 { v, _ := r[col].(int64); return v }

// Float returns the float64 value of column col, 0 when it is missing or not
// a float64.
func (r Row) Float(col string) float64 { v, _ := r[col].(float64); return v }

// Text returns the string value of column col, "" when it is missing or not
// a string.
func (r Row) Text(col string) string { v, _ := r[col].(string); return v }

// Table is a fixed-size hash table in the shared region, the counterpart of
// Swoole\Table: every process that maps the region sees the same rows, and
// every method is safe for concurrent use by goroutines of any number of
// processes. Get it with Region.Table.
//
// Keys are 1..MaxKeyLen bytes. Rows are found by open addressing (linear
// probing from the key's FNV-1a hash; a deleted row becomes a tombstone that
// a later insert reuses). The table never grows: it holds at most Rows()
// keys, and an insert beyond that fails with ErrTableFull.
//
// Writers lock the row and write a second copy of the row's data, then
// switch the row's sequence word to it. A row lock records its owner's pid
// and start time; a waiter that finds the owner dead (killed with -9 while
// holding it, say) takes the lock over within LockRecoveryBound, so a dead
// worker never wedges the others. A live owner is never robbed.
// Readers take no lock: they read the current copy between two reads of the
// sequence word and retry if a write completed in between, so a read is a
// consistent snapshot of one row, never blocked by a writer, and a writer
// killed in the middle of an update leaves the row as it was before: only
// that writer's own update is lost.
type Table struct {
	r        *Region
	spec     TableSpec
	cols     map[string]int
	lay      layout
	rows     uint64
	insertMu sync.Mutex
	stripes  []sync.Mutex
}

// lockStripes bounds the process-local mutexes of a table.
const lockStripes = 256

func newTable(r *Region, s TableSpec, l layout) *Table {
	t := &Table{r: r, spec: s, lay: l, rows: uint64(s.Rows), cols: make(map[string]int, len(s.Columns))}
	for i, c := range s.Columns {
		t.cols[c.Name] = i
	}
	t.stripes = make([]sync.Mutex, min(s.Rows, lockStripes))
	return t
}

// Name returns the table's name.
func (t *Table) Name() string { return t.spec.Name }

// Rows returns the table's capacity in rows.
func (t *Table) Rows() int { return t.spec.Rows }

// Columns returns the table's columns in declaration order.
func (t *Table) Columns() []Column { return append([]Column(nil), t.spec.Columns...) }

// Spec returns the table's spec as the master declared it.
func (t *Table) Spec() TableSpec {
	s := t.spec
	s.Columns = t.Columns()
	return s
}

// Len returns the number of keys in the table. It counts the used rows, so
// it costs a pass over Rows() words.
func (t *Table) Len() int {
	n := 0
	for i := uint64(0); i < t.rows; i++ {
		if isUsed(t.word(i, rowTagOff).Load()) {
			n++
		}
	}
	return n
}

// Get returns the row of key with every column, and whether it exists.
func (t *Table) Get(key string) (Row, bool, error) {
	if err := t.checkKey(key); err != nil {
		return nil, false, err
	}
	h := hashKey(key)
	tag := tagOf(h)
	for n, i := uint64(0), h%t.rows; n < t.rows; n, i = n+1, t.next(i) {
		switch tg := t.word(i, rowTagOff).Load(); {
		case tg == tagEmpty:
			return nil, false, nil
		case tg != tag:
			continue
		}
		k, data, ok, err := t.read(i)
		if err != nil {
			return nil, false, err
		}
		if ok && k == key {
			row, err := t.decode(data)
			return row, err == nil, err
		}
	}
	return nil, false, nil
}

// Set writes the columns given in row to key's row, creating the row (its
// other columns zero) if key is new. Columns not in row keep their values.
// All of row is written or none of it: an unknown column (ErrNoColumn), a
// value of the wrong type (ErrColumnType) or a string longer than its
// column (ErrValueTooLong) fails the call before anything is written.
//
// An Int64 column takes any Go integer type that fits in an int64, a
// Float64 column a float64 or float32, a String column a string or []byte.
func (t *Table) Set(key string, row Row) error {
	if err := t.checkWrite(key); err != nil {
		return err
	}
	type patch struct {
		col   int
		words []uint64
	}
	patches := make([]patch, 0, len(row))
	for name, v := range row {
		c, err := t.column(name)
		if err != nil {
			return err
		}
		w, err := t.encode(c, v)
		if err != nil {
			return fmt.Errorf("shm: table %q: key %q: %w", t.spec.Name, key, err)
		}
		patches = append(patches, patch{c, w})
	}
	return t.update(key, true, func(data []uint64) {
		for _, p := range patches {
			copy(data[t.lay.colOff[p.col]/8:], p.words)
		}
	})
}

// Incr adds delta to the Int64 column of key's row and returns the new
// value, creating the row (other columns zero) if key is new. It wraps on
// overflow, as integer addition does.
func (t *Table) Incr(key, column string, delta int64) (int64, error) {
	w, err := t.numeric(key, column, Int64)
	if err != nil {
		return 0, err
	}
	var out int64
	err = t.update(key, true, func(data []uint64) {
		out = int64(data[w]) + delta
		data[w] = uint64(out)
	})
	return out, err
}

// IncrFloat adds delta to the Float64 column of key's row and returns the
// new value, creating the row (other columns zero) if key is new.
func (t *Table) IncrFloat(key, column string, delta float64) (float64, error) {
	w, err := t.numeric(key, column, Float64)
	if err != nil {
		return 0, err
	}
	var out float64
	err = t.update(key, true, func(data []uint64) {
		out = math.Float64frombits(data[w]) + delta
		data[w] = math.Float64bits(out)
	})
	return out, err
}

// Del removes key and reports whether it was there.
func (t *Table) Del(key string) (bool, error) {
	if err := t.checkWrite(key); err != nil {
		return false, err
	}
	i, _ := t.lockFind(key, hashKey(key))
	if i == noRow {
		return false, nil
	}
	t.word(i, rowTagOff).Store(tagDead)
	t.unlockRow(i)
	t.sweep(i)
	return true, nil
}

// Range calls fn for every key in row order with a consistent snapshot of
// its row, until fn returns false. Rows written during the walk may be seen
// before or after the write; fn runs with no lock held and may use the
// table. The error is ErrRowCorrupt if a row holds impossible values.
func (t *Table) Range(fn func(key string, row Row) bool) error {
	for i := uint64(0); i < t.rows; i++ {
		if !isUsed(t.word(i, rowTagOff).Load()) {
			continue
		}
		k, data, ok, err := t.read(i)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		row, err := t.decode(data)
		if err != nil {
			return err
		}
		if !fn(k, row) {
			return nil
		}
	}
	return nil
}

// LockRowForTest takes the row lock of key (creating the row if key is new)
// and holds it until unlock is called, for tests of lock recovery: kill the
// process holding it and see that the others go on. While holding it, it
// fills the row's inactive data copy with garbage, as a writer killed in
// the middle of an update would leave it. Goroutines of the same process
// that need a row of the same lock stripe wait for unlock too. Not for
// production use.
func (t *Table) LockRowForTest(key string) (unlock func(), err error) {
	if err := t.checkWrite(key); err != nil {
		return nil, err
	}
	i, err := t.lockKey(key, true)
	if err != nil {
		return nil, err
	}
	seq := t.word(i, rowSeqOff).Load() &^ 1
	other := t.dataOff(i, int(((seq>>1)+1)&1))
	for j := 0; j < t.lay.dataSize; j += 8 {
		t.r.u64(other + j).Store(0xdeadbeefdeadbeef)
	}
	var once sync.Once
	return func() { once.Do(func() { t.unlockRow(i) }) }, nil
}

// --- rows ---

func (t *Table) rowOff(i uint64) int { return int(t.lay.off) + LineSize + int(i)*t.lay.rowSize }

func (t *Table) word(i uint64, off int) *atomic.Uint64 { return t.r.u64(t.rowOff(i) + off) }

func (t *Table) dataOff(i uint64, copyIdx int) int {
	return t.rowOff(i) + rowDataOff + copyIdx*t.lay.dataSize
}

func (t *Table) next(i uint64) uint64 {
	if i+1 == t.rows {
		return 0
	}
	return i + 1
}

func isUsed(tag uint64) bool { return tag > tagDead }

// hashKey is 64-bit FNV-1a: the same in every process.
func hashKey(k string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(k); i++ {
		h ^= uint64(k[i])
		h *= 1099511628211
	}
	return h
}

// tagOf is the used-row tag of a hash: never tagEmpty or tagDead.
func tagOf(h uint64) uint64 { return h&^3 | 2 }

func (t *Table) checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("shm: table %q: %w", t.spec.Name, ErrKeyEmpty)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("shm: table %q: key of %d bytes (%.16q...): %w (at most %d)", t.spec.Name, len(key), key, ErrKeyTooLong, MaxKeyLen)
	}
	return nil
}

func (t *Table) checkWrite(key string) error {
	if t.r.readOnly {
		return fmt.Errorf("shm: table %q: %w", t.spec.Name, ErrReadOnly)
	}
	return t.checkKey(key)
}

func (t *Table) column(name string) (int, error) {
	c, ok := t.cols[name]
	if !ok {
		names := make([]string, len(t.spec.Columns))
		for i, c := range t.spec.Columns {
			names[i] = c.Name
		}
		return 0, fmt.Errorf("shm: table %q: column %q: %w (columns: %s)", t.spec.Name, name, ErrNoColumn, strings.Join(names, ", "))
	}
	return c, nil
}

// numeric checks an Incr and returns the column's word index in a copy.
func (t *Table) numeric(key, column string, want ColumnType) (int, error) {
	if err := t.checkWrite(key); err != nil {
		return 0, err
	}
	c, err := t.column(column)
	if err != nil {
		return 0, err
	}
	if got := t.spec.Columns[c].Type; got != want {
		return 0, fmt.Errorf("shm: table %q: column %q is %s, not %s: %w", t.spec.Name, column, got, want, ErrColumnType)
	}
	return t.lay.colOff[c] / 8, nil
}

// read takes a consistent snapshot of used row i: its key and its current
// data copy. ok is false when the row is not (or no longer) used.
func (t *Table) read(i uint64) (key string, data []uint64, ok bool, err error) {
	tagW, seqW := t.word(i, rowTagOff), t.word(i, rowSeqOff)
	data = make([]uint64, t.lay.dataSize/8)
	var kb [MaxKeyLen]byte
	for try := 0; ; try++ {
		if try > 0 && try%64 == 0 {
			if try >= 1<<14 && !t.r.readOnly {
				// Writers keep completing under us: read under the lock.
				t.lockRow(i)
				key, ok, err = t.readLocked(i, data, kb[:])
				t.unlockRow(i)
				return key, data, ok, err
			}
			runtime.Gosched()
		}
		t1 := tagW.Load()
		if !isUsed(t1) {
			return "", nil, false, nil
		}
		s1 := seqW.Load()
		if s1&1 == 1 { // the row is being re-inserted: its tag will change
			continue
		}
		n := t.word(i, rowKeyLenOff).Load()
		if n > MaxKeyLen {
			n = MaxKeyLen + 1 // impossible unless torn; checked below
		}
		t.loadBytes(t.rowOff(i)+rowKeyOff, kb[:min(n, MaxKeyLen)])
		t.loadWords(t.dataOff(i, int((s1>>1)&1)), data)
		if seqW.Load() != s1 || tagW.Load() != t1 {
			continue
		}
		if n > MaxKeyLen || n == 0 {
			return "", nil, false, fmt.Errorf("shm: table %q row %d: key length %d: %w", t.spec.Name, i, n, ErrRowCorrupt)
		}
		return string(kb[:n]), data, true, nil
	}
}

// readLocked reads row i while holding its lock.
func (t *Table) readLocked(i uint64, data []uint64, kb []byte) (string, bool, error) {
	if !isUsed(t.word(i, rowTagOff).Load()) {
		return "", false, nil
	}
	s := t.word(i, rowSeqOff).Load() &^ 1
	n := t.word(i, rowKeyLenOff).Load()
	if n > MaxKeyLen || n == 0 {
		return "", false, fmt.Errorf("shm: table %q row %d: key length %d: %w", t.spec.Name, i, n, ErrRowCorrupt)
	}
	t.loadBytes(t.rowOff(i)+rowKeyOff, kb[:n])
	t.loadWords(t.dataOff(i, int((s>>1)&1)), data)
	return string(kb[:n]), true, nil
}

func (t *Table) loadWords(off int, dst []uint64) {
	for j := range dst {
		dst[j] = t.r.u64(off + 8*j).Load()
	}
}

func (t *Table) storeWords(off int, src []uint64) {
	for j, w := range src {
		t.r.u64(off + 8*j).Store(w)
	}
}

// loadBytes reads len(dst) bytes stored little-endian in words at off.
func (t *Table) loadBytes(off int, dst []byte) {
	for j := 0; j < len(dst); j += 8 {
		w := t.r.u64(off + j).Load()
		for b := 0; b < 8 && j+b < len(dst); b++ {
			dst[j+b] = byte(w >> (8 * b))
		}
	}
}

// packBytes stores src into words little-endian, zeroing the rest.
func packBytes(dst []uint64, src []byte) {
	clear(dst)
	for j, c := range src {
		dst[j/8] |= uint64(c) << (8 * (j % 8))
	}
}

func (t *Table) keyEquals(i uint64, key string) bool {
	if t.word(i, rowKeyLenOff).Load() != uint64(len(key)) {
		return false
	}
	var kb [MaxKeyLen]byte
	t.loadBytes(t.rowOff(i)+rowKeyOff, kb[:len(key)])
	return string(kb[:len(key)]) == key
}

// encode turns a Go value into column c's words, checking type and size.
func (t *Table) encode(c int, v any) ([]uint64, error) {
	col := t.spec.Columns[c]
	switch col.Type {
	case Int64:
		n, ok := toInt64(v)
		if !ok {
			return nil, fmt.Errorf("column %q is int: got %T %v: %w", col.Name, v, v, ErrColumnType)
		}
		return []uint64{uint64(n)}, nil
	case Float64:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			return nil, fmt.Errorf("column %q is float: got %T %v: %w", col.Name, v, v, ErrColumnType)
		}
		return []uint64{math.Float64bits(f)}, nil
	default:
		var b []byte
		switch x := v.(type) {
		case string:
			b = []byte(x)
		case []byte:
			b = x
		default:
			return nil, fmt.Errorf("column %q is string(%d): got %T: %w", col.Name, col.Size, v, ErrColumnType)
		}
		if len(b) > col.Size {
			return nil, fmt.Errorf("column %q is string(%d): value of %d bytes: %w", col.Name, col.Size, len(b), ErrValueTooLong)
		}
		w := make([]uint64, columnBytes(col)/8)
		w[0] = uint64(len(b))
		packBytes(w[1:], b)
		return w, nil
	}
}

func toInt64(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int16:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case uint:
		return int64(x), x <= math.MaxInt64
	case uint64:
		return int64(x), x <= math.MaxInt64
	}
	return 0, false
}

// decode turns a data copy into a Row.
func (t *Table) decode(data []uint64) (Row, error) {
	row := make(Row, len(t.spec.Columns))
	for c, col := range t.spec.Columns {
		w := t.lay.colOff[c] / 8
		switch col.Type {
		case Int64:
			row[col.Name] = int64(data[w])
		case Float64:
			row[col.Name] = math.Float64frombits(data[w])
		default:
			n := data[w]
			if n > uint64(col.Size) {
				return nil, fmt.Errorf("shm: table %q column %q: length %d > %d: %w", t.spec.Name, col.Name, n, col.Size, ErrRowCorrupt)
			}
			b := make([]byte, n)
			for j := range b {
				b[j] = byte(data[w+1+j/8] >> (8 * (j % 8)))
			}
			row[col.Name] = string(b)
		}
	}
	return row, nil
}

// --- writing ---

// update applies fn to key's row data under the row lock, creating the row
// if create is set and key is new.
func (t *Table) update(key string, create bool, fn func(data []uint64)) error {
	i, err := t.lockKey(key, create)
	if err != nil || i == noRow {
		return err
	}
	defer t.unlockRow(i)
	seqW := t.word(i, rowSeqOff)
	s := seqW.Load() &^ 1
	data := make([]uint64, t.lay.dataSize/8)
	t.loadWords(t.dataOff(i, int((s>>1)&1)), data)
	fn(data)
	next := s + 2
	t.storeWords(t.dataOff(i, int((next>>1)&1)), data)
	// The switch: readers now take the new copy; until here a reader (or
	// the next writer, if we die) uses the old one, untouched.
	seqW.Store(next)
	return nil
}

// noRow is "no such row" for row indexes.
const noRow = ^uint64(0)

// lockKey returns key's row, locked. A new key gets a row with zero data
// when create is set (ErrTableFull when none is free); otherwise a missing
// key gives noRow.
func (t *Table) lockKey(key string, create bool) (uint64, error) {
	h := hashKey(key)
	if i, _ := t.lockFind(key, h); i != noRow || !create {
		return i, nil
	}
	// Inserts are serialized per table, so two processes never give one
	// key two rows; updates of existing keys never take this lock.
	t.lockInsert()
	defer t.unlockInsert()
	i, free := t.lockFind(key, h)
	if i != noRow {
		return i, nil
	}
	if free == noRow {
		return noRow, fmt.Errorf("shm: table %q (%d rows): key %q: %w", t.spec.Name, t.rows, key, ErrTableFull)
	}
	t.lockRow(free)
	t.insert(free, key, h)
	return free, nil
}

// lockFind probes for key and returns its row locked, or noRow and the
// first free (empty or deleted) row of the probe sequence (noRow: the table
// is full).
func (t *Table) lockFind(key string, h uint64) (found, free uint64) {
	tag := tagOf(h)
	free = noRow
	for n, i := uint64(0), h%t.rows; n < t.rows; n, i = n+1, t.next(i) {
		tg := t.word(i, rowTagOff).Load()
		switch {
		case tg == tagEmpty:
			if free == noRow {
				free = i
			}
			return noRow, free
		case tg == tagDead:
			if free == noRow {
				free = i
			}
			continue
		case tg != tag:
			continue
		}
		t.lockRow(i)
		if t.word(i, rowTagOff).Load() == tag && t.keyEquals(i, key) {
			return i, free
		}
		t.unlockRow(i)
	}
	return noRow, free
}

// insert writes key with zero data into free row i (locked, insert lock
// held) and publishes it.
func (t *Table) insert(i uint64, key string, h uint64) {
	seqW := t.word(i, rowSeqOff)
	s := seqW.Load() &^ 1 // odd: an inserter died here; its row was never published
	seqW.Store(s | 1)
	var kw [MaxKeyLen / 8]uint64
	packBytes(kw[:], []byte(key))
	t.word(i, rowKeyLenOff).Store(uint64(len(key)))
	t.storeWords(t.rowOff(i)+rowKeyOff, kw[:])
	next := s + 2
	t.storeWords(t.dataOff(i, int((next>>1)&1)), make([]uint64, t.lay.dataSize/8))
	seqW.Store(next)
	t.word(i, rowTagOff).Store(tagOf(h))
}

// sweep turns the tombstones that end a probe sequence back into empty
// rows after a Del, so lookups of missing keys stay short. A tombstone
// followed by an empty row is on no key's path to its row.
func (t *Table) sweep(i uint64) {
	if t.word(t.next(i), rowTagOff).Load() != tagEmpty {
		return
	}
	t.lockInsert() // no insert may fill the empty row meanwhile
	defer t.unlockInsert()
	for n := uint64(0); n < t.rows; n++ {
		if t.word(t.next(i), rowTagOff).Load() != tagEmpty || !t.word(i, rowTagOff).CompareAndSwap(tagDead, tagEmpty) {
			return
		}
		if i == 0 {
			i = t.rows
		}
		i--
	}
}

func (t *Table) lockRow(i uint64) {
	t.stripes[i%uint64(len(t.stripes))].Lock()
	acquire(t.word(i, rowLockOff), t.r.lockID)
}

func (t *Table) unlockRow(i uint64) {
	release(t.word(i, rowLockOff), t.r.lockID)
	t.stripes[i%uint64(len(t.stripes))].Unlock()
}

func (t *Table) lockInsert() {
	t.insertMu.Lock()
	acquire(t.r.u64(int(t.lay.off)), t.r.lockID)
}

func (t *Table) unlockInsert() {
	release(t.r.u64(int(t.lay.off)), t.r.lockID)
	t.insertMu.Unlock()
}

// --- region ---

// Table returns the table called name. Handles are shared: every call
// with one name returns the same *Table.
func (r *Region) Table(name string) (*Table, error) {
	for _, t := range r.tables {
		if t.spec.Name == name {
			return t, nil
		}
	}
	have := "none"
	if len(r.tables) > 0 {
		have = strings.Join(r.Tables(), ", ")
	}
	return nil, fmt.Errorf("shm: table %q: %w (region has: %s)", name, ErrNoTable, have)
}

// Tables returns the names of the region's tables in declaration order.
func (r *Region) Tables() []string {
	out := make([]string, len(r.tables))
	for i, t := range r.tables {
		out[i] = t.spec.Name
	}
	return out
}

// attachTables makes the table handles of a verified region.
func (r *Region) attachTables(specs []TableSpec, ls []layout) {
	r.lockID = lockToken()
	r.tables = make([]*Table, len(specs))
	for i, s := range specs {
		r.tables[i] = newTable(r, s, ls[i])
	}
}
