package engine_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/engine"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
)

// newEngine is an engine over a real bolt store and shared region, with no
// workers: whatever it accepts stays queued.
func newEngine(t *testing.T) (*engine.Engine, store.Store) {
	t.Helper()
	dir := t.TempDir()
	r, err := shm.Create(filepath.Join(dir, "region"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	s, err := store.OpenBolt(filepath.Join(dir, "tasks.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	e, err := engine.New(engine.Config{Store: s, Region: r, Kinds: []string{"echo"}})
	if err != nil {
		t.Fatal(err)
	}
	return e, s
}

// A submit whose caller goes away while the store commits must not leave
// a record in the store that the engine does not hold: such a task would
// be stored as queued and never run (until the next master start).
func TestSubmitCanceledMidCommitOrphansNothing(t *testing.T) {
	e, s := newEngine(t)
	ctx := context.Background()

	const submits, perSubmit = 200, 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted, refused := 0, 0
	for i := range submits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Cancel somewhere inside the group commit's fsync wait.
			cctx, cancel := context.WithTimeout(ctx, time.Duration(i%20)*100*time.Microsecond)
			defer cancel()
			subs := make([]engine.Submission, perSubmit)
			for j := range subs {
				subs[j] = engine.Submission{Kind: "echo", Payload: []byte(`{}`),
					IdempotencyKey: fmt.Sprintf("k-%d-%d", i, j)}
			}
			ids, err := e.Submit(cctx, subs)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && len(ids) == perSubmit:
				accepted++
			case errors.Is(err, context.DeadlineExceeded):
				refused++
			default:
				t.Errorf("submit %d: ids=%d err=%v", i, len(ids), err)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d submits accepted, %d refused before they reached the store", accepted, refused)

	stored := 0
	if err := s.NonTerminal(ctx, func(*store.Record) error { stored++; return nil }); err != nil {
		t.Fatal(err)
	}
	if live := e.Stats().Queued; live != stored {
		t.Fatalf("the store holds %d queued tasks but the engine queued %d: %d would never run", stored, live, stored-live)
	}
	if stored < accepted*perSubmit {
		t.Fatalf("%d submits were answered with ids but only %d tasks are stored", accepted, stored)
	}

	// A retry with the same idempotency keys returns the same ids and
	// queues nothing twice.
	before := e.Stats().Queued
	for i := range submits {
		subs := make([]engine.Submission, perSubmit)
		for j := range subs {
			subs[j] = engine.Submission{Kind: "echo", Payload: []byte(`{}`), IdempotencyKey: fmt.Sprintf("k-%d-%d", i, j)}
		}
		if _, err := e.Submit(ctx, subs); err != nil {
			t.Fatalf("resubmit %d: %v", i, err)
		}
	}
	if got, want := e.Stats().Queued, submits*perSubmit; got != want {
		t.Fatalf("after resubmitting every key: %d queued, want %d (was %d)", got, want, before)
	}
}
