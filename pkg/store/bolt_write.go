package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Create implements Store.
func (s *boltStore) Create(ctx context.Context, recs []*Record) ([]CreateResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := &createReq{
		recs: recs,
		enc:  make([][]byte, len(recs)),
		res:  make([]CreateResult, len(recs)),
		done: make(chan error, 1),
	}
	for i, r := range recs {
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("store: create: %w", err)
		}
		enc, err := MarshalRecord(r)
		if err != nil {
			return nil, fmt.Errorf("store: create: %w", err)
		}
		req.enc[i] = enc
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if len(recs) == 0 {
		s.mu.Unlock()
		return req.res, nil
	}
	s.creates = append(s.creates, req)
	s.mu.Unlock()
	s.signal()
	select {
	case err := <-req.done:
		if err != nil {
			return nil, fmt.Errorf("store: create: %w", err)
		}
		return req.res, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Update implements Store.
func (s *boltStore) Update(recs ...*Record) {
	ups := make([]*pendingUpdate, 0, len(recs))
	var bad error
	for _, r := range recs {
		err := validate(r)
		var enc []byte
		if err == nil {
			enc, err = MarshalRecord(r)
		}
		if err != nil {
			if bad == nil {
				bad = fmt.Errorf("store: update dropped: %w", err)
			}
			continue
		}
		ups = append(ups, &pendingUpdate{rec: r, enc: enc})
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if s.invalid == nil {
		s.invalid = bad
	}
	for _, u := range ups {
		s.pending[u.rec.ID] = u
	}
	s.mu.Unlock()
	if len(ups) > 0 {
		s.signal()
	}
}

// Flush implements Store.
func (s *boltStore) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	invalid := s.invalid
	s.invalid = nil
	s.flushes = append(s.flushes, done)
	s.mu.Unlock()
	s.signal()
	select {
	case err := <-done:
		if err != nil {
			err = fmt.Errorf("store: flush: %w", err)
		}
		return errors.Join(err, invalid)
	case <-ctx.Done():
		return errors.Join(ctx.Err(), invalid)
	}
}

// signal wakes the committer.
func (s *boltStore) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// commitRetryDelay is how long the committer waits after a failed
// transaction before it writes the re-queued Updates again.
const commitRetryDelay = 100 * time.Millisecond

// batch is everything one transaction of the committer writes.
type batch struct {
	creates []*createReq
	updates map[string]*pendingUpdate
	flushes []chan error
}

func (b *batch) empty() bool {
	return len(b.creates) == 0 && len(b.updates) == 0 && len(b.flushes) == 0
}

// commitLoop is the committer: it owns the writes of Create and Update.
// After Close it commits what is still pending and exits.
func (s *boltStore) commitLoop() {
	defer s.wg.Done()
	for {
		stopping := false
		select {
		case <-s.kick:
		case <-s.stop:
			stopping = true
		}
		for {
			b := s.take()
			if b.empty() {
				break
			}
			err := s.commit(b)
			if err == nil {
				continue
			}
			if stopping {
				s.failPending(err)
				return
			}
			// The Updates are back in pending; try again a little later
			// rather than spin on a failing disk.
			select {
			case <-time.After(commitRetryDelay):
			case <-s.stop:
				stopping = true
			}
		}
		if stopping {
			return
		}
	}
}

// take moves everything pending into a batch; the Updates stay visible in
// s.committing until the batch has committed.
func (s *boltStore) take() *batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &batch{creates: s.creates, flushes: s.flushes}
	s.creates, s.flushes = nil, nil
	if len(s.pending) > 0 {
		b.updates = s.pending
		s.committing = s.pending
		s.pending = make(map[string]*pendingUpdate)
	}
	return b
}

// commit writes b in one transaction (one fsync) and wakes its waiters. On
// failure the Creates and Flushes of b get the error and its Updates go
// back to pending unless a newer Update of the same ID is there.
func (s *boltStore) commit(b *batch) error {
	var err error
	if len(b.creates) > 0 || len(b.updates) > 0 {
		err = dbErr(s.db.Update(func(tx *bolt.Tx) error { return apply(tx, b) }))
	}
	s.mu.Lock()
	if err != nil {
		for id, u := range b.updates {
			if _, newer := s.pending[id]; !newer {
				s.pending[id] = u
			}
		}
	}
	s.committing = nil
	s.mu.Unlock()
	for _, c := range b.creates {
		c.done <- err
	}
	for _, f := range b.flushes {
		f <- err
	}
	return err
}

// failPending is the committer's last act when the final commit after
// Close failed: every waiter still queued gets err and the Updates are
// dropped; Close reports it.
func (s *boltStore) failPending(err error) {
	s.mu.Lock()
	creates, flushes, lost := s.creates, s.flushes, len(s.pending)
	s.creates, s.flushes, s.pending = nil, nil, make(map[string]*pendingUpdate)
	s.mu.Unlock()
	for _, c := range creates {
		c.done <- err
	}
	for _, f := range flushes {
		f <- err
	}
	s.finalErr = fmt.Errorf("store: final commit of %s failed, %d updates lost: %w", s.path, lost, err)
}

// apply writes a batch: Creates in queue order (so idempotency keys resolve
// against the file and everything earlier in the batch), then Updates by
// ascending ID.
func apply(tx *bolt.Tx, b *batch) error {
	bk, err := openBuckets(tx)
	if err != nil {
		return err
	}
	for _, c := range b.creates {
		for i, r := range c.recs {
			var key []byte
			if r.IdempotencyKey != "" {
				key = []byte(r.IdempotencyKey)
				if id := bk.idem.Get(key); id != nil {
					c.res[i] = CreateResult{ID: string(id), Existing: true}
					continue
				}
			}
			if err := bk.put(r, c.enc[i], false); err != nil {
				return err
			}
			if key != nil {
				if err := bk.idem.Put(key, []byte(r.ID)); err != nil {
					return fmt.Errorf("task %q: idempotency key: %w", r.ID, err)
				}
			}
			c.res[i] = CreateResult{ID: r.ID}
		}
	}
	ids := make([]string, 0, len(b.updates))
	for id := range b.updates {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		u := b.updates[id]
		if err := bk.put(u.rec, u.enc, true); err != nil {
			return err
		}
	}
	return nil
}

// put stores r (encoded as enc) and moves its ID between the indexes. With
// healIdem it also registers r's idempotency key if the key is unknown: a
// record the janitor removed while an Update of it was pending comes back
// whole.
func (bk *buckets) put(r *Record, enc []byte, healIdem bool) error {
	id := []byte(r.ID)
	newState := r.State.index()
	newFinished := unixNano(r.FinishedAt)
	keepIndex, keepExpiry := false, false
	if old := bk.tasks.Get(id); old != nil {
		m, err := peekRecord(old)
		if err != nil {
			// Unreadable old version: clear the ID from every state
			// index; a stale expiry entry is skipped by the janitor.
			for _, sb := range bk.state {
				if err := sb.Delete(id); err != nil {
					return fmt.Errorf("task %q: %w", r.ID, err)
				}
			}
		} else {
			keepIndex = m.state == r.State
			keepExpiry = keepIndex && m.finishedAt == newFinished
			if !keepIndex {
				if err := bk.state[m.state.index()].Delete(id); err != nil {
					return fmt.Errorf("task %q: %w", r.ID, err)
				}
			}
			if m.state.Terminal() && !keepExpiry {
				if err := bk.expiry.Delete(expiryKey(m.finishedAt, id)); err != nil {
					return fmt.Errorf("task %q: %w", r.ID, err)
				}
			}
		}
	}
	if err := bk.tasks.Put(id, enc); err != nil {
		return fmt.Errorf("task %q: %w", r.ID, err)
	}
	if !keepIndex {
		if err := bk.state[newState].Put(id, []byte{}); err != nil {
			return fmt.Errorf("task %q: %w", r.ID, err)
		}
	}
	if r.State.Terminal() && !keepExpiry {
		if err := bk.expiry.Put(expiryKey(newFinished, id), []byte{}); err != nil {
			return fmt.Errorf("task %q: %w", r.ID, err)
		}
	}
	if healIdem && r.IdempotencyKey != "" {
		k := []byte(r.IdempotencyKey)
		if bk.idem.Get(k) == nil {
			if err := bk.idem.Put(k, id); err != nil {
				return fmt.Errorf("task %q: idempotency key: %w", r.ID, err)
			}
		}
	}
	return nil
}
