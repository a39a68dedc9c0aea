package engine

import "errors"

var (
	// ErrShuttingDown: the engine no longer accepts tasks (HTTP 503).
	ErrShuttingDown = errors.New("shutting down: not accepting tasks")
	// ErrQueueFull: accepting the tasks would exceed the queue bound (HTTP 429).
	ErrQueueFull = errors.New("queue full")
	// ErrNotFound: no task has that id (HTTP 404).
	ErrNotFound = errors.New("task not found")
	// ErrTerminal: the task already finished, so it cannot be canceled (HTTP 409).
	ErrTerminal = errors.New("task already finished")
	// ErrNotDead: only dead tasks can be retried by hand (HTTP 409).
	ErrNotDead = errors.New("task is not dead")
)

// InvalidError describes a submission the engine refuses (HTTP 400).
type InvalidError struct {
	// Index is the position of the task in its batch.
	Index int
	// Code is a short machine-readable reason: unknown_kind, bad_field.
	Code    string
	Message string
}

func (e *InvalidError) Error() string { return e.Message }
