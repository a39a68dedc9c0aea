// Command worker is the default Atomic Flow worker: the built-in task kinds
// (sleep, cpu, echo, fail) served with the SDK. The master starts it; run
// on its own it explains that and exits.
package main

import (
	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/tasks"
)

func main() {
	sdk.Serve(sdk.Config{Handlers: tasks.Handlers()})
}
