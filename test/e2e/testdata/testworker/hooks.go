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

// onStop appends "stop <pid>" to TESTWORKER_STOP_FILE, so tests can see
// that the stop hook ran.
func onStop(context.Context) error {
	f := os.Getenv("TESTWORKER_STOP_FILE")
	if f == "" {
		return nil
	}
	fh, err := os.OpenFile(f, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = fmt.Fprintf(fh, "stop %d\n", os.Getpid())
	return err
}
