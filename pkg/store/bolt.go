package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bucket names of the bolt file; see the package documentation.
const (
	bucketTasks   = "tasks"
	bucketIdem    = "idem"
	bucketExpiry  = "expiry"
	bucketStatePf = "state/"
)

// fillPercent packs the buckets whose keys arrive mostly in ascending order
// (task IDs, finish times) densely.
const fillPercent = 0.9

// scanChunk is how many records NonTerminal reads per read transaction, so
// that no read transaction lives long enough to hold up the committer.
const scanChunk = 1000

// boltStore is the bbolt implementation of Store.
type boltStore struct {
	db   *bolt.DB
	path string
	opt  Options

	kick chan struct{}  // capacity 1: there is work for the committer
	stop chan struct{}  // closed by Close: the committer drains and exits, the janitor exits
	wg   sync.WaitGroup // the committer and the janitor

	mu         sync.Mutex
	closed     bool
	creates    []*createReq
	pending    map[string]*pendingUpdate // Updates the committer has not taken yet
	committing map[string]*pendingUpdate // Updates in the transaction being committed
	flushes    []chan error
	invalid    error // the first invalid Update since the last Flush

	closeOnce sync.Once
	closeErr  error
	finalErr  error // set by the committer before it exits, read by Close after wg.Wait
}

var _ Store = (*boltStore)(nil)

// pendingUpdate is a record handed to Update with its encoding, made by the
// caller's goroutine so the committer only writes.
type pendingUpdate struct {
	rec *Record
	enc []byte
}

// createReq is one Create call waiting for its batch to commit.
type createReq struct {
	recs []*Record
	enc  [][]byte
	res  []CreateResult // filled by the committer before done
	done chan error     // capacity 1
}

// OpenBolt opens (or creates) the bolt store in the file at path. A nil opt
// means defaults. The parent directory is created 0700 and the file 0600.
//
// An existing non-empty file is checked read-only before anything is
// written to it: a corrupt file gives an error wrapping ErrCorrupt and is
// left unchanged. If another process has the file open, OpenBolt returns an
// error wrapping ErrLocked after opt.LockTimeout.
func OpenBolt(path string, opt *Options) (Store, error) {
	o := opt.withDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: create the directory of %s: %w", path, err)
	}
	switch fi, err := os.Stat(path); {
	case errors.Is(err, fs.ErrNotExist):
		// A new file.
	case err != nil:
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("store: open %s: not a regular file (%s)", path, fi.Mode().Type())
	case fi.Size() > 0:
		if err := verifyFile(path, o.LockTimeout); err != nil {
			return nil, err
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockWait(o.LockTimeout),
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		NoSync:         o.NoSync,
	})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := ensureBuckets(db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &boltStore{
		db:      db,
		path:    path,
		opt:     o,
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		pending: make(map[string]*pendingUpdate),
	}
	s.wg.Add(1)
	go s.commitLoop()
	if o.Retention > 0 {
		s.wg.Add(1)
		go s.janitorLoop()
	}
	return s, nil
}

// boltFlockRetry is how often bbolt retries the file lock; bbolt gives up
// once the time waited exceeds its Timeout minus this interval.
const boltFlockRetry = 50 * time.Millisecond

// lockWait is the bbolt Timeout that makes Open give up after d (and at
// most one retry interval more), not one interval before.
func lockWait(d time.Duration) time.Duration { return d + boltFlockRetry }

// openError classifies an error of bolt.Open.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("store: open %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid),
		errors.Is(err, berrors.ErrVersionMismatch),
		errors.Is(err, berrors.ErrChecksum):
		return fmt.Errorf("store: open %s: %w: %w", path, ErrCorrupt, err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}

// bucketNames lists every bucket the store uses.
func bucketNames() []string {
	names := []string{bucketTasks, bucketIdem, bucketExpiry}
	for _, st := range allStates() {
		names = append(names, stateBucket(st))
	}
	return names
}

// stateBucket is the name of the index bucket of state st.
func stateBucket(st State) string { return bucketStatePf + string(st) }

// ensureBuckets creates the buckets that are missing, writing only if some
// are.
func ensureBuckets(db *bolt.DB) error {
	missing := false
	if err := db.View(func(tx *bolt.Tx) error {
		for _, name := range bucketNames() {
			if tx.Bucket([]byte(name)) == nil {
				missing = true
			}
		}
		return nil
	}); err != nil || !missing {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range bucketNames() {
			if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
}

// buckets are the store's buckets in one transaction.
type buckets struct {
	tasks, idem, expiry *bolt.Bucket
	state               [numStates]*bolt.Bucket
}

// openBuckets looks up the store's buckets in tx.
func openBuckets(tx *bolt.Tx) (*buckets, error) {
	b := &buckets{
		tasks:  tx.Bucket([]byte(bucketTasks)),
		idem:   tx.Bucket([]byte(bucketIdem)),
		expiry: tx.Bucket([]byte(bucketExpiry)),
	}
	ok := b.tasks != nil && b.idem != nil && b.expiry != nil
	for i, st := range allStates() {
		b.state[i] = tx.Bucket([]byte(stateBucket(st)))
		ok = ok && b.state[i] != nil
	}
	if !ok {
		return nil, fmt.Errorf("%w: missing bucket", ErrCorrupt)
	}
	if tx.Writable() {
		b.tasks.FillPercent = fillPercent
		b.expiry.FillPercent = fillPercent
		for _, sb := range b.state {
			sb.FillPercent = fillPercent
		}
	}
	return b, nil
}

// dbErr turns bbolt's "database not open" into ErrClosed.
func dbErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

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

// overlay returns the pending Update of id, or nil. s.mu must be held.
func (s *boltStore) overlayLocked(id string) *pendingUpdate {
	if u, ok := s.pending[id]; ok {
		return u
	}
	if u, ok := s.committing[id]; ok {
		return u
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
		return u.rec.clone(), nil
	}
	// The overlay is read before the transaction begins: an Update missing
	// from it has already committed, so the transaction sees it.
	var rec *Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := openBuckets(tx)
		if err != nil {
			return err
		}
		v := b.tasks.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("store: task %q: %w", id, ErrNotFound)
		}
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
	for _, m := range []map[string]*pendingUpdate{s.pending, s.committing} {
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

// Close implements Store.
func (s *boltStore) Close() error {
	first := false
	s.closeOnce.Do(func() {
		first = true
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.wg.Wait()
		err := s.db.Close()
		if err != nil {
			err = fmt.Errorf("store: close %s: %w", s.path, err)
		}
		s.closeErr = errors.Join(s.finalErr, err)
	})
	if !first {
		return nil
	}
	return s.closeErr
}
