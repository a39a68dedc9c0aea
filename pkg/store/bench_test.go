package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// BenchmarkCreate measures durable submits: Create from many goroutines at
// once (b.RunParallel with GOMAXPROCS×par goroutines), batches of 1 and 100
// records. With bolt every Create waits for its fsync; group commit shares
// one fsync among all the Creates waiting at that moment.
func BenchmarkCreate(b *testing.B) {
	for _, kind := range []string{"bolt", "memory"} {
		for _, batch := range []int{1, 100} {
			for _, par := range []int{1, 32} {
				b.Run(fmt.Sprintf("%s/batch=%d/par=%d", kind, batch, par), func(b *testing.B) {
					benchCreate(b, kind, batch, par)
				})
			}
		}
	}
}

func benchCreate(b *testing.B, kind string, batch, par int) {
	var s store.Store
	switch kind {
	case "bolt":
		var err error
		s, err = store.OpenBolt(filepath.Join(b.TempDir(), store.FileName), nil)
		if err != nil {
			b.Fatal(err)
		}
	case "memory":
		s = store.NewMemory(nil)
	}
	defer func() { _ = s.Close() }()
	payload := []byte(`{"ms":100,"note":"a typical small JSON payload"}`)
	var seq atomic.Uint64
	ctx := context.Background()
	b.SetParallelism(par)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			recs := make([]*store.Record, batch)
			for i := range recs {
				n := seq.Add(1)
				recs[i] = &store.Record{
					ID: fmt.Sprintf("%016x", n), Kind: "sleep", Payload: payload, MaxAttempts: 3,
					IdempotencyKey: fmt.Sprintf("req-%d", n), State: store.Queued, WorkerSlot: -1, CreatedAt: t0,
				}
			}
			if _, err := s.Create(ctx, recs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkUpdate measures state changes, which do not wait for the disk,
// followed by the Flush that makes them durable.
func BenchmarkUpdate(b *testing.B) {
	for _, k := range kinds() {
		b.Run(k.name, func(b *testing.B) {
			s := k.open(b, nil)
			const n = 1000
			recs := make([]*store.Record, n)
			for i := range recs {
				recs[i] = newRecord(i + 1)
			}
			if _, err := s.Create(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				r := recs[i%n]
				s.Update(with(r, func(r *store.Record) { r.State = store.Running; r.Attempts = int32(i) }))
			}
			if err := s.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
		})
	}
}
