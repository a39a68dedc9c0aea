package store

import (
	"bytes"
	"cmp"
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
	ups := make([]pendingUpdate, 0, len(recs))
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
		ups = append(ups, pendingUpdate{rec: r, enc: enc})
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
	updates map[string]pendingUpdate
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
		// Sized like the last batch: under load it fills as fast again.
		s.pending = make(map[string]pendingUpdate, len(b.updates))
	}
	return b
}

// commit writes b in one transaction (one fsync) and wakes its waiters. On
// failure the Creates and Flushes of b get the error and its Updates go
// back to pending unless a newer Update of the same ID is there.
func (s *boltStore) commit(b *batch) error {
	var (
		err     error
		changes []stateChange
	)
	if len(b.creates) > 0 || len(b.updates) > 0 {
		err = dbErr(s.db.Update(func(tx *bolt.Tx) error {
			var err error
			changes, err = apply(tx, b, s.known)
			return err
		}))
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
	if err == nil {
		// After the wake-ups, which need not wait for it; the next
		// transaction (this goroutine's) will.
		s.known.learn(changes)
	}
	return err
}

// failPending is the committer's last act when the final commit after
// Close failed: every waiter still queued gets err and the Updates are
// dropped; Close reports it.
func (s *boltStore) failPending(err error) {
	s.mu.Lock()
	creates, flushes, lost := s.creates, s.flushes, len(s.pending)
	s.creates, s.flushes, s.pending = nil, nil, make(map[string]pendingUpdate)
	s.mu.Unlock()
	for _, c := range creates {
		c.done <- err
	}
	for _, f := range flushes {
		f <- err
	}
	s.finalErr = fmt.Errorf("store: final commit of %s failed, %d updates lost: %w", s.path, lost, err)
}

// apply writes a batch: Creates resolve their idempotency keys in queue
// order (against the file and everything earlier in the batch), then the
// new records are written by ascending ID, then the Updates by ascending
// ID.
//
// Why sorted: bbolt splits nodes only at commit, so within a transaction
// the node that receives a run of new IDs grows to tens of thousands of
// entries, and every insert in front of them shifts the whole node (a
// memmove of megabytes per record when concurrent submitters' batches
// arrive out of ID order). In ascending order each insert lands at the
// end of the node it goes to.
func apply(tx *bolt.Tx, b *batch, known knownStates) ([]stateChange, error) {
	bk, err := openBuckets(tx)
	if err != nil {
		return nil, err
	}
	var (
		puts    []createPut
		claimed map[string]string // idempotency key new in this batch -> its ID
	)
	for _, c := range b.creates {
		for i, r := range c.recs {
			if r.IdempotencyKey != "" {
				if id, dup := claimed[r.IdempotencyKey]; dup {
					c.res[i] = CreateResult{ID: id, Existing: true}
					continue
				}
				if id := bk.idem.Get([]byte(r.IdempotencyKey)); id != nil {
					c.res[i] = CreateResult{ID: string(id), Existing: true}
					continue
				}
				if claimed == nil {
					claimed = make(map[string]string)
				}
				claimed[r.IdempotencyKey] = r.ID
			}
			puts = append(puts, createPut{rec: r, enc: c.enc[i]})
			c.res[i] = CreateResult{ID: r.ID}
		}
	}
	// Stable: of two Creates of one ID the later one is written last and
	// wins, as in queue order.
	slices.SortStableFunc(puts, func(a, b createPut) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	changes := make([]stateChange, 0, len(puts)+len(b.updates))
	// IDs above the largest stored one are new: no need to look for an
	// old version (the engine's IDs ascend, so this is the usual case).
	var last []byte
	if len(puts) > 0 {
		last, _ = bk.tasks.Cursor().Last()
		last = bytes.Clone(last) // a Put may move the page it lies on
	}
	for i, p := range puts {
		old := oldAbsent
		switch {
		case i > 0 && puts[i-1].rec.ID == p.rec.ID:
			// Created twice in this batch: known predates it.
			old = oldUnknown
		case last != nil && p.rec.ID <= string(last):
			old = known.lookup(p.rec.ID)
		}
		if err := bk.put(p.rec, p.enc, false, old); err != nil {
			return nil, err
		}
		if old == oldAbsent {
			last = []byte(p.rec.ID)
		}
		changes = append(changes, stateChange{p.rec.ID, int8(p.rec.State.index())})
	}
	if len(claimed) > 0 {
		keyed := make([]*Record, 0, len(claimed))
		for _, p := range puts {
			if p.rec.IdempotencyKey != "" {
				keyed = append(keyed, p.rec)
			}
		}
		slices.SortFunc(keyed, func(a, b *Record) int { return cmp.Compare(a.IdempotencyKey, b.IdempotencyKey) })
		for _, r := range keyed {
			if err := bk.idem.Put([]byte(r.IdempotencyKey), []byte(r.ID)); err != nil {
				return nil, fmt.Errorf("task %q: idempotency key: %w", r.ID, err)
			}
		}
	}
	// Sorted as values: looking each ID up in the map again costs more.
	ups := make([]pendingUpdate, 0, len(b.updates))
	for _, u := range b.updates {
		ups = append(ups, u)
	}
	slices.SortFunc(ups, func(a, b pendingUpdate) int { return cmp.Compare(a.rec.ID, b.rec.ID) })
	j := 0 // puts[:j] have IDs below u's
	for _, u := range ups {
		old := known.lookup(u.rec.ID)
		for j < len(puts) && puts[j].rec.ID < u.rec.ID {
			j++
		}
		if j < len(puts) && puts[j].rec.ID == u.rec.ID {
			old = oldUnknown // created in this batch: known predates it
		}
		if err := bk.put(u.rec, u.enc, true, old); err != nil {
			return nil, err
		}
		changes = append(changes, stateChange{u.rec.ID, int8(u.rec.State.index())})
	}
	if err := bk.flushExpiry(); err != nil {
		return nil, err
	}
	return changes, nil
}

// createPut is a new record of a batch, with its encoding.
type createPut struct {
	rec *Record
	enc []byte
}

// put stores r (encoded as enc) and moves its ID between the indexes. old
// is what the caller knows of the stored version: oldUnknown (read it),
// oldAbsent (there is none), or the index of its state, which is not
// terminal (so it has no expiry entry). With healIdem it also registers
// r's idempotency key if the key is unknown: a record the janitor removed
// while an Update of it was pending comes back whole.
//
// Keys go through bk.key: bbolt copies the key of a Put and only reads
// that of a Get or Delete (values it keeps, so those are never scratch).
func (bk *buckets) put(r *Record, enc []byte, healIdem bool, old int8) error {
	id := append(bk.key[:0], r.ID...)
	bk.key = id
	newState := r.State.index()
	newFinished := unixNano(r.FinishedAt)
	keepIndex, keepExpiry := false, false
	switch {
	case old >= 0:
		keepIndex = int(old) == newState
		if !keepIndex {
			if err := cursorDelete(bk.cursor(&bk.stateCur[old], bk.state[old]), id); err != nil {
				return fmt.Errorf("task %q: %w", r.ID, err)
			}
		}
	case old == oldAbsent:
	default:
		if err := bk.dropOld(r, id, newFinished, &keepIndex, &keepExpiry); err != nil {
			return err
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
	if healIdem && r.IdempotencyKey != "" {
		k := []byte(r.IdempotencyKey)
		if bk.idem.Get(k) == nil {
			if err := bk.idem.Put(k, []byte(r.ID)); err != nil {
				return fmt.Errorf("task %q: idempotency key: %w", r.ID, err)
			}
		}
	}
	if r.State.Terminal() && !keepExpiry {
		bk.expKeys = appendExpiryKey(bk.expKeys, newFinished, r.ID)
		bk.expEnds = append(bk.expEnds, len(bk.expKeys))
	}
	return nil
}

// flushExpiry writes the expiry keys put collected, in key order. put
// visits records by ID, but expiry keys sort by finish time first: put
// straight away, a transaction's thousands of new keys (all later than
// any stored one, so all in the last node, which bbolt splits only at
// commit) would each be inserted in the middle of that ever larger node,
// a memmove of the whole tail per key.
func (bk *buckets) flushExpiry() error {
	if len(bk.expEnds) == 0 {
		return nil
	}
	keys := make([][]byte, len(bk.expEnds))
	start := 0
	for i, end := range bk.expEnds {
		keys[i] = bk.expKeys[start:end:end]
		start = end
	}
	slices.SortFunc(keys, bytes.Compare)
	for _, k := range keys {
		if err := bk.expiry.Put(k, []byte{}); err != nil { // bbolt copies k
			return fmt.Errorf("expiry index: %w", err)
		}
	}
	bk.expKeys, bk.expEnds = bk.expKeys[:0], bk.expEnds[:0]
	return nil
}

// cursor returns *c, first making it a cursor of b.
func (bk *buckets) cursor(c **bolt.Cursor, b *bolt.Bucket) *bolt.Cursor {
	if *c == nil {
		*c = b.Cursor()
	}
	return *c
}

// cursorGet is Bucket.Get of key through the kept cursor c (of a bucket
// that holds no nested buckets).
func cursorGet(c *bolt.Cursor, key []byte) []byte {
	if k, v := c.Seek(key); bytes.Equal(k, key) {
		return v
	}
	return nil
}

// cursorDelete is Bucket.Delete of key through the kept cursor c: Seek
// repositions it from the root, so earlier writes cannot have left it
// stale.
func cursorDelete(c *bolt.Cursor, key []byte) error {
	if k, _ := c.Seek(key); bytes.Equal(k, key) {
		return c.Delete()
	}
	return nil
}

// dropOld reads the stored version of r, if any, and removes its index
// entries that r does not keep. id is r.ID; it may alias bk.key.
func (bk *buckets) dropOld(r *Record, id []byte, newFinished int64, keepIndex, keepExpiry *bool) error {
	old := cursorGet(bk.cursor(&bk.tasksCur, bk.tasks), id)
	if old == nil {
		return nil
	}
	m, err := peekRecord(old)
	if err != nil {
		// Unreadable old version: clear the ID from every state
		// index; a stale expiry entry is skipped by the janitor.
		for i := range bk.state {
			if err := cursorDelete(bk.cursor(&bk.stateCur[i], bk.state[i]), id); err != nil {
				return fmt.Errorf("task %q: %w", r.ID, err)
			}
		}
		return nil
	}
	*keepIndex = m.state == r.State
	*keepExpiry = *keepIndex && m.finishedAt == newFinished
	if !*keepIndex {
		i := m.state.index()
		if err := cursorDelete(bk.cursor(&bk.stateCur[i], bk.state[i]), id); err != nil {
			return fmt.Errorf("task %q: %w", r.ID, err)
		}
	}
	if m.state.Terminal() && !*keepExpiry {
		// The key may be among those not yet written (one ID put twice in
		// a transaction): write them first so that it is removed.
		if err := bk.flushExpiry(); err != nil {
			return err
		}
		if err := cursorDelete(bk.cursor(&bk.expiryCur, bk.expiry), expiryKey(m.finishedAt, id)); err != nil {
			return fmt.Errorf("task %q: %w", r.ID, err)
		}
	}
	return nil
}

// What put knows of a stored version besides its state index.
const (
	oldUnknown int8 = -1
	oldAbsent  int8 = -2
)

// knownStates remembers, for records this process committed in a state
// that is not terminal, that state: the committer then moves their index
// entries without reading the old record first (a B-tree search per
// Update, and the most common write). Only the committer touches it, and
// only with what a transaction that committed wrote, so it never
// disagrees with the file; the janitor removes terminal records only. An
// ID it does not hold is read from the file as before.
//
// It is keyed by the number an engine ID (16 lowercase hex digits)
// spells: a map without pointers costs the garbage collector nothing and
// hashes faster. Other IDs are not remembered.
type knownStates map[uint64]int8

// maxKnownStates bounds knownStates (about 20 bytes an entry, so 20 MiB
// at most); past it, new records are simply looked up in the file.
const maxKnownStates = 1 << 20

// stateChange is the state a committed record was written in.
type stateChange struct {
	id    string
	state int8
}

// hexID is the number the engine ID id spells, if it is one.
func hexID(id string) (uint64, bool) {
	if len(id) != 16 {
		return 0, false
	}
	var n uint64
	for i := 0; i < 16; i++ {
		c := id[i]
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// lookup returns the state index of the stored version of id, or
// oldUnknown.
func (k knownStates) lookup(id string) int8 {
	if n, ok := hexID(id); ok {
		if st, ok := k[n]; ok {
			return st
		}
	}
	return oldUnknown
}

// learn records the states a committed transaction wrote.
func (k knownStates) learn(changes []stateChange) {
	for _, c := range changes {
		n, ok := hexID(c.id)
		if !ok {
			continue
		}
		if allStates()[c.state].Terminal() {
			delete(k, n)
		} else if _, ok := k[n]; ok || len(k) < maxKnownStates {
			k[n] = c.state
		}
	}
}
