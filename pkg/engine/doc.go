// Package engine is the task path of the master: the task model and its
// state machine, the bounded queue, dispatch over each worker's Session
// stream in batches, per-worker credit, retries with backoff, redelivery
// when a worker dies, dead letters, cancel, and graceful shutdown.
//
// States:
//
//	queued ──dispatch──► running ──► succeeded
//	   ▲                    │   ├──► failed    (timeout, unknown kind: terminal)
//	   └──retry (backoff)───┤   ├──► canceled
//	   └──worker died───────┘   └──► dead      (attempts exhausted)
//
// Delivery is at least once: a task running on a worker that dies goes back
// to the queue at once and runs again with attempts+1. A submit is accepted
// only after the store made it durable, so the store, not this package's
// memory, is the source of truth across a master restart.
//
// Engine implements supervisor.Hooks: the supervisor tells it when a worker
// is ready (it opens the Session), when to drain one, and when one is gone.
package engine
