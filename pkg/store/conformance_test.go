package store_test

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// TestConformance runs the same behavioural suite against every
// implementation.
func TestConformance(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, open opener)
	}{
		{"RoundTrip", testRoundTrip},
		{"NotFound", testNotFound},
		{"ReturnedRecordsAreCopies", testCopies},
		{"EmptyCreate", testEmptyCreate},
		{"IdempotencyInOneCall", testIdemOneCall},
		{"IdempotencyAcrossCalls", testIdemAcrossCalls},
		{"IdempotencyConcurrent", testIdemConcurrent},
		{"UpdateVisibleAtOnce", testUpdateVisible},
		{"StateIndexMoves", testStateIndexMoves},
		{"LatestUpdateWins", testLatestUpdateWins},
		{"ListPaging", testListPaging},
		{"ListInvalidState", testListInvalidState},
		{"NonTerminal", testNonTerminal},
		{"NonTerminalCallbackMayUseStore", testNonTerminalReentrant},
		{"NonTerminalStopsOnError", testNonTerminalError},
		{"Retention", testRetention},
		{"RetentionDisabled", testRetentionDisabled},
		{"InvalidRecords", testInvalid},
		{"CanceledContext", testCanceledContext},
		{"ConcurrentCreateAndUpdate", testConcurrent},
		{"RandomAgainstModel", testRandomModel},
		{"CloseTwice", testCloseTwice},
		{"AfterClose", testAfterClose},
	}
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, k.open)
				})
			}
		})
	}
}

// mustCreate creates recs and fails the test on error.
func mustCreate(t *testing.T, s store.Store, recs ...*store.Record) []store.CreateResult {
	t.Helper()
	res, err := s.Create(context.Background(), recs)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(res) != len(recs) {
		t.Fatalf("Create: %d results for %d records", len(res), len(recs))
	}
	return res
}

// mustGet gets id and fails the test on error.
func mustGet(t *testing.T, s store.Store, id string) *store.Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return r
}

// listIDs returns the IDs of every record in state st, paging through List.
func listIDs(t *testing.T, s store.Store, st store.State) []string {
	t.Helper()
	var out []string
	after := ""
	for {
		page, err := s.List(context.Background(), store.ListOptions{State: st, After: after, Limit: 37})
		if err != nil {
			t.Fatalf("List(%s): %v", st, err)
		}
		for _, r := range page {
			if r.State != st {
				t.Fatalf("List(%s) returned %s in state %s", st, r.ID, r.State)
			}
		}
		out = append(out, ids(page)...)
		if len(page) < 37 {
			return out
		}
		after = page[len(page)-1].ID
	}
}

func testRoundTrip(t *testing.T, open opener) {
	s := open(t, nil)
	full := &store.Record{
		ID:             taskID(1),
		Kind:           "sleep",
		Payload:        []byte(`{"ms":100}`),
		Key:            "user-\xff\xfe", // not UTF-8: must still be stored
		TimeoutMs:      1500,
		MaxAttempts:    5,
		IdempotencyKey: "idem-1",
		State:          store.Failed,
		Attempts:       4,
		WorkerSlot:     7,
		Result:         []byte{0, 1, 2, 0xff},
		Error:          "timeout \xc3\x28 after 1.5s",
		CreatedAt:      t0,
		StartedAt:      t0.Add(time.Second),
		FinishedAt:     t0.Add(2*time.Second + 1),
	}
	minimal := &store.Record{ID: taskID(2), State: store.Queued, WorkerSlot: -1}
	negative := &store.Record{ID: taskID(3), State: store.Running, WorkerSlot: -1, Attempts: -1, TimeoutMs: -5,
		CreatedAt: time.Unix(-1, 0)} // before 1970
	res := mustCreate(t, s, with(full, func(*store.Record) {}), with(minimal, func(*store.Record) {}), with(negative, func(*store.Record) {}))
	for i, want := range []*store.Record{full, minimal, negative} {
		if res[i] != (store.CreateResult{ID: want.ID}) {
			t.Errorf("result %d = %+v, want {ID:%s}", i, res[i], want.ID)
		}
		if d := diffRecord(mustGet(t, s, want.ID), want); d != "" {
			t.Errorf("Get(%s): %s", want.ID, d)
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := diffRecord(mustGet(t, s, full.ID), full); d != "" {
		t.Errorf("after Flush: %s", d)
	}
}

func testNotFound(t *testing.T, open opener) {
	s := open(t, nil)
	_, err := s.Get(context.Background(), taskID(42))
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get unknown: err = %v, want ErrNotFound", err)
	}
}

func testCopies(t *testing.T, open opener) {
	s := open(t, nil)
	mustCreate(t, s, newRecord(1))
	want := newRecord(1)
	r := mustGet(t, s, want.ID)
	r.Payload[0] = 'X'
	r.State = store.Dead
	if d := diffRecord(mustGet(t, s, want.ID), want); d != "" {
		t.Fatalf("mutating a returned record changed the store: %s", d)
	}
	// The same for a record that is only in the pending overlay.
	s.Update(with(want, func(r *store.Record) { r.State = store.Running; r.Result = []byte("abc") }))
	r = mustGet(t, s, want.ID)
	r.Result[0] = 'X'
	if got := mustGet(t, s, want.ID); string(got.Result) != "abc" {
		t.Fatalf("mutating a returned record changed the store: Result %q", got.Result)
	}
	page, err := s.List(context.Background(), store.ListOptions{State: store.Running})
	if err != nil || len(page) != 1 {
		t.Fatalf("List = %v, %v", page, err)
	}
	page[0].Result[1] = 'X'
	if got := mustGet(t, s, want.ID); string(got.Result) != "abc" {
		t.Fatalf("mutating a listed record changed the store: Result %q", got.Result)
	}
}

func testEmptyCreate(t *testing.T, open opener) {
	s := open(t, nil)
	res, err := s.Create(context.Background(), nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("Create(nil) = %v, %v", res, err)
	}
}

func testIdemOneCall(t *testing.T, open opener) {
	s := open(t, nil)
	a := with(newRecord(1), func(r *store.Record) { r.IdempotencyKey = "k" })
	b := with(newRecord(2), func(r *store.Record) { r.IdempotencyKey = "k" })
	c := newRecord(3) // no key: never deduplicated
	d := newRecord(4)
	res := mustCreate(t, s, a, b, c, d)
	want := []store.CreateResult{{ID: a.ID}, {ID: a.ID, Existing: true}, {ID: c.ID}, {ID: d.ID}}
	if !slices.Equal(res, want) {
		t.Fatalf("results = %+v, want %+v", res, want)
	}
	if _, err := s.Get(context.Background(), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the duplicate was stored: Get = %v", err)
	}
	if got := listIDs(t, s, store.Queued); !slices.Equal(got, []string{a.ID, c.ID, d.ID}) {
		t.Fatalf("queued = %v", got)
	}
}

func testIdemAcrossCalls(t *testing.T, open opener) {
	s := open(t, nil)
	a := with(newRecord(1), func(r *store.Record) { r.IdempotencyKey = "k" })
	mustCreate(t, s, a)
	// The key stays known whatever state the task reaches.
	s.Update(with(a, func(r *store.Record) { r.State = store.Succeeded; r.FinishedAt = time.Now() }))
	b := with(newRecord(2), func(r *store.Record) { r.IdempotencyKey = "k" })
	res := mustCreate(t, s, b, with(newRecord(3), func(r *store.Record) { r.IdempotencyKey = "other" }))
	want := []store.CreateResult{{ID: a.ID, Existing: true}, {ID: taskID(3)}}
	if !slices.Equal(res, want) {
		t.Fatalf("results = %+v, want %+v", res, want)
	}
	if _, err := s.Get(context.Background(), b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the duplicate was stored: Get = %v", err)
	}
}

func testIdemConcurrent(t *testing.T, open opener) {
	s := open(t, nil)
	const n = 50
	var (
		wg      sync.WaitGroup
		results [n]store.CreateResult
		errs    [n]error
	)
	for i := range n {
		wg.Go(func() {
			rec := with(newRecord(100+i), func(r *store.Record) { r.IdempotencyKey = "same" })
			res, err := s.Create(context.Background(), []*store.Record{rec})
			errs[i] = err
			if err == nil {
				results[i] = res[0]
			}
		})
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Create %d: %v", i, errs[i])
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("callers got different IDs: %q and %q", results[0].ID, results[i].ID)
		}
		if !results[i].Existing {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d callers stored a record, want exactly 1", fresh)
	}
	if got := listIDs(t, s, store.Queued); !slices.Equal(got, []string{results[0].ID}) {
		t.Fatalf("stored %v, want only %s", got, results[0].ID)
	}
}

func testUpdateVisible(t *testing.T, open opener) {
	s := open(t, nil)
	rec := newRecord(1)
	mustCreate(t, s, rec)
	running := with(rec, func(r *store.Record) {
		r.State, r.Attempts, r.WorkerSlot, r.StartedAt = store.Running, 1, 2, t0.Add(time.Second)
	})
	s.Update(running)
	// No Flush: visible at once.
	if d := diffRecord(mustGet(t, s, rec.ID), running); d != "" {
		t.Fatalf("Get after Update: %s", d)
	}
	if got := listIDs(t, s, store.Running); !slices.Equal(got, []string{rec.ID}) {
		t.Fatalf("running = %v", got)
	}
	if got := listIDs(t, s, store.Queued); len(got) != 0 {
		t.Fatalf("queued = %v, want none", got)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := diffRecord(mustGet(t, s, rec.ID), running); d != "" {
		t.Fatalf("Get after Flush: %s", d)
	}
}

func testStateIndexMoves(t *testing.T, open opener) {
	s := open(t, nil)
	var all []*store.Record
	for i := range 10 {
		all = append(all, newRecord(i+1))
	}
	mustCreate(t, s, all...)
	var moved, stayed []string
	for i, r := range all {
		if i%2 == 1 {
			stayed = append(stayed, r.ID)
			continue
		}
		moved = append(moved, r.ID)
		s.Update(with(r, func(r *store.Record) { r.State = store.Running; r.Attempts = 1 }))
		if i%4 == 0 {
			// Some transitions commit in between, some share a batch.
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		s.Update(with(r, func(r *store.Record) {
			r.State, r.Attempts, r.Result, r.FinishedAt = store.Succeeded, 1, []byte("ok"), time.Now()
		}))
	}
	check := func(when string) {
		t.Helper()
		for st, want := range map[store.State][]string{
			store.Queued: stayed, store.Running: nil, store.Succeeded: moved,
			store.Failed: nil, store.Dead: nil, store.Canceled: nil,
		} {
			if got := listIDs(t, s, st); !slices.Equal(got, want) {
				t.Errorf("%s: List(%s) = %v, want %v", when, st, got, want)
			}
		}
	}
	check("pending")
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("flushed")
	// A retry takes a task back to queued; a cancel to canceled.
	s.Update(with(all[0], func(r *store.Record) { r.State = store.Queued; r.Attempts = 2 }))
	s.Update(with(all[1], func(r *store.Record) { r.State = store.Canceled; r.FinishedAt = time.Now() }))
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := listIDs(t, s, store.Queued), append([]string{all[0].ID}, stayed[1:]...); !slices.Equal(got, want) {
		t.Errorf("queued = %v, want %v", got, want)
	}
	if got := listIDs(t, s, store.Canceled); !slices.Equal(got, []string{all[1].ID}) {
		t.Errorf("canceled = %v", got)
	}
	if got := listIDs(t, s, store.Succeeded); !slices.Equal(got, moved[1:]) {
		t.Errorf("succeeded = %v, want %v", got, moved[1:])
	}
}

func testLatestUpdateWins(t *testing.T, open opener) {
	s := open(t, nil)
	rec := newRecord(1)
	mustCreate(t, s, rec)
	var last *store.Record
	for i := range 200 {
		last = with(rec, func(r *store.Record) { r.State = store.Running; r.Attempts = int32(i) })
		s.Update(last)
		if i%50 == 0 {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Two changes in one call: the later one wins.
	final := with(last, func(r *store.Record) { r.State = store.Dead; r.FinishedAt = time.Now() })
	s.Update(with(last, func(r *store.Record) { r.State = store.Queued }), final)
	if d := diffRecord(mustGet(t, s, rec.ID), final); d != "" {
		t.Fatalf("before Flush: %s", d)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := diffRecord(mustGet(t, s, rec.ID), final); d != "" {
		t.Fatalf("after Flush: %s", d)
	}
	if got := listIDs(t, s, store.Dead); !slices.Equal(got, []string{rec.ID}) {
		t.Fatalf("dead = %v", got)
	}
}

func testListPaging(t *testing.T, open opener) {
	s := open(t, nil)
	const n = 250
	var want []string
	var recs []*store.Record
	// Created out of order: List sorts by ID, not by arrival.
	for i := n; i >= 1; i-- {
		recs = append(recs, newRecord(i*3))
	}
	mustCreate(t, s, recs...)
	for i := 1; i <= n; i++ {
		want = append(want, taskID(i*3))
	}
	ctx := context.Background()
	page, err := s.List(ctx, store.ListOptions{State: store.Queued})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(page), want[:100]) {
		t.Fatalf("default page = %v…, want the first 100", ids(page)[:3])
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.List(ctx, store.ListOptions{State: store.Queued, Limit: 100, After: after})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page)...)
		if len(page) < 100 {
			if pages != 2 || len(page) != 50 {
				t.Fatalf("pages: %d full then one of %d, want 2 then 50", pages, len(page))
			}
			break
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged IDs differ from all IDs")
	}
	// After an ID that is not stored starts after where it would be.
	page, err = s.List(ctx, store.ListOptions{State: store.Queued, Limit: 2, After: taskID(4)})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(page), []string{taskID(6), taskID(9)}) {
		t.Fatalf("after %s: %v", taskID(4), ids(page))
	}
	// Pending Updates merge into pages in order.
	s.Update(with(newRecord(3), func(r *store.Record) { r.State = store.Running }))
	s.Update(with(newRecord(600), func(r *store.Record) { r.State = store.Running }))
	s.Update(with(newRecord(300), func(r *store.Record) { r.State = store.Running }))
	page, err = s.List(ctx, store.ListOptions{State: store.Running, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(page), []string{taskID(3), taskID(300)}) {
		t.Fatalf("running page = %v", ids(page))
	}
	page, err = s.List(ctx, store.ListOptions{State: store.Queued, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(page), []string{taskID(6), taskID(9)}) {
		t.Fatalf("queued page = %v", ids(page))
	}
}

func testListInvalidState(t *testing.T, open opener) {
	s := open(t, nil)
	for _, st := range []store.State{"", "bogus"} {
		if _, err := s.List(context.Background(), store.ListOptions{State: st}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("List(%q): err = %v, want ErrInvalid", st, err)
		}
	}
}

// populate creates n records in a mix of states and returns the IDs that
// are not terminal.
func populate(t *testing.T, s store.Store, n int) []string {
	t.Helper()
	var recs []*store.Record
	for i := 1; i <= n; i++ {
		recs = append(recs, newRecord(i))
	}
	mustCreate(t, s, recs...)
	var open []string
	for i, r := range recs {
		switch i % 5 {
		case 0:
			open = append(open, r.ID) // stays queued
		case 1:
			s.Update(with(r, func(r *store.Record) { r.State = store.Running }))
			open = append(open, r.ID)
		case 2:
			s.Update(with(r, func(r *store.Record) { r.State = store.Succeeded; r.FinishedAt = time.Now() }))
		case 3:
			s.Update(with(r, func(r *store.Record) { r.State = store.Dead; r.FinishedAt = time.Now() }))
		case 4:
			s.Update(with(r, func(r *store.Record) { r.State = store.Canceled; r.FinishedAt = time.Now() }))
		}
	}
	return open
}

func testNonTerminal(t *testing.T, open opener) {
	s := open(t, nil)
	want := populate(t, s, 3000) // more than one internal chunk
	collect := func() []string {
		var got []string
		err := s.NonTerminal(context.Background(), func(r *store.Record) error {
			if r.State.Terminal() {
				return fmt.Errorf("%s is %s", r.ID, r.State)
			}
			got = append(got, r.ID)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := collect(); !slices.Equal(got, want) {
		t.Fatalf("pending: NonTerminal gave %d IDs, want %d (sorted: %v)", len(got), len(want), slices.IsSorted(got))
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := collect(); !slices.Equal(got, want) {
		t.Fatalf("flushed: NonTerminal gave %d IDs, want %d (sorted: %v)", len(got), len(want), slices.IsSorted(got))
	}
}

func testNonTerminalReentrant(t *testing.T, open opener) {
	s := open(t, nil)
	want := populate(t, s, 1500)
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Recovery as the engine does it: every running task goes back to
	// queued with one attempt more, from inside the callback.
	n := 0
	err := s.NonTerminal(context.Background(), func(r *store.Record) error {
		n++
		if r.State == store.Running {
			s.Update(with(r, func(r *store.Record) { r.State = store.Queued; r.Attempts++ }))
			if _, err := s.Get(context.Background(), r.ID); err != nil {
				return err
			}
			if n%100 == 0 {
				return s.Flush(context.Background())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("visited %d, want %d", n, len(want))
	}
	if got := listIDs(t, s, store.Queued); !slices.Equal(got, want) {
		t.Fatalf("queued after recovery: %d IDs, want %d", len(got), len(want))
	}
}

func testNonTerminalError(t *testing.T, open opener) {
	s := open(t, nil)
	populate(t, s, 20)
	boom := errors.New("boom")
	calls := 0
	err := s.NonTerminal(context.Background(), func(*store.Record) error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Fatalf("err = %v after %d calls, want boom after 3", err, calls)
	}
}

// clock is a settable time source for Options.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) Now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) Add(d time.Duration) {
	c.ns.Add(int64(d))
}

// waitFor polls cond until it holds or fails the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exists reports whether id is stored.
func exists(t *testing.T, s store.Store, id string) bool {
	t.Helper()
	_, err := s.Get(context.Background(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func testRetention(t *testing.T, open opener) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := newClock(now)
	s := open(t, &store.Options{Retention: time.Hour, JanitorInterval: 2 * time.Millisecond, Now: clk.Now})
	old := now.Add(-2 * time.Hour)
	recs := map[string]*store.Record{
		"oldSucceeded": {ID: taskID(1), State: store.Succeeded, FinishedAt: old, CreatedAt: old},
		"oldDead":      {ID: taskID(2), State: store.Dead, FinishedAt: old, IdempotencyKey: "dead-key", CreatedAt: old},
		"oldQueued":    {ID: taskID(3), State: store.Queued, CreatedAt: old},
		"oldRunning":   {ID: taskID(4), State: store.Running, CreatedAt: old, StartedAt: old},
		"recentFailed": {ID: taskID(5), State: store.Failed, FinishedAt: now.Add(-10 * time.Minute)},
		"retried":      {ID: taskID(6), State: store.Failed, FinishedAt: old},
	}
	for _, name := range []string{"oldSucceeded", "oldDead", "oldQueued", "oldRunning", "recentFailed", "retried"} {
		mustCreate(t, s, with(recs[name], func(r *store.Record) {}))
	}
	// A failed task that was retried (back to queued) is no longer expired.
	s.Update(with(recs["retried"], func(r *store.Record) { r.State = store.Queued; r.FinishedAt = time.Time{} }))

	waitFor(t, "old terminal records to be removed", func() bool {
		return !exists(t, s, taskID(1)) && !exists(t, s, taskID(2))
	})
	for _, name := range []string{"oldQueued", "oldRunning", "recentFailed", "retried"} {
		if !exists(t, s, recs[name].ID) {
			t.Errorf("%s was removed", name)
		}
	}
	if got := listIDs(t, s, store.Succeeded); len(got) != 0 {
		t.Errorf("succeeded index still lists %v", got)
	}
	if got := listIDs(t, s, store.Dead); len(got) != 0 {
		t.Errorf("dead index still lists %v", got)
	}
	// The idempotency key of a removed task is free again.
	res := mustCreate(t, s, &store.Record{ID: taskID(7), State: store.Queued, IdempotencyKey: "dead-key"})
	if res[0] != (store.CreateResult{ID: taskID(7)}) {
		t.Errorf("reusing an expired key: %+v", res[0])
	}

	// Time passes: the recent one expires too, open tasks never do.
	clk.Add(2 * time.Hour)
	waitFor(t, "the recent failed record to be removed", func() bool { return !exists(t, s, taskID(5)) })
	time.Sleep(20 * time.Millisecond) // several more janitor rounds
	for _, id := range []string{taskID(3), taskID(4), taskID(6), taskID(7)} {
		if !exists(t, s, id) {
			t.Errorf("non-terminal %s was removed", id)
		}
	}
}

func testRetentionDisabled(t *testing.T, open opener) {
	clk := newClock(time.Now())
	s := open(t, &store.Options{Retention: -1, JanitorInterval: time.Millisecond, Now: clk.Now})
	mustCreate(t, s, &store.Record{ID: taskID(1), State: store.Succeeded, FinishedAt: time.Unix(1, 0)})
	clk.Add(1000 * time.Hour)
	time.Sleep(20 * time.Millisecond)
	if !exists(t, s, taskID(1)) {
		t.Fatal("removed with retention disabled")
	}
}

func testInvalid(t *testing.T, open opener) {
	s := open(t, nil)
	for name, r := range map[string]*store.Record{
		"nil":       nil,
		"empty ID":  {State: store.Queued},
		"no state":  {ID: taskID(1)},
		"bad state": {ID: taskID(1), State: "paused"},
	} {
		if _, err := s.Create(context.Background(), []*store.Record{newRecord(9), r}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Create(%s): err = %v, want ErrInvalid", name, err)
		}
	}
	if exists(t, s, taskID(9)) {
		t.Error("a call with an invalid record stored its valid records")
	}
	mustCreate(t, s, newRecord(2))
	s.Update(&store.Record{ID: taskID(2), State: "paused"}, with(newRecord(2), func(r *store.Record) { r.State = store.Running }))
	if err := s.Flush(context.Background()); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Flush after an invalid Update: err = %v, want ErrInvalid", err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Errorf("second Flush: %v", err)
	}
	if got := mustGet(t, s, taskID(2)); got.State != store.Running {
		t.Errorf("the valid Update of the same call was dropped: %s", got.State)
	}
}

func testCanceledContext(t *testing.T, open opener) {
	s := open(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Create(ctx, []*store.Record{newRecord(1)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Create: %v", err)
	}
	if _, err := s.Get(ctx, taskID(1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.List(ctx, store.ListOptions{State: store.Queued}); !errors.Is(err, context.Canceled) {
		t.Errorf("List: %v", err)
	}
	if err := s.NonTerminal(ctx, func(*store.Record) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("NonTerminal: %v", err)
	}
	if err := s.Flush(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Flush: %v", err)
	}
}

func testConcurrent(t *testing.T, open opener) {
	s := open(t, nil)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for i := range each {
				rec := newRecord(w*1000 + i + 1)
				if _, err := s.Create(ctx, []*store.Record{rec}); err != nil {
					t.Error(err)
					return
				}
				run := with(rec, func(r *store.Record) { r.State = store.Running; r.Attempts = 1 })
				s.Update(run)
				s.Update(with(run, func(r *store.Record) { r.State = store.Succeeded; r.FinishedAt = time.Now() }))
				if _, err := s.Get(ctx, rec.ID); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.List(ctx, store.ListOptions{State: store.Running, Limit: 5}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := listIDs(t, s, store.Succeeded); len(got) != workers*each {
		t.Fatalf("succeeded: %d, want %d", len(got), workers*each)
	}
	if got := listIDs(t, s, store.Running); len(got) != 0 {
		t.Fatalf("running: %v", got)
	}
}

func testCloseTwice(t *testing.T, open opener) {
	s := open(t, nil)
	mustCreate(t, s, newRecord(1))
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func testAfterClose(t *testing.T, open opener) {
	s := open(t, nil)
	mustCreate(t, s, newRecord(1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Create(ctx, []*store.Record{newRecord(2)}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Create: %v", err)
	}
	if _, err := s.Create(ctx, nil); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Create(nil): %v", err)
	}
	if _, err := s.Get(ctx, taskID(1)); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, err := s.List(ctx, store.ListOptions{State: store.Queued}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if err := s.NonTerminal(ctx, func(*store.Record) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("NonTerminal: %v", err)
	}
	if err := s.Flush(ctx); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Flush: %v", err)
	}
	s.Update(newRecord(1)) // dropped, must not panic or block
}

// testRandomModel applies random creates (in random ID order) and random
// state changes and compares every index with a plain map.
func testRandomModel(t *testing.T, open opener) {
	s := open(t, nil)
	rng := mrand.New(mrand.NewPCG(7, 11))
	const n = 3000
	model := map[string]*store.Record{}
	order := rng.Perm(n)
	for len(order) > 0 {
		k := min(len(order), 1+rng.IntN(60))
		var recs []*store.Record
		for _, i := range order[:k] {
			r := newRecord(i + 1)
			recs = append(recs, r)
			model[r.ID] = r
		}
		order = order[k:]
		mustCreate(t, s, recs...)
	}
	allStates := []store.State{store.Queued, store.Running, store.Succeeded, store.Failed, store.Dead, store.Canceled}
	for i := range 6000 {
		id := taskID(1 + rng.IntN(n))
		st := allStates[rng.IntN(len(allStates))]
		r := with(model[id], func(r *store.Record) {
			r.State, r.Attempts = st, int32(i)
			if st.Terminal() {
				r.FinishedAt = t0.Add(time.Duration(rng.IntN(5)) * time.Second) // some equal finish times
			}
		})
		model[id] = r
		s.Update(r)
		if rng.IntN(500) == 0 {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(when string) {
		t.Helper()
		for _, st := range allStates {
			var want []string
			for id, r := range model {
				if r.State == st {
					want = append(want, id)
				}
			}
			slices.Sort(want)
			if got := listIDs(t, s, st); !slices.Equal(got, want) {
				t.Errorf("%s: List(%s): %d IDs, want %d", when, st, len(got), len(want))
			}
		}
		for range 50 {
			id := taskID(1 + rng.IntN(n))
			if d := diffRecord(mustGet(t, s, id), model[id]); d != "" {
				t.Errorf("%s: Get(%s): %s", when, id, d)
			}
		}
	}
	check("pending")
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("flushed")
}
