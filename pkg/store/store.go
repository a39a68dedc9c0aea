package store

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// State is where a task is in its life.
type State string

// The states of a task. queued → running → succeeded | failed | dead, or
// canceled; a retry takes a task back to queued.
const (
	Queued    State = "queued"
	Running   State = "running"
	Succeeded State = "succeeded"
	Failed    State = "failed"   // terminal: e.g. timeout
	Dead      State = "dead"     // terminal: attempts exhausted
	Canceled  State = "canceled" // terminal
)

// numStates is the number of defined states.
const numStates = 6

// allStates lists every State, in the order of their numbers in store.proto
// (index i is proto number i+1).
func allStates() [numStates]State {
	return [numStates]State{Queued, Running, Succeeded, Failed, Dead, Canceled}
}

// nonTerminalStates lists the states NonTerminal reports.
func nonTerminalStates() []State { return []State{Queued, Running} }

// Terminal reports whether a task in state s is finished: succeeded, failed,
// dead or canceled.
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, Dead, Canceled:
		return true
	}
	return false
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { return s.index() >= 0 }

// index is the position of s in allStates, or -1.
func (s State) index() int {
	switch s {
	case Queued:
		return 0
	case Running:
		return 1
	case Succeeded:
		return 2
	case Failed:
		return 3
	case Dead:
		return 4
	case Canceled:
		return 5
	}
	return -1
}

// ParseState returns the State named s ("queued", "running", …).
func ParseState(s string) (State, error) {
	st := State(s)
	if !st.Valid() {
		return "", fmt.Errorf("store: unknown state %q (want queued, running, succeeded, failed, dead or canceled)", s)
	}
	return st, nil
}

// Record is one task as stored. IDs are 16 lowercase hex chars made by the
// engine, sortable by creation.
//
// A stored record comes back with nil for empty Payload and Result, and with
// times that carry no monotonic clock reading; compare times with Equal.
type Record struct {
	ID             string
	Kind           string
	Payload        []byte
	Key            string
	TimeoutMs      int64
	MaxAttempts    int32
	IdempotencyKey string
	State          State
	Attempts       int32
	WorkerSlot     int32 // -1 when never placed
	Result         []byte
	Error          string
	CreatedAt      time.Time
	StartedAt      time.Time
	FinishedAt     time.Time
}

// clone returns a deep copy of r, the caller's to keep.
func (r *Record) clone() *Record {
	c := *r
	c.Payload = bytes.Clone(r.Payload)
	c.Result = bytes.Clone(r.Result)
	return &c
}

// maxKeySize bounds IDs and idempotency keys (bbolt allows 32768 bytes).
const maxKeySize = 4096

// validate reports why r cannot be stored, or nil.
func validate(r *Record) error {
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil record", ErrInvalid)
	case r.ID == "":
		return fmt.Errorf("%w: empty ID", ErrInvalid)
	case len(r.ID) > maxKeySize:
		return fmt.Errorf("%w: ID of %d bytes (max %d)", ErrInvalid, len(r.ID), maxKeySize)
	case len(r.IdempotencyKey) > maxKeySize:
		return fmt.Errorf("%w: task %q: idempotency key of %d bytes (max %d)", ErrInvalid, r.ID, len(r.IdempotencyKey), maxKeySize)
	case !r.State.Valid():
		return fmt.Errorf("%w: task %q: unknown state %q", ErrInvalid, r.ID, r.State)
	}
	return nil
}

// CreateResult is what Create did with one record.
type CreateResult struct {
	ID       string
	Existing bool // the idempotency key was seen before: ID is the earlier task's and nothing new was stored
}

// ListOptions selects a page of List.
type ListOptions struct {
	State State  // required
	Limit int    // <=0 means 100
	After string // exclusive ID cursor for paging; "" from the start
}

// defaultListLimit is the page size of List when ListOptions.Limit <= 0.
const defaultListLimit = 100

// scanChunk is how many records NonTerminal reads at a time: a bolt read
// transaction never lives long enough to hold up the committer, and fn is
// called with no transaction or lock held.
const scanChunk = 1000

// janitorBatch bounds the records one janitor round removes in one
// transaction (bolt) or under one hold of the lock (memory).
const janitorBatch = 1000

// Store keeps tasks. All methods are safe for concurrent use.
//
// Ownership: after Create/Update the store owns the *Record (the caller
// passes copies and never mutates them again); records returned by
// Get/List/NonTerminal are the caller's to keep.
type Store interface {
	// Create stores new records and returns only once they are durable
	// (bolt: after the fsync of the transaction that holds them).
	// Concurrent Create calls share one transaction and one fsync (group
	// commit). A record whose IdempotencyKey (non-empty) is already known —
	// stored earlier or earlier in the same call/batch — is not stored; its
	// result carries the existing ID and Existing=true. Results are in the
	// order of recs. If ctx ends first Create returns ctx's error; the
	// records may still be stored.
	Create(ctx context.Context, recs []*Record) ([]CreateResult, error)
	// Update records state changes. It does not wait for the disk: the
	// records are visible to Get and List at once and are written in the
	// background in batches (sharing the group-commit transaction). The
	// latest Update for an ID wins. Records that fail validation, and
	// Updates after Close, are dropped; the next Flush reports invalid ones.
	Update(recs ...*Record)
	// Get returns the task with the given ID; the error wraps ErrNotFound
	// when it is unknown.
	Get(ctx context.Context, id string) (*Record, error)
	// List returns tasks in opt.State by ascending ID.
	List(ctx context.Context, opt ListOptions) ([]*Record, error)
	// NonTerminal calls fn for every record not in a terminal state
	// (recovery on master start), by ascending ID. fn runs outside any
	// transaction and may call the store. An error from fn stops the walk
	// and is returned.
	NonTerminal(ctx context.Context, fn func(*Record) error) error
	// Flush returns once every Update made before it is durable.
	Flush(ctx context.Context) error
	// Close flushes, stops background goroutines (waits for them) and
	// closes the file. Safe to call twice; the second call returns nil.
	Close() error
}

// Options tunes a store. A nil *Options means all defaults.
type Options struct {
	// Retention: terminal records whose FinishedAt is older than this are
	// removed by a janitor goroutine (default 24h; <0 disables).
	// JanitorInterval defaults to 1 minute.
	Retention       time.Duration
	JanitorInterval time.Duration
	// Now for hermetic tests (nil = time.Now).
	Now func() time.Time
	// LockTimeout: how long Open waits for the file lock held by another
	// process (default 100ms) before ErrLocked.
	LockTimeout time.Duration
	// NoSync disables fsync (benchmarks only).
	NoSync bool
}

// Defaults of Options.
const (
	DefaultRetention       = 24 * time.Hour
	DefaultJanitorInterval = time.Minute
	DefaultLockTimeout     = 100 * time.Millisecond
)

// withDefaults returns a copy of opt (which may be nil) with every zero
// field set to its default.
func (opt *Options) withDefaults() Options {
	var o Options
	if opt != nil {
		o = *opt
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.JanitorInterval <= 0 {
		o.JanitorInterval = DefaultJanitorInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	return o
}

// FileName is the name of the bolt file inside the data directory.
const FileName = "atomicflow.db"

// Open opens the store of the given kind: "bolt" (also "") keeps
// <dataDir>/atomicflow.db, "memory" keeps nothing on disk and ignores
// dataDir. Any other kind is an error wrapping ErrUnknownKind.
func Open(kind, dataDir string, opt *Options) (Store, error) {
	switch kind {
	case "bolt", "":
		return OpenBolt(filepath.Join(dataDir, FileName), opt)
	case "memory":
		return NewMemory(opt), nil
	}
	return nil, fmt.Errorf("%w %q: want \"bolt\" or \"memory\"", ErrUnknownKind, kind)
}
