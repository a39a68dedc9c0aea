package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// fill creates n queued records in batches of 1000, a tenth of them then
// moved to running and half to succeeded, so that history dominates.
func fill(b *testing.B, s store.Store, n int) {
	b.Helper()
	ctx := context.Background()
	for start := 0; start < n; start += 1000 {
		recs := make([]*store.Record, 0, 1000)
		for i := start; i < min(start+1000, n); i++ {
			recs = append(recs, newRecord(i+1))
		}
		if _, err := s.Create(ctx, recs); err != nil {
			b.Fatal(err)
		}
		for i, r := range recs {
			switch {
			case i%10 == 0:
				s.Update(with(r, func(r *store.Record) { r.State = store.Running }))
			case i%2 == 1:
				s.Update(with(r, func(r *store.Record) { r.State = store.Succeeded; r.FinishedAt = t0 }))
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkList pages through the running tasks (a tenth) of a large
// store: the state index keeps it independent of the history's size.
func BenchmarkList(b *testing.B) {
	for _, k := range kinds() {
		for _, n := range []int{100_000, 1_000_000} {
			if k.name == "bolt" && n > 100_000 && testing.Short() {
				continue
			}
			b.Run(fmt.Sprintf("%s/records=%d", k.name, n), func(b *testing.B) {
				s := k.open(b, &store.Options{NoSync: true, Retention: -1})
				fill(b, s, n)
				ctx := context.Background()
				b.ResetTimer()
				for i := range b.N {
					after := taskID((i * 7919) % n)
					page, err := s.List(ctx, store.ListOptions{State: store.Running, After: after, Limit: 100})
					if err != nil {
						b.Fatal(err)
					}
					if len(page) == 0 && (i*7919)%n < n-1000 {
						b.Fatalf("empty page after %s", after)
					}
				}
			})
		}
	}
}

// BenchmarkOpen measures OpenBolt of an existing file, which checks every
// page and record before opening it for writing, and the recovery walk
// that follows.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), store.FileName)
			s, err := store.OpenBolt(path, &store.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			fill(b, s, n)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				s, err := store.OpenBolt(path, nil)
				if err != nil {
					b.Fatal(err)
				}
				open := 0
				if err := s.NonTerminal(context.Background(), func(*store.Record) error { open++; return nil }); err != nil {
					b.Fatal(err)
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLifecycle drives the memory store the way the master does in a
// 500,000-task echo run: batches of 10,000 created (sometimes out of ID
// order, as concurrent submitters race), dispatched FIFO in chunks to two
// workers (running), completed per worker (succeeded), with submits
// outpacing completions so that the queued set grows large.
func BenchmarkLifecycle(b *testing.B) {
	const (
		total    = 500_000
		batch    = 10_000
		chunk    = 1_000
		inflight = 20_000
	)
	ctx := context.Background()
	payload := []byte(`{"n":1}`)
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		s := store.NewMemory(&store.Options{Now: func() time.Time { return t0 }})
		var queued []*store.Record // FIFO
		var workers [2][]*store.Record
		running := 0
		now := t0
		step := func(dispatch int) {
			// Dispatch FIFO in chunks, alternating workers.
			for w := 0; dispatch > 0 && len(queued) > 0 && running < inflight; w ^= 1 {
				n := min(chunk, len(queued), dispatch)
				ups := make([]*store.Record, n)
				for i, r := range queued[:n] {
					c := *r
					c.State, c.Attempts, c.WorkerSlot, c.StartedAt = store.Running, 1, int32(w), now
					ups[i] = &c
					workers[w] = append(workers[w], &c)
				}
				queued = queued[n:]
				running += n
				dispatch -= n
				s.Update(ups...)
			}
			// Each worker answers in batches of 500, in its own order.
			for w := range workers {
				for len(workers[w]) > 0 {
					n := min(500, len(workers[w]))
					ups := make([]*store.Record, n)
					for i, r := range workers[w][:n] {
						c := *r
						c.State, c.Result, c.FinishedAt = store.Succeeded, payload, now
						ups[i] = &c
					}
					workers[w] = workers[w][n:]
					running -= n
					s.Update(ups...)
				}
			}
		}
		next := 1
		var pending [][]*store.Record
		for next <= total {
			recs := make([]*store.Record, batch)
			for i := range recs {
				recs[i] = &store.Record{
					ID: taskID(next), Kind: "echo", Payload: payload, MaxAttempts: 3,
					State: store.Queued, WorkerSlot: -1, CreatedAt: now,
				}
				next++
			}
			pending = append(pending, recs)
			// Every third pair of batches arrives swapped.
			if len(pending) == 1 && (next/batch)%6 == 1 {
				continue
			}
			for i := len(pending) - 1; i >= 0; i-- {
				if _, err := s.Create(ctx, pending[i]); err != nil {
					b.Fatal(err)
				}
			}
			for _, p := range pending {
				for _, r := range p {
					c := *r
					queued = append(queued, &c)
				}
			}
			pending = pending[:0]
			now = now.Add(time.Millisecond)
			step(4_000)
		}
		for len(queued) > 0 || running > 0 {
			now = now.Add(time.Millisecond)
			step(inflight)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/task")
	// CPU time, GC included, is steadier than wall time on a shared machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N*total), "cpu-ns/task")
}

// cpuTime is the CPU time (user and system) of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
