package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// overlayLocked returns the record of the pending Update of id, or nil.
// s.mu must be held.
func (s *boltStore) overlayLocked(id string) *Record {
	if u, ok := s.pending[id]; ok {
		return u.rec
	}
	if u, ok := s.committing[id]; ok {
		return u.rec
	}
	return nil
}

// Get implements Store.
func (s *boltStore) Get(ctx context.Context, id string) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	u := s.overlayLocked(id)
	s.mu.Unlock()
	if u != nil {
		return u.clone(), nil
	}
	// The overlay is read before the transaction begins: an Update missing
	// from it has already committed, so the transaction sees it.
	var rec *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		tasks := tx.Bucket([]byte(bucketTasks))
		if tasks == nil {
			return fmt.Errorf("%w: missing bucket %s", ErrCorrupt, bucketTasks)
		}
		v := tasks.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("store: task %q: %w", id, ErrNotFound)
		}
		var err error
		rec, err = UnmarshalRecord(v)
		if err != nil {
			return fmt.Errorf("store: task %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, dbErr(err)
	}
	return rec, nil
}

// List implements Store.
func (s *boltStore) List(ctx context.Context, opt ListOptions) ([]*Record, error) {
	if !opt.State.Valid() {
		return nil, fmt.Errorf("store: list: %w: state %q", ErrInvalid, opt.State)
	}
	limit := opt.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	return s.scan(ctx, []State{opt.State}, opt.After, limit)
}

// NonTerminal implements Store.
func (s *boltStore) NonTerminal(ctx context.Context, fn func(*Record) error) error {
	after := ""
	for {
		recs, err := s.scan(ctx, nonTerminalStates(), after, scanChunk)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < scanChunk {
			return nil
		}
		after = recs[len(recs)-1].ID
	}
}

// scan returns up to limit records in one of the states want with IDs
// above after, by ascending ID, merging the overlay of pending Updates with
// the state indexes of the file.
func (s *boltStore) scan(ctx context.Context, want []State, after string, limit int) ([]*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wanted := func(st State) bool { return slices.Contains(want, st) }
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	// shadow holds the overlay IDs in range: the file's version of them is
	// stale. over holds those of them that are in a wanted state.
	shadow := make(map[string]struct{})
	var over []*Record
	for _, m := range []map[string]pendingUpdate{s.pending, s.committing} {
		for id, u := range m {
			if id <= after {
				continue
			}
			if _, seen := shadow[id]; seen {
				continue
			}
			shadow[id] = struct{}{}
			if wanted(u.rec.State) {
				over = append(over, u.rec)
			}
		}
	}
	s.mu.Unlock()
	slices.SortFunc(over, func(a, b *Record) int { return cmp.Compare(a.ID, b.ID) })
	if len(over) > limit {
		over = over[:limit]
	}

	var fromDB []*Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := openBuckets(tx)
		if err != nil {
			return err
		}
		m := newMergeCursor(b, want, after)
		for len(fromDB) < limit {
			id := m.next()
			if id == nil {
				return nil
			}
			if _, ok := shadow[string(id)]; ok {
				continue
			}
			v := b.tasks.Get(id)
			if v == nil {
				return fmt.Errorf("%w: state index names task %q, which is not stored", ErrCorrupt, id)
			}
			r, err := UnmarshalRecord(v)
			if err != nil {
				return fmt.Errorf("store: task %q: %w", id, err)
			}
			fromDB = append(fromDB, r)
			if len(fromDB)%256 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, dbErr(err)
	}

	out := make([]*Record, 0, min(limit, len(fromDB)+len(over)))
	i, j := 0, 0
	for len(out) < limit && (i < len(fromDB) || j < len(over)) {
		if j == len(over) || (i < len(fromDB) && fromDB[i].ID < over[j].ID) {
			out = append(out, fromDB[i])
			i++
		} else {
			out = append(out, over[j].clone())
			j++
		}
	}
	return out, nil
}

// mergeCursor walks several state indexes as one, by ascending ID.
type mergeCursor struct {
	cursors []*bolt.Cursor
	heads   [][]byte
	last    []byte
}

func newMergeCursor(b *buckets, want []State, after string) *mergeCursor {
	m := &mergeCursor{}
	for _, st := range want {
		c := b.state[st.index()].Cursor()
		k, _ := c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, _ = c.Next()
		}
		m.cursors = append(m.cursors, c)
		m.heads = append(m.heads, k)
	}
	return m
}

// next returns the next ID, or nil at the end. The slice is valid for the
// life of the transaction.
func (m *mergeCursor) next() []byte {
	for {
		best := -1
		for i, k := range m.heads {
			if k != nil && (best < 0 || string(k) < string(m.heads[best])) {
				best = i
			}
		}
		if best < 0 {
			return nil
		}
		k := m.heads[best]
		m.heads[best], _ = m.cursors[best].Next()
		if m.last != nil && string(k) == string(m.last) {
			continue // the same ID in two indexes: report it once
		}
		m.last = k
		return k
	}
}
