// Package sdk is what a worker process is written with. A worker is a
// program whose main calls Serve with its task handlers; the Atomic Flow
// master starts it (go-plugin over gRPC on a Unix socket), sends it task
// batches over one Session stream, and supervises it.
//
// Inside the worker every task runs in its own goroutine, bounded by a
// semaphore of the smaller of Config.Capacity and the master's --capacity
// (the master never sends more than that). The worker keeps its slot of the
// shared region current: in flight, completed, failed, heartbeat, RSS and
// CPU time, so the master and the dashboard read live numbers without an
// RPC.
//
// Config.OnStart runs before the worker reports ready and Config.OnStop when
// it drains, before the process exits (Swoole's onWorkerStart and
// onWorkerStop).
//
// Handlers reach the master's shared tables (declared with --table) through
// the task: t.Table("hits") returns a *shm.Table whose Incr, Get, Set, Del
// and Range are safe across every worker process. Tasks report progress
// with t.Progress.
//
// A handler gets a context that is canceled when the task times out, is
// canceled, or the worker drains past its deadline. A panic in a handler
// fails that task with the panic message; the worker goes on.
package sdk
