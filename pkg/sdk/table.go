package sdk

import (
	"fmt"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// Env is what a worker process shares with the master and the other
// workers: the shared region and its tables (the Swoole\Table
// counterpart). Serve makes one per process and hands it to every task as
// Task.Env; it is safe for concurrent use. The master declares the tables
// (its --table flag); a worker only finds them by name.
type Env struct {
	region *shm.Region
	slot   int
}

// NewEnv wraps a region mapped by the caller. Serve calls it with the
// region the master passed; tests and tools that run handlers without a
// master call it with a region of their own (shm.CreateWithTables on a
// temporary file) and set Task.Env to it.
func NewEnv(region *shm.Region, slot int) *Env {
	return &Env{region: region, slot: slot}
}

// Region returns the shared region.
func (e *Env) Region() *shm.Region { return e.region }

// Slot returns the worker slot this process runs in.
func (e *Env) Slot() int { return e.slot }

// Table returns the shared table called name. The error wraps
// shm.ErrNoTable when the master declared no such table.
func (e *Env) Table(name string) (*shm.Table, error) {
	if e == nil || e.region == nil {
		return nil, fmt.Errorf("sdk: table %q: no shared region (Task.Env is nil: run under Serve, or set it with NewEnv): %w",
			name, shm.ErrNoTable)
	}
	return e.region.Table(name)
}

// Tables returns the names of the shared tables, in declaration order.
func (e *Env) Tables() []string {
	if e == nil || e.region == nil {
		return nil
	}
	return e.region.Tables()
}

// Table returns the shared table called name, as Env.Table does: every
// worker of the master sees the same rows, so a handler can count, cache
// or rate-limit across processes. The error wraps shm.ErrNoTable when the
// master declared no such table (or the task has no Env).
func (t *Task) Table(name string) (*shm.Table, error) {
	return t.Env.Table(name)
}
