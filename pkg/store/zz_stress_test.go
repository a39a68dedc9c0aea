package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func TestZZStressDamage(t *testing.T) {
	seed, _ := strconv.Atoi(os.Getenv("SEED"))
	rounds, _ := strconv.Atoi(os.Getenv("ROUNDS"))
	if rounds == 0 {
		rounds = 3000
	}
	good := filepath.Join(t.TempDir(), "good.db")
	s, _ := store.OpenBolt(good, nil)
	for b := range 10 {
		var recs []*store.Record
		for i := range 200 {
			r := newRecord(b*200 + i + 1)
			r.IdempotencyKey = fmt.Sprint("key-", b*200+i)
			recs = append(recs, r)
		}
		_, _ = s.Create(context.Background(), recs)
		for i, r := range recs {
			if i%3 == 0 {
				s.Update(with(r, func(r *store.Record) { r.State = store.Succeeded; r.FinishedAt = time.Unix(int64(i), 0) }))
			}
			if i%7 == 0 {
				s.Update(with(r, func(r *store.Record) { r.State = store.Running }))
			}
		}
		_ = s.Flush(context.Background())
	}
	_ = s.Close()
	orig, _ := os.ReadFile(good)
	ps := os.Getpagesize()
	pages := len(orig) / ps
	rng := mrand.New(mrand.NewPCG(uint64(seed), 4))
	corrupt, ok := 0, 0
	dir := t.TempDir()
	for round := range rounds {
		data := bytes.Clone(orig)
		switch rng.IntN(4) {
		case 0: // bit flips / random bytes
			for range 1 + rng.IntN(8) {
				off := 2*ps + rng.IntN(len(data)-2*ps)
				if rng.IntN(2) == 0 {
					data[off] ^= 1 << rng.IntN(8)
				} else {
					data[off] = byte(rng.IntN(256))
				}
			}
		case 1: // header bytes of a page
			p := 2 + rng.IntN(pages-2)
			off := p*ps + rng.IntN(16+32)
			data[off] = byte(rng.IntN(256))
		case 2: // copy one page over another
			a, b := 2+rng.IntN(pages-2), 2+rng.IntN(pages-2)
			copy(data[a*ps:(a+1)*ps], orig[b*ps:(b+1)*ps])
		case 3: // element header bytes
			p := 2 + rng.IntN(pages-2)
			e := 16 + 16*rng.IntN(20) + rng.IntN(16)
			data[p*ps+e] = byte(rng.IntN(256))
		}
		path := filepath.Join(dir, fmt.Sprintf("r%d.db", round))
		_ = os.WriteFile(path, data, 0o600)
		_ = os.WriteFile("/tmp/last.db", data, 0o600)
		_ = os.WriteFile("/tmp/orig.db", orig, 0o600)
		s, err := store.OpenBolt(path, nil)
		if err != nil {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Fatalf("round %d: %v", round, err)
			}
			after, _ := os.ReadFile(path)
			if !bytes.Equal(after, data) {
				t.Fatalf("changed")
			}
			corrupt++
			os.Remove(path)
			continue
		}
		ok++
		_ = s.NonTerminal(context.Background(), func(*store.Record) error { return nil })
		for _, st := range []store.State{store.Queued, store.Running, store.Succeeded} {
			_, _ = s.List(context.Background(), store.ListOptions{State: st, Limit: 5000})
		}
		var recs []*store.Record
		for i := range 300 {
			recs = append(recs, newRecord(5000+i))
		}
		_, _ = s.Create(context.Background(), recs)
		for i := 1; i < 2000; i += 5 {
			s.Update(with(newRecord(i), func(r *store.Record) { r.State = store.Dead }))
		}
		_ = s.Close()
		os.Remove(path)
	}
	t.Logf("corrupt %d ok %d", corrupt, ok)
}
