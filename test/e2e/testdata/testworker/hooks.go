package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/atomicflow/atomicflow/pkg/sdk"
)

// hookHandlers: "panic" panics in the handler; "progress" reports half
// way, then sleeps {"ms"} (default 2 s).
func hookHandlers() map[string]sdk.Handler {
	return map[string]sdk.Handler{
		"panic": func(context.Context, *sdk.Task) ([]byte, error) {
			panic("handler blew up")
		},
		"progress": func(ctx context.Context, t *sdk.Task) ([]byte, error) {
			t.Progress(0.5, "halfway")
			select {
			case <-time.After(2 * time.Second):
				return []byte(`"done"`), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		},
	}
}

// onStart, the start hook, in this order:
//   - appends "start <pid>" to TESTWORKER_START_FILE, so tests can see that
//     it ran and for which process;
//   - waits while the file TESTWORKER_START_HOLD exists (or until the
//     master gives up), so tests can look at a slot whose hook is running;
//   - fails while the file TESTWORKER_START_FAIL exists, so tests can make
//     a start fail.
func onStart(ctx context.Context) error {
	if err := appendLine(os.Getenv("TESTWORKER_START_FILE"), "start"); err != nil {
		return err
	}
	if hold := os.Getenv("TESTWORKER_START_HOLD"); hold != "" {
		for exists(hold) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("held by %s until the master gave up: %w", hold, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	if fail := os.Getenv("TESTWORKER_START_FAIL"); fail != "" && exists(fail) {
		return fmt.Errorf("testworker refuses to start: %s exists", fail)
	}
	return nil
}

// onStop appends "stop <pid>" to TESTWORKER_STOP_FILE, so tests can see
// that the stop hook ran.
func onStop(context.Context) error {
	return appendLine(os.Getenv("TESTWORKER_STOP_FILE"), "stop")
}

// appendLine appends "<word> <pid>" to file; an empty name does nothing.
func appendLine(file, word string) error {
	if file == "" {
		return nil
	}
	fh, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = fmt.Fprintf(fh, "%s %d\n", word, os.Getpid())
	return err
}

func exists(file string) bool {
	_, err := os.Stat(file)
	return err == nil
}
