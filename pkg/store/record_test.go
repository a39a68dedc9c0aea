package store_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// sampleRecords are records that exercise every field and its extremes.
func sampleRecords() []*store.Record {
	return []*store.Record{
		{ID: taskID(1), State: store.Queued, WorkerSlot: -1},
		{
			ID: "00000000deadbeef", Kind: "cpu", Payload: []byte(`{"n":30}`), Key: "k", TimeoutMs: 250,
			MaxAttempts: 3, IdempotencyKey: "idem", State: store.Succeeded, Attempts: 2, WorkerSlot: 1,
			Result: []byte(`{"fib":832040}`), CreatedAt: t0, StartedAt: t0.Add(time.Millisecond),
			FinishedAt: t0.Add(time.Second),
		},
		{
			ID: "x", Kind: "\xff", Key: "\x00\x01", TimeoutMs: math.MaxInt64, MaxAttempts: math.MaxInt32,
			IdempotencyKey: "\xc3\x28", State: store.Dead, Attempts: math.MinInt32, WorkerSlot: math.MinInt32,
			Result: make([]byte, 1000), Error: "bad \xe2\x82 utf-8",
			CreatedAt: time.Unix(0, math.MinInt64+1), StartedAt: time.Unix(-1, 0), FinishedAt: time.Unix(0, math.MaxInt64),
		},
		{ID: taskID(4), State: store.Canceled, WorkerSlot: math.MaxInt32, FinishedAt: time.Unix(1, 0)},
		{ID: taskID(5), State: store.Running},
		{ID: taskID(6), State: store.Failed, Error: "timeout"},
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, want := range sampleRecords() {
		b, err := store.MarshalRecord(want)
		if err != nil {
			t.Fatalf("Marshal(%q): %v", want.ID, err)
		}
		got, err := store.UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("Unmarshal(%q): %v", want.ID, err)
		}
		if d := diffRecord(got, want); d != "" {
			t.Errorf("%q: %s", want.ID, d)
		}
		id, idem, st, fin, err := store.PeekRecord(b)
		if err != nil || id != want.ID || idem != want.IdempotencyKey || st != want.State || fin != unixNano(want.FinishedAt) {
			t.Errorf("Peek(%q) = %q %q %s %d %v", want.ID, id, idem, st, fin, err)
		}
	}
}

// unixNano mirrors the encoding's time rule: 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func TestMarshalInvalid(t *testing.T) {
	t.Parallel()
	for name, r := range map[string]*store.Record{
		"nil":        nil,
		"no state":   {ID: "a"},
		"bad state":  {ID: "a", State: "paused"},
		"cased":      {ID: "a", State: "Queued"},
		"whitespace": {ID: "a", State: "queued "},
	} {
		if _, err := store.MarshalRecord(r); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestUnmarshalGarbage(t *testing.T) {
	t.Parallel()
	valid, err := store.MarshalRecord(sampleRecords()[1])
	if err != nil {
		t.Fatal(err)
	}
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	stateField := func(n uint64) []byte { return protowire.AppendVarint(tag(8, protowire.VarintType), n) }
	for name, b := range map[string][]byte{
		"empty (no state)":   nil,
		"truncated":          valid[:len(valid)-3],
		"state 0":            stateField(0),
		"state 7":            stateField(7),
		"state negative":     stateField(math.MaxUint64),
		"reserved wire type": append(stateField(1), 0x0f),
		"bad length":         append(stateField(1), append(tag(3, protowire.BytesType), 0x7f, 'a')...),
		"overlong varint":    append(tag(5, protowire.VarintType), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
		"text":               []byte("hello, world"),
	} {
		if _, err := store.UnmarshalRecord(b); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Unmarshal(%s): err = %v, want ErrCorrupt", name, err)
		}
		if _, _, _, _, err := store.PeekRecord(b); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("Peek(%s): err = %v, want ErrCorrupt", name, err)
		}
	}
}

// FuzzUnmarshalRecord: UnmarshalRecord never panics, fails only with
// ErrCorrupt, agrees with the index scanner, and whatever it accepts
// survives a Marshal/Unmarshal round trip unchanged.
func FuzzUnmarshalRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		b, err := store.MarshalRecord(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x40, 0x01, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := store.UnmarshalRecord(b)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		id, idem, st, fin, err := store.PeekRecord(b)
		if err != nil {
			t.Fatalf("Unmarshal accepted what Peek rejects: %v", err)
		}
		if id != r.ID || idem != r.IdempotencyKey || st != r.State || fin != unixNano(r.FinishedAt) {
			t.Fatalf("Peek = %q %q %s %d, Unmarshal = %q %q %s %d",
				id, idem, st, fin, r.ID, r.IdempotencyKey, r.State, unixNano(r.FinishedAt))
		}
		b2, err := store.MarshalRecord(r)
		if err != nil {
			t.Fatalf("Marshal of a decoded record: %v", err)
		}
		r2, err := store.UnmarshalRecord(b2)
		if err != nil {
			t.Fatalf("Unmarshal of a re-marshaled record: %v", err)
		}
		if d := diffRecord(r2, r); d != "" {
			t.Fatalf("round trip: %s", d)
		}
	})
}
