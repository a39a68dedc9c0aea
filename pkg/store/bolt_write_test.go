package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// checkIndexes proves that the state indexes and the expiry index of the
// bolt file hold exactly what its records imply.
func checkIndexes(t *testing.T, db *bolt.DB) {
	t.Helper()
	err := db.View(func(tx *bolt.Tx) error {
		bk, err := openBuckets(tx)
		if err != nil {
			return err
		}
		var wantState [numStates][]string
		var wantExpiry []string
		if err := bk.tasks.ForEach(func(k, v []byte) error {
			m, err := peekRecord(v)
			if err != nil {
				return err
			}
			wantState[m.state.index()] = append(wantState[m.state.index()], string(k))
			if m.state.Terminal() {
				wantExpiry = append(wantExpiry, string(expiryKey(m.finishedAt, k)))
			}
			return nil
		}); err != nil {
			return err
		}
		keys := func(b *bolt.Bucket) []string {
			var out []string
			_ = b.ForEach(func(k, _ []byte) error { out = append(out, string(k)); return nil })
			return out
		}
		for i, st := range allStates() {
			if got := keys(bk.state[i]); !slices.Equal(got, wantState[i]) {
				return fmt.Errorf("index %s = %q, records say %q", st, got, wantState[i])
			}
		}
		slices.Sort(wantExpiry)
		if got := keys(bk.expiry); !slices.Equal(got, wantExpiry) {
			return fmt.Errorf("expiry index = %x, records say %x", got, wantExpiry)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestApplyOneIDTwice writes batches in which Creates arrive out of ID
// order, one ID is created twice and updated in the same transaction with
// different terminal finish times, and an idempotency key repeats: the
// deferred, sorted index writes must leave exactly the indexes the final
// records imply.
func TestApplyOneIDTwice(t *testing.T) {
	t.Parallel()
	db, err := bolt.Open(filepath.Join(t.TempDir(), FileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := ensureBuckets(db); err != nil {
		t.Fatal(err)
	}
	at := func(ms int) time.Time { return time.Unix(1_700_000_000, int64(ms)*1e6) }
	rec := func(id string, st State, fin int, idem string) *Record {
		r := &Record{ID: id, Kind: "echo", State: st, IdempotencyKey: idem, WorkerSlot: -1}
		if st.Terminal() {
			r.FinishedAt = at(fin)
		}
		return r
	}
	req := func(recs ...*Record) *createReq {
		c := &createReq{recs: recs, enc: make([][]byte, len(recs)), res: make([]CreateResult, len(recs))}
		for i, r := range recs {
			c.enc[i], _ = MarshalRecord(r)
		}
		return c
	}
	upd := func(recs ...*Record) map[string]pendingUpdate {
		m := make(map[string]pendingUpdate)
		for _, r := range recs {
			enc, _ := MarshalRecord(r)
			m[r.ID] = pendingUpdate{rec: r, enc: enc}
		}
		return m
	}
	known := make(knownStates)
	run := func(b *batch) {
		t.Helper()
		var changes []stateChange
		if err := db.Update(func(tx *bolt.Tx) error {
			var err error
			changes, err = apply(tx, b, known)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		known.learn(changes)
		checkIndexes(t, db)
	}
	c1 := req(rec("0000000000000005", Succeeded, 9, ""), rec("0000000000000003", Queued, 0, "k"))
	c2 := req(rec("0000000000000001", Queued, 0, ""), rec("0000000000000005", Failed, 3, "k2"),
		rec("0000000000000004", Queued, 0, "k"))
	run(&batch{creates: []*createReq{c1, c2}, updates: upd(
		rec("0000000000000005", Dead, 7, ""),
		rec("0000000000000001", Running, 0, ""),
	)})
	if c2.res[2] != (CreateResult{ID: "0000000000000003", Existing: true}) {
		t.Errorf("repeated key in a batch: %+v", c2.res[2])
	}
	// Known states, a terminal record reopened, a non-hex ID.
	run(&batch{updates: upd(
		rec("0000000000000001", Succeeded, 1, ""),
		rec("0000000000000003", Running, 0, ""),
		rec("0000000000000005", Queued, 0, ""),
		rec("x", Canceled, 2, ""),
	)})
	run(&batch{
		creates: []*createReq{req(rec("0000000000000003", Queued, 0, ""), rec("0000000000000002", Dead, 4, ""))},
		updates: upd(rec("0000000000000003", Failed, 5, ""), rec("x", Queued, 0, "")),
	})
}

// TestBoltIndexesRandom drives a bolt store with random Creates (some of
// existing IDs) and Updates over a few IDs, through many commits, so the
// committer's cache of known states is used and invalidated, then checks
// the indexes and every record, before and after reopening.
func TestBoltIndexesRandom(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := OpenBolt(path, &Options{NoSync: true, Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	model := make(map[string]*Record)
	states := allStates()
	for round := range 300 {
		n := 1 + rng.IntN(20)
		var creates, updates []*Record
		for range n {
			id := fmt.Sprintf("%016x", rng.IntN(64))
			if rng.IntN(3) == 0 {
				id = fmt.Sprintf("id-%d", rng.IntN(8)) // not an engine ID
			}
			st := states[rng.IntN(numStates)]
			r := &Record{ID: id, Kind: "k", State: st, Attempts: int32(round), WorkerSlot: -1}
			if st.Terminal() {
				r.FinishedAt = time.Unix(1_700_000_000, int64(rng.IntN(5))*1e6)
			}
			if rng.IntN(4) == 0 {
				creates = append(creates, r)
			} else {
				updates = append(updates, r)
			}
		}
		if len(creates) > 0 {
			// A batch applies its Creates before its Updates: flush
			// first so that the model's order is the store's.
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Create(ctx, creates); err != nil {
				t.Fatal(err)
			}
			for _, r := range creates {
				model[r.ID] = r.clone()
			}
		}
		for _, r := range updates {
			model[r.ID] = r.clone()
			s.Update(r)
		}
		if rng.IntN(4) == 0 {
			if err := s.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkIndexes(t, s.(*boltStore).db)
	// One ID twice in one Create, after it is known queued and running.
	for _, st := range []State{Queued, Running} {
		x := fmt.Sprintf("%016x", 100+st.index())
		for _, r := range []*Record{{ID: x, State: Queued}, {ID: x, State: st}} {
			if _, err := s.Create(ctx, []*Record{r}); err != nil {
				t.Fatal(err)
			}
		}
		twice := []*Record{{ID: x, State: Failed, FinishedAt: time.Unix(5, 0)}, {ID: x, State: Running, Attempts: 1}}
		if _, err := s.Create(ctx, twice); err != nil {
			t.Fatal(err)
		}
		model[x] = twice[1].clone()
	}
	checkIndexes(t, s.(*boltStore).db)
	check := func(s Store) {
		t.Helper()
		for id, want := range model {
			got, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != want.State || got.Attempts != want.Attempts || !got.FinishedAt.Equal(want.FinishedAt) {
				t.Fatalf("%s: got %+v, want %+v", id, got, want)
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBolt(path, &Options{Retention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkIndexes(t, s.(*boltStore).db)
	check(s)
}
