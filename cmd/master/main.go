// Command master is the Atomic Flow supervisor: it forks the workers,
// dispatches tasks to them, and serves the HTTP API and the dashboard.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
