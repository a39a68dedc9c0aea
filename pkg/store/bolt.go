package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
	pending    map[string]pendingUpdate // Updates the committer has not taken yet
	committing map[string]pendingUpdate // Updates in the transaction being committed
	flushes    []chan error
	invalid    error // the first invalid Update since the last Flush

	known knownStates // the committer's own

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
		pending: make(map[string]pendingUpdate),
		known:   make(knownStates),
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
// are. A database with a bucket of its own is someone else's: ErrForeign.
func ensureBuckets(db *bolt.DB) error {
	missing := false
	if err := db.View(func(tx *bolt.Tx) error {
		ours := make(map[string]bool)
		for _, name := range bucketNames() {
			ours[name] = true
			if tx.Bucket([]byte(name)) == nil {
				missing = true
			}
		}
		return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if !ours[string(name)] {
				return fmt.Errorf("%w: it has a bucket %q", ErrForeign, name)
			}
			return nil
		})
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

	// Kept by put for the life of a write transaction: Bucket.Get and
	// Bucket.Delete allocate a cursor and grow its stack on every call,
	// while Seek on a kept cursor reuses both (see seekCursor).
	stateCur            [numStates]*bolt.Cursor
	tasksCur, expiryCur *bolt.Cursor
	key                 []byte // scratch for keys bbolt copies or only reads
	// Expiry keys put has yet to write (see flushExpiry): keys[i] is
	// expKeys[expEnds[i-1]:expEnds[i]].
	expKeys []byte
	expEnds []int
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
