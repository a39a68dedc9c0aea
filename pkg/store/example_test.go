package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func Example() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	s, err := store.Open("bolt", filepath.Join(dir, "data"), nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()

	// Accepted means stored: Create returns once the task is on disk.
	task := &store.Record{ID: "0000000000000001", Kind: "echo", State: store.Queued, WorkerSlot: -1, IdempotencyKey: "order-42"}
	res, err := s.Create(ctx, []*store.Record{task})
	if err != nil {
		panic(err)
	}
	fmt.Println(res[0].ID, res[0].Existing)

	// A retried submit with the same idempotency key stores nothing new.
	again := &store.Record{ID: "0000000000000002", Kind: "echo", State: store.Queued, WorkerSlot: -1, IdempotencyKey: "order-42"}
	res, _ = s.Create(ctx, []*store.Record{again})
	fmt.Println(res[0].ID, res[0].Existing)

	// State changes are handed over as fresh copies and visible at once.
	running := *task
	running.State, running.Attempts, running.WorkerSlot = store.Running, 1, 0
	s.Update(&running)
	got, _ := s.Get(ctx, task.ID)
	fmt.Println(got.State, got.Attempts)

	// On the next start, recovery finds it.
	_ = s.Close()
	s, _ = store.Open("bolt", filepath.Join(dir, "data"), nil)
	defer s.Close()
	_ = s.NonTerminal(ctx, func(r *store.Record) error {
		fmt.Println("recover", r.ID, r.State)
		return nil
	})
	// Output:
	// 0000000000000001 false
	// 0000000000000001 true
	// running 1
	// recover 0000000000000001 running
}
