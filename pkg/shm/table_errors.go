package shm

import "errors"

// Errors of the shared tables. They are wrapped with the table, key, column
// or spec they are about; match them with errors.Is.
var (
	// ErrTableSpec means a table spec (flag text or TableSpec) is invalid.
	ErrTableSpec = errors.New("shm: bad table spec")
	// ErrTableDir means Open found a table directory that is inconsistent
	// with itself, with the header or with the file.
	ErrTableDir = errors.New("shm: bad table directory")
	// ErrNoTable means the region has no table of that name.
	ErrNoTable = errors.New("shm: no such table")
	// ErrNoColumn means the table has no column of that name.
	ErrNoColumn = errors.New("shm: no such column")
	// ErrColumnType means a value or an operation does not fit the
	// column's type (a string for an int64 column, Incr on a string).
	ErrColumnType = errors.New("shm: wrong type for column")
	// ErrKeyEmpty means the key is the empty string.
	ErrKeyEmpty = errors.New("shm: empty table key")
	// ErrKeyTooLong means the key is longer than MaxKeyLen bytes.
	ErrKeyTooLong = errors.New("shm: table key too long")
	// ErrValueTooLong means a string is longer than its column's size. It
	// is rejected, never truncated.
	ErrValueTooLong = errors.New("shm: value too long for column")
	// ErrTableFull means every row holds a key: the new key was not
	// stored and nothing else changed.
	ErrTableFull = errors.New("shm: table full")
	// ErrReadOnly means a write to a table of a region opened ReadOnly.
	ErrReadOnly = errors.New("shm: region is read-only")
	// ErrRowCorrupt means a row read consistently holds impossible values
	// (a key or string length beyond its bound): the memory was scribbled
	// on by something that does not follow the row protocol.
	ErrRowCorrupt = errors.New("shm: corrupt table row")
)
