// Command testworker is the default worker plus hooks the end-to-end tests
// need: it exits at once on start while the file named by
// TESTWORKER_CRASH_FILE exists (a crash loop the test can switch on and off),
// and it serves the shared-table kinds of table.go.
package main

import (
	"fmt"
	"maps"
	"os"

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
	sdk.Serve(sdk.Config{Handlers: handlers, OnStop: onStop})
}
