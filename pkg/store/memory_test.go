package store_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// TestIDShapes runs random work with IDs of every shape through each
// store and a model: the memory store indexes engine-made IDs (16
// lowercase hex digits) by number and others by string, and List, paging
// cursors of any shape, NonTerminal and the janitor must not tell.
func TestIDShapes(t *testing.T) {
	for _, k := range kinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			clk := newClock(now.Add(-3 * time.Hour)) // nothing expires yet
			s := k.open(t, &store.Options{Retention: time.Hour, JanitorInterval: time.Millisecond, Now: clk.Now, NoSync: true})
			rng := mrand.New(mrand.NewPCG(13, 17))
			var idList []string
			seen := map[string]bool{}
			for len(idList) < 1500 {
				n := rng.Uint64N(1 << 20)
				var id string
				switch rng.IntN(8) {
				case 0:
					id = fmt.Sprintf("%016X", n) // upper case: not numeric
				case 1:
					id = fmt.Sprintf("%x", n) // short
				case 2:
					id = fmt.Sprintf("%016x-%d", n, rng.IntN(3)) // longer, numeric prefix
				case 3:
					id = fmt.Sprintf("%015xg", n)
				case 4:
					id = "task/" + fmt.Sprint(n)
				default:
					id = fmt.Sprintf("%016x", n)
				}
				if !seen[id] {
					seen[id] = true
					idList = append(idList, id)
				}
			}
			idList = append(idList, "0000000000000000", "zzzz")
			// Batches of consecutive engine IDs (the memory store's runs),
			// ascending, with a few out of order.
			var batches [][]string
			for b := range 40 {
				batches = append(batches, nil)
				base := uint64(1)<<40 + uint64(b)*1000
				if b%7 == 3 {
					base = uint64(1)<<30 + uint64(b)*1000 // below earlier ones
				}
				for i := range uint64(10 + b%3*20) {
					idList = append(idList, fmt.Sprintf("%016x", base+i))
					batches[b] = append(batches[b], idList[len(idList)-1])
				}
			}
			idList = append(idList, "ffffffffffffffff")
			model := map[string]*store.Record{}
			rec := func(id string) *store.Record {
				return &store.Record{ID: id, Kind: "echo", State: store.Queued, WorkerSlot: -1, CreatedAt: now, Payload: []byte(id)}
			}
			idemOwner := map[string]string{}
			for start := 0; start < len(idList); {
				end := min(start+1+rng.IntN(150), len(idList))
				var recs []*store.Record
				for _, id := range idList[start:end] {
					r := rec(id)
					if rng.IntN(40) == 0 {
						r.IdempotencyKey = fmt.Sprint("k", rng.IntN(20))
					}
					recs = append(recs, r)
				}
				res := mustCreate(t, s, recs...)
				for i, r := range recs {
					owner, dup := idemOwner[r.IdempotencyKey]
					if r.IdempotencyKey != "" && dup {
						if res[i] != (store.CreateResult{ID: owner, Existing: true}) {
							t.Fatalf("Create %s with known key: %+v, want %s", r.ID, res[i], owner)
						}
						continue
					}
					if r.IdempotencyKey != "" {
						idemOwner[r.IdempotencyKey] = r.ID
					}
					model[r.ID] = r
				}
				start = end
			}
			states := []store.State{store.Queued, store.Running, store.Succeeded, store.Failed, store.Dead, store.Canceled}
			var stored []string
			for id := range model {
				stored = append(stored, id)
			}
			slices.Sort(stored)
			for i := range 5000 {
				id := stored[rng.IntN(len(stored))]
				st := states[rng.IntN(len(states))]
				r := with(model[id], func(r *store.Record) {
					r.State, r.Attempts = st, int32(i)
					r.FinishedAt = time.Time{}
					if st.Terminal() {
						// Some finished long ago, for the janitor.
						r.FinishedAt = now.Add(-time.Duration(rng.IntN(2)) * 2 * time.Hour)
					}
				})
				model[id] = r
				s.Update(r)
			}
			// Whole batches finish long ago (so their runs empty), and
			// Updates store IDs never created.
			for b, batch := range batches {
				if b%4 == 0 {
					continue
				}
				for _, id := range batch {
					if model[id] == nil {
						continue
					}
					r := with(model[id], func(r *store.Record) { r.State, r.FinishedAt = store.Dead, now.Add(-2*time.Hour) })
					model[id] = r
					s.Update(r)
				}
			}
			for _, n := range []uint64{1<<40 - 1, 1<<40 + 5, 1<<40 + 40*1000 + 7, 1<<41 + 1, 1<<41 + 2, 1<<41 + 3} {
				r := rec(fmt.Sprintf("%016x", n))
				if model[r.ID] == nil {
					model[r.ID] = r
					s.Update(r)
				}
			}
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			cursors := []string{"", "0", "00000000000000001", "8", "f", "ffffffffffffffff", "fffffffffffffffg", "g", "A", "task/5", "~", "\xff"}
			for range 40 {
				id := stored[rng.IntN(len(stored))]
				cursors = append(cursors, id, id[:rng.IntN(len(id))], id+"\x00", id+"~")
			}
			compare := func(when string) {
				t.Helper()
				for _, st := range states {
					var all []string
					for id, r := range model {
						if r.State == st {
							all = append(all, id)
						}
					}
					slices.Sort(all)
					if got := listIDs(t, s, st); !slices.Equal(got, all) {
						t.Fatalf("%s: List(%s) = %d IDs, want %d", when, st, len(got), len(all))
					}
					for _, after := range cursors {
						page, err := s.List(context.Background(), store.ListOptions{State: st, After: after, Limit: 7})
						if err != nil {
							t.Fatal(err)
						}
						j, _ := slices.BinarySearch(all, after+"\x00")
						want := all[j:min(len(all), j+7)]
						if got := ids(page); !slices.Equal(got, want) {
							t.Fatalf("%s: List(%s, after %q) = %q, want %q", when, st, after, got, want)
						}
					}
				}
				var open, got []string
				for id, r := range model {
					if !r.State.Terminal() {
						open = append(open, id)
					}
				}
				slices.Sort(open)
				if err := s.NonTerminal(context.Background(), func(r *store.Record) error {
					got = append(got, r.ID)
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, open) {
					t.Fatalf("%s: NonTerminal: %d IDs, want %d", when, len(got), len(open))
				}
				for id, want := range model {
					if d := diffRecord(mustGet(t, s, id), want); d != "" {
						t.Fatalf("%s: Get(%s): %s", when, id, d)
					}
				}
			}
			compare("before expiry")

			// The janitor drops what finished two hours ago.
			clk.Add(3 * time.Hour)
			var expired []string
			for id, r := range model {
				if r.State.Terminal() && r.FinishedAt.Before(now.Add(-time.Hour)) {
					expired = append(expired, id)
					delete(model, id)
				}
			}
			if len(expired) < 100 {
				t.Fatalf("only %d records to expire", len(expired))
			}
			waitFor(t, "expiry", func() bool {
				for _, id := range expired {
					if exists(t, s, id) {
						return false
					}
				}
				return true
			})
			compare("after expiry")

			// Expired IDs come back (reusing the memory store's slots)
			// beside new ones.
			var recs []*store.Record
			for i, id := range expired {
				if i%2 == 0 {
					id = strings.ToUpper(id) + "!"
				}
				if model[id] == nil {
					r := rec(id)
					recs = append(recs, r)
					model[id] = r
				}
			}
			mustCreate(t, s, recs...)
			compare("after re-create")
		})
	}
}
