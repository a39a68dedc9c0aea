package store_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func TestZZHealthy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	rng := mrand.New(mrand.NewPCG(9, 9))
	known := map[string]*store.Record{}
	for round := range 300 {
		s, err := store.OpenBolt(path, &store.Options{Retention: time.Millisecond, JanitorInterval: time.Millisecond, NoSync: true})
		if err != nil {
			t.Fatalf("round %d: healthy file refused: %v", round, err)
		}
		ctx := context.Background()
		for range rng.IntN(20) {
			var recs []*store.Record
			for range 1 + rng.IntN(200) {
				id := fmt.Sprintf("%016x", rng.Uint64())
				r := &store.Record{ID: id, State: store.Queued, Payload: []byte(strings.Repeat("p", rng.IntN(300)))}
				if rng.IntN(3) == 0 {
					r.IdempotencyKey = fmt.Sprint("k", rng.IntN(100000))
				}
				recs = append(recs, r)
			}
			res, err := s.Create(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range res {
				if !r.Existing {
					known[r.ID] = recs[i]
				}
			}
		}
		n := 0
		for id, r := range known {
			if n > rng.IntN(3000) {
				break
			}
			n++
			st := []store.State{store.Running, store.Succeeded, store.Dead, store.Queued}[rng.IntN(4)]
			c := *r
			c.State = st
			if st.Terminal() {
				c.FinishedAt = time.Now().Add(-time.Hour)
				delete(known, id)
			} else {
				known[id] = &c
			}
			s.Update(&c)
		}
		time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d live records", len(known))
}
