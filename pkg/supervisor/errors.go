package supervisor

import "errors"

var (
	// ErrBadWorkerBinary: the worker binary is missing, not executable, or
	// not an Atomic Flow worker (the go-plugin handshake failed).
	ErrBadWorkerBinary = errors.New("bad worker binary")
	// ErrNoSlot: the slot number is outside the supervisor's slots.
	ErrNoSlot = errors.New("no such worker slot")
	// ErrNotRunning: the slot has no live process to act on.
	ErrNotRunning = errors.New("worker is not running")
	// ErrBadCount: a worker count outside what the region has room for.
	ErrBadCount = errors.New("bad worker count")
	// ErrBusy: the slot already has control requests waiting.
	ErrBusy = errors.New("worker slot busy with earlier requests")
	// ErrStopped: the supervisor is stopping or stopped.
	ErrStopped = errors.New("supervisor stopped")
)
