package store

import "errors"

// Errors returned by stores. They are wrapped with context (the path, the
// task ID); match them with errors.Is.
var (
	// ErrNotFound means no task with the requested ID is stored.
	ErrNotFound = errors.New("store: task not found")
	// ErrClosed means the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrLocked means another process (a second master) holds the database
	// file open; Open gave up after Options.LockTimeout.
	ErrLocked = errors.New("store: store is locked by another process")
	// ErrCorrupt means the file is not a valid bbolt database (not a bolt
	// file, bad magic, version or checksum, a damaged page) or a stored
	// record does not decode. A file found corrupt by Open is left as it was.
	ErrCorrupt = errors.New("store: corrupt database")
	// ErrForeign means the file is a sound bbolt database that belongs to
	// something else (it has buckets this store does not use); it is left
	// as it was rather than having this store's buckets added to it.
	ErrForeign = errors.New("store: not an Atomic Flow database")
	// ErrInvalid means a record or option given to the store cannot be
	// used: an empty or oversized ID or idempotency key, an unknown state.
	ErrInvalid = errors.New("store: invalid record")
	// ErrUnknownKind means Open was asked for a store kind other than
	// "bolt" or "memory".
	ErrUnknownKind = errors.New("store: unknown store kind")
)
