package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/store"
)

func TestZZStressDamage(t *testing.T) {
	good := validDB(t, 300)
	// add some updates to have more structure
	s, _ := store.OpenBolt(good, nil)
	for i := 1; i <= 300; i += 2 {
		s.Update(with(newRecord(i), func(r *store.Record) { r.State = store.Succeeded; r.IdempotencyKey = fmt.Sprint("k", i) }))
	}
	_ = s.Close()
	orig, _ := os.ReadFile(good)
	ps := os.Getpagesize()
	rng := mrand.New(mrand.NewPCG(3, 4))
	corrupt, ok := 0, 0
	dir := t.TempDir()
	for round := range 3000 {
		data := bytes.Clone(orig)
		nb := 1 + rng.IntN(8)
		for range nb {
			off := 2*ps + rng.IntN(len(data)-2*ps)
			if rng.IntN(2) == 0 {
				data[off] ^= 1 << rng.IntN(8)
			} else {
				data[off] = byte(rng.IntN(256))
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("r%d.db", round))
		_ = os.WriteFile(path, data, 0o600)
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
			_, _ = s.List(context.Background(), store.ListOptions{State: st, Limit: 1000})
		}
		_, _ = s.Create(context.Background(), []*store.Record{newRecord(5000 + round)})
		s.Update(with(newRecord(2), func(r *store.Record) { r.State = store.Dead }))
		_ = s.Close()
		os.Remove(path)
	}
	t.Logf("corrupt %d ok %d", corrupt, ok)
}
