package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

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
			if r.IdempotencyKey != "" {
				if id := bk.idem.Get([]byte(r.IdempotencyKey)); id != nil {
					c.res[i] = CreateResult{ID: string(id), Existing: true}
					continue
				}
			}
			if err := bk.put(r, c.enc[i]); err != nil {
				return err
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
		if err := bk.put(u.rec, u.enc); err != nil {
			return err
		}
	}
	return nil
}

// put stores r (encoded as enc) and moves its ID between the indexes.
func (bk *buckets) put(r *Record, enc []byte) error {
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
	if r.IdempotencyKey != "" {
		// Also re-registers the key of a record the janitor removed while
		// an Update of it was pending.
		k := []byte(r.IdempotencyKey)
		if bk.idem.Get(k) == nil {
			if err := bk.idem.Put(k, id); err != nil {
				return fmt.Errorf("task %q: idempotency key: %w", r.ID, err)
			}
		}
	}
	return nil
}

// expiryKey is the key of the expiry index: the finish time as 8 bytes that
// sort like the signed number, then the ID.
func expiryKey(finished int64, id []byte) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(finished)^(1<<63))
	return append(k, id...)
}

// parseExpiryKey is the inverse of expiryKey.
func parseExpiryKey(k []byte) (finished int64, id []byte, ok bool) {
	if len(k) <= 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), k[8:], true
}

// janitorBatch bounds the deletions of one janitor transaction.
const janitorBatch = 1000

// janitorLoop removes expired records every JanitorInterval until Close.
func (s *boltStore) janitorLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opt.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// An error here (a failing disk) is retried next tick; the
			// committer reports the disk to the callers that wait on it.
			_ = s.expire()
		}
	}
}

// expire removes terminal records finished before now-Retention, with
// their index entries and idempotency keys, in transactions of at most
// janitorBatch records. Records with a pending Update are left for a later
// round.
func (s *boltStore) expire() error {
	cutoff := unixNano(s.opt.Now().Add(-s.opt.Retention))
	var from []byte // resume after this expiry key
	for {
		select {
		case <-s.stop:
			return nil
		default:
		}
		var keys [][]byte
		err := s.db.View(func(tx *bolt.Tx) error {
			bk, err := openBuckets(tx)
			if err != nil {
				return err
			}
			c := bk.expiry.Cursor()
			k, _ := c.First()
			if from != nil {
				k, _ = c.Seek(from)
				if k != nil && bytes.Equal(k, from) {
					k, _ = c.Next()
				}
			}
			for ; k != nil && len(keys) < janitorBatch; k, _ = c.Next() {
				if at, _, ok := parseExpiryKey(k); ok && at >= cutoff {
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return dbErr(err)
		}
		from = keys[len(keys)-1]
		if err := s.db.Update(func(tx *bolt.Tx) error { return s.expireKeys(tx, keys) }); err != nil {
			return dbErr(err)
		}
		if len(keys) < janitorBatch {
			return nil
		}
	}
}

// expireKeys deletes the records named by expiry keys, checking each again
// inside the transaction.
func (s *boltStore) expireKeys(tx *bolt.Tx, keys [][]byte) error {
	bk, err := openBuckets(tx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		at, id, ok := parseExpiryKey(k)
		if !ok {
			if err := bk.expiry.Delete(k); err != nil {
				return err
			}
			continue
		}
		s.mu.Lock()
		busy := s.overlayLocked(string(id)) != nil
		s.mu.Unlock()
		if busy {
			continue
		}
		if err := bk.expiry.Delete(k); err != nil {
			return err
		}
		v := bk.tasks.Get(id)
		if v == nil {
			continue
		}
		m, err := peekRecord(v)
		if err != nil || !m.state.Terminal() || m.finishedAt != at {
			continue // a stale entry: the record moved on
		}
		var idemKey []byte
		if len(m.idemKey) > 0 {
			idemKey = bytes.Clone(m.idemKey) // m aliases v, which Delete invalidates
		}
		if err := errors.Join(bk.tasks.Delete(id), bk.state[m.state.index()].Delete(id)); err != nil {
			return err
		}
		if idemKey != nil && bytes.Equal(bk.idem.Get(idemKey), id) {
			if err := bk.idem.Delete(idemKey); err != nil {
				return err
			}
		}
	}
	return nil
}
