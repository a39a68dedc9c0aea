// Command flowctl is the command-line client of an Atomic Flow master:
// submit tasks (one, or many in concurrent batches), read and cancel them,
// list the workers, read the counters, kill, restart, scale and reload
// workers through the master's HTTP API, and watch a live view of the
// shared region with `flowctl top`, which maps it read-only and needs no
// server call. Run `flowctl --help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
