// Package supervisor forks and watches the worker processes, one loop per
// slot, on github.com/hashicorp/go-plugin (gRPC only, Managed false).
//
// Every start is a fresh exec.Cmd: go-plugin cannot restart a Client. The
// command is started from one goroutine locked to its OS thread for the life
// of the supervisor, because Pdeathsig fires when the forking thread exits,
// not the process; with a lifeline pipe in ExtraFiles that the worker
// watches, no worker outlives a kill -9 of the master.
//
// A process exit is noticed the moment cmd.Wait returns. The slot is marked
// dead in the shared region, its tasks are handed back (Hooks.WorkerGone),
// and the slot forks again with generation+1: at once the first time, then
// with exponential backoff and jitter while it keeps dying young. Other slots
// are never touched.
package supervisor
