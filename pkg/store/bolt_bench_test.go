package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// BenchmarkBoltLifecycle drives a durable bolt store (fsync on) through
// the life of 500,000 echo tasks the way the master does: 4 submitters
// Create batches of 10,000 (IDs ascending overall, interleaved between
// submitters), and for each batch the engine moves every task to running
// (chunks of 1,000, as dispatch does) and then to succeeded with its
// result (chunks of 500, as worker result batches do, finish times from
// the clock). A final Flush
// makes everything durable.
func BenchmarkBoltLifecycle(b *testing.B) {
	const (
		total      = 500_000
		batch      = 10_000
		submitters = 4
	)
	ctx := context.Background()
	payload := []byte(`{"n":1}`)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		s, err := store.OpenBolt(filepath.Join(b.TempDir(), store.FileName), &store.Options{Now: func() time.Time { return t0 }})
		if err != nil {
			b.Fatal(err)
		}
		var seq atomic.Int64
		var wg sync.WaitGroup
		for range submitters {
			wg.Go(func() {
				for {
					first := int(seq.Add(batch)) - batch + 1
					if first > total {
						return
					}
					recs := make([]*store.Record, batch)
					for i := range recs {
						recs[i] = &store.Record{
							ID: taskID(first + i), Kind: "echo", Payload: payload, MaxAttempts: 3,
							State: store.Queued, WorkerSlot: -1, CreatedAt: t0,
						}
					}
					if _, err := s.Create(ctx, recs); err != nil {
						b.Error(err)
						return
					}
					now := time.Now()
					for start := 0; start < batch; start += 1000 {
						ups := make([]*store.Record, 1000)
						for i, r := range recs[start : start+1000] {
							c := *r
							c.State, c.Attempts, c.WorkerSlot, c.StartedAt = store.Running, 1, int32(i%2), now
							ups[i] = &c
						}
						s.Update(ups...)
					}
					for start := 0; start < batch; start += 500 {
						ups := make([]*store.Record, 500)
						for i, r := range recs[start : start+500] {
							c := *r
							c.State, c.Attempts, c.WorkerSlot, c.StartedAt = store.Running, 1, int32(i%2), now
							// Real finish times: the submitters' tasks finish
							// interleaved, so expiry keys do not follow ID order.
							c.State, c.Result, c.FinishedAt = store.Succeeded, payload, time.Now()
							ups[i] = &c
						}
						s.Update(ups...)
					}
				}
			})
		}
		wg.Wait()
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/task")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*total), "cpu-ns/task")
}
