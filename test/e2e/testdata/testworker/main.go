// Command testworker is the default worker plus hooks the end-to-end tests
// need: it exits at once on start while the file named by
// TESTWORKER_CRASH_FILE exists (a crash loop the test can switch on and off).
package main

import (
	"fmt"
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
	sdk.Serve(sdk.Config{Handlers: tasks.Handlers()})
}
