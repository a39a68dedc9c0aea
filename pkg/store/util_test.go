package store_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// opener opens a fresh store for one test and closes it at the end.
type opener func(t testing.TB, opt *store.Options) store.Store

// kinds lists the implementations the conformance suite runs against.
func kinds() []struct {
	name string
	open opener
} {
	return []struct {
		name string
		open opener
	}{
		{"bolt", func(t testing.TB, opt *store.Options) store.Store {
			s, err := store.OpenBolt(filepath.Join(t.TempDir(), store.FileName), opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{"memory", func(t testing.TB, opt *store.Options) store.Store {
			s := store.NewMemory(opt)
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
	}
}

// taskID is the n-th ID in the engine's format: 16 lowercase hex chars.
func taskID(n int) string { return fmt.Sprintf("%016x", n) }

// t0 is a fixed creation time for hermetic records.
var t0 = time.Unix(1_700_000_000, 123_456_789)

// newRecord returns a queued record as the engine creates it.
func newRecord(n int) *store.Record {
	return &store.Record{
		ID:          taskID(n),
		Kind:        "echo",
		Payload:     []byte(fmt.Sprintf(`{"n":%d}`, n)),
		MaxAttempts: 3,
		State:       store.Queued,
		WorkerSlot:  -1,
		CreatedAt:   t0.Add(time.Duration(n) * time.Millisecond),
	}
}

// with returns a copy of r changed by fn: the engine hands the store a
// fresh copy for every change.
func with(r *store.Record, fn func(*store.Record)) *store.Record {
	c := *r
	c.Payload = bytes.Clone(r.Payload)
	c.Result = bytes.Clone(r.Result)
	fn(&c)
	return &c
}

// diffRecord describes how got differs from want, or returns "". Empty and
// nil byte slices are equal; times are compared with Equal.
func diffRecord(got, want *store.Record) string {
	if got == nil || want == nil {
		if got != want {
			return fmt.Sprintf("got %v, want %v", got, want)
		}
		return ""
	}
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s: got %#v, want %#v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Kind != want.Kind {
		add("Kind", got.Kind, want.Kind)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		add("Payload", string(got.Payload), string(want.Payload))
	}
	if got.Key != want.Key {
		add("Key", got.Key, want.Key)
	}
	if got.TimeoutMs != want.TimeoutMs {
		add("TimeoutMs", got.TimeoutMs, want.TimeoutMs)
	}
	if got.MaxAttempts != want.MaxAttempts {
		add("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	}
	if got.IdempotencyKey != want.IdempotencyKey {
		add("IdempotencyKey", got.IdempotencyKey, want.IdempotencyKey)
	}
	if got.State != want.State {
		add("State", got.State, want.State)
	}
	if got.Attempts != want.Attempts {
		add("Attempts", got.Attempts, want.Attempts)
	}
	if got.WorkerSlot != want.WorkerSlot {
		add("WorkerSlot", got.WorkerSlot, want.WorkerSlot)
	}
	if !bytes.Equal(got.Result, want.Result) {
		add("Result", string(got.Result), string(want.Result))
	}
	if got.Error != want.Error {
		add("Error", got.Error, want.Error)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !got.StartedAt.Equal(want.StartedAt) {
		add("StartedAt", got.StartedAt, want.StartedAt)
	}
	if !got.FinishedAt.Equal(want.FinishedAt) {
		add("FinishedAt", got.FinishedAt, want.FinishedAt)
	}
	if len(d) == 0 {
		return ""
	}
	return fmt.Sprint(d)
}

// ids returns the IDs of recs.
func ids(recs []*store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
