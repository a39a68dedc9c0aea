// Command testworker is the default worker plus hooks the end-to-end tests
// need: it exits at once on start while the file named by
// TESTWORKER_CRASH_FILE exists (a crash loop the test can switch on and off),
// it serves the shared-table kinds of table.go, its start and stop hooks can
// be watched and steered (hooks.go), and TESTWORKER_CAPACITY sets its
// Config.Capacity.
package main

import (
	"fmt"
	"maps"
	"os"
	"strconv"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/tasks"
)

func main() {
	if f := os.Getenv("TESTWORKER_CRASH_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "testworker: crash file present, exiting")
			os.Exit(1)
		}
	}
	handlers := tasks.Handlers()
	maps.Copy(handlers, tableHandlers())
	maps.Copy(handlers, stressHandlers())
	maps.Copy(handlers, hookHandlers())
	capacity := 0
	if v := os.Getenv("TESTWORKER_CAPACITY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testworker: bad TESTWORKER_CAPACITY %q\n", v)
			os.Exit(2)
		}
		capacity = n
	}
	sdk.Serve(sdk.Config{Handlers: handlers, Capacity: capacity, OnStart: onStart, OnStop: onStop})
}
