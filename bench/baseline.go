package main

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atomicflow/atomicflow/pkg/api"
	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/tasks"
)

const baselineTasks = 500_000

// runBaseline does the echo work of scenario 1 in this process, with no
// IPC and no store: the same batch body JSON-decoded by api.DecodeBatch
// (as the master does), each task sent on a channel to a pool of
// GOMAXPROCS goroutines that call tasks.Echo.
func runBaseline(ctx context.Context, env *benchEnv, o *outcome) error {
	body := batchBody("echo", echoPayload, batchSize)
	r, err := inProcessEcho(ctx, body, baselineTasks/batchSize, submitters, runtime.GOMAXPROCS(0))
	if err != nil {
		return err
	}
	o.add("echo tasks/s in-process (decode + channel + goroutine pool, no IPC, no store)", r, "tasks/s", nil,
		fmt.Sprintf("%s tasks, %d decoders, %d pool goroutines", group(baselineTasks), submitters, runtime.GOMAXPROCS(0)))
	if t, ok := env.done["throughput"]; ok {
		if v, ok := t.find(figHTTP500k); ok {
			o.add("multi-process engine ÷ in-process limit (scenario 1, HTTP, memory)", 100*v/r, "%", nil,
				fmt.Sprintf("%s of %s tasks/s", group(v), group(r)))
		}
	} else {
		o.note("run with the throughput scenario for the engine's fraction of this limit")
	}
	return nil
}

func inProcessEcho(ctx context.Context, body []byte, batches, decoders, pool int) (float64, error) {
	work := make(chan *sdk.Task, 4096)
	var done atomic.Int64
	var poolWG sync.WaitGroup
	for i := 0; i < pool; i++ {
		poolWG.Add(1)
		go func() {
			defer poolWG.Done()
			for t := range work {
				if _, err := tasks.Echo(ctx, t); err == nil {
					done.Add(1)
				}
			}
		}()
	}
	var next atomic.Int64
	var id atomic.Int64
	errs := make(chan error, decoders)
	var decWG sync.WaitGroup
	start := time.Now()
	for d := 0; d < decoders; d++ {
		decWG.Add(1)
		go func() {
			defer decWG.Done()
			for next.Add(1) <= int64(batches) {
				subs, err := api.DecodeBatch(bytes.NewReader(body), batchSize)
				if err != nil {
					errs <- err
					return
				}
				for _, s := range subs {
					work <- &sdk.Task{ID: strconv.FormatInt(id.Add(1), 16), Kind: s.Kind, Payload: s.Payload, Attempt: 1}
				}
			}
		}()
	}
	decWG.Wait()
	close(work)
	poolWG.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("decode: %w", err)
	}
	if n := done.Load(); n != int64(batches*batchSize) {
		return 0, fmt.Errorf("%d of %d tasks done", n, batches*batchSize)
	}
	return float64(batches*batchSize) / elapsed.Seconds(), nil
}
