// Command master is the Atomic Flow supervisor: it forks the workers,
// dispatches tasks to them, and serves the HTTP API and the dashboard.
package main

import (
	"os"
	"runtime/debug"
)

func main() {
	// The master allocates a record per task state change; collecting less
	// often buys about a third more throughput for a bounded heap. GOGC in
	// the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
