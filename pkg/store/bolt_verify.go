package store

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// verifyFile proves that the non-empty file at path is a healthy bbolt
// database before anything opens it for writing: bbolt's writable Open
// rebuilds the free list by walking every page, and on a damaged one it
// panics while a goroutine of its own goes on reading the mapping, or
// faults outright; neither can be recovered.
//
// The file is opened read-only first (a shared lock, so a second master
// still gets ErrLocked, and bbolt validates the meta pages). Holding that
// lock, checkPages proves the page structure from the file's bytes, then
// walk reads every bucket through bbolt's cursors: keys strictly
// ascending, entries of the shapes the store writes, every task record's
// wire format, state and ID. Faults on the mapping and bbolt's assertion
// panics during the walk become ErrCorrupt.
func verifyFile(path string, lockTimeout time.Duration) error {
	db, err := openReadOnly(path, lockTimeout)
	if err != nil {
		return err
	}
	// The shared lock is held from here on: nobody writes while we read.
	fi, err := os.Stat(path)
	if err == nil {
		err = checkPages(path, db.Info().PageSize, fi.Size())
	}
	if err == nil {
		err = walk(db, fi.Size())
	}
	if cerr := db.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	return nil
}

// openReadOnly opens path read-only, turning panics and faults on a
// malformed file into ErrCorrupt.
func openReadOnly(path string, lockTimeout time.Duration) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("store: open %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockWait(lockTimeout)})
	if err != nil {
		return nil, openError(path, err)
	}
	return db, nil
}

// walk reads every page of db, turning panics and faults into ErrCorrupt.
func walk(db *bolt.DB, fileSize int64) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fileSize {
			return fmt.Errorf("%w: the file (%d bytes) is shorter than its pages (%d bytes)", ErrCorrupt, fileSize, tx.Size())
		}
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if b == nil {
				return fmt.Errorf("%w: the root holds %q, which is not a bucket", ErrCorrupt, name)
			}
			return walkBucket(string(name), b, fileSize)
		})
	})
}

// walkBucket reads every key and value of the top-level bucket b, checking
// the shapes the store writes: keys strictly ascending and of bounded
// size, task records that decode and carry their key as ID, empty index
// values, idempotency values that are IDs. A value whose length field was
// damaged would otherwise only blow up when a write transaction copies it.
// Buckets the store does not know are walked too, with every value touched.
func walkBucket(name string, b *bolt.Bucket, fileSize int64) error {
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("%w: bucket %q: key %x after %x", ErrCorrupt, name, k, prev)
		}
		prev = k
		if err := checkEntry(name, b, k, v, fileSize); err != nil {
			return err
		}
	}
	return nil
}

// checkEntry checks one key/value pair of bucket name (see walkBucket).
func checkEntry(name string, b *bolt.Bucket, k, v []byte, fileSize int64) error {
	bad := func(what string) error {
		return fmt.Errorf("%w: bucket %q: key %.64q: %s", ErrCorrupt, name, k, what)
	}
	known := name == bucketTasks || name == bucketIdem || name == bucketExpiry || strings.HasPrefix(name, bucketStatePf)
	if v == nil {
		nb := b.Bucket(k)
		if nb == nil {
			return bad("neither value nor bucket")
		}
		if known {
			return bad("unexpected nested bucket")
		}
		return walkBucket(name+"/"+string(k), nb, fileSize)
	}
	keyMax := maxKeySize
	if name == bucketExpiry {
		keyMax += 8
	}
	switch {
	case !known:
		if int64(len(k))+int64(len(v)) > fileSize {
			return bad(fmt.Sprintf("entry of %d bytes in a %d-byte file", len(k)+len(v), fileSize))
		}
		if len(v) > 0 {
			_ = v[len(v)-1] // fault now, under the walk's recover, if it is not mapped
		}
		return nil
	case len(k) > keyMax:
		return bad(fmt.Sprintf("key of %d bytes", len(k)))
	case name == bucketTasks:
		m, err := peekRecord(v)
		if err != nil {
			return fmt.Errorf("bucket %q: key %.64q: %w", name, k, err)
		}
		if !bytes.Equal(m.id, k) {
			return bad(fmt.Sprintf("holds the record of %.64q", m.id))
		}
	case name == bucketIdem:
		if len(v) == 0 || len(v) > maxKeySize {
			return bad(fmt.Sprintf("task ID of %d bytes", len(v)))
		}
	case name == bucketExpiry:
		if _, _, ok := parseExpiryKey(k); !ok || len(v) != 0 {
			return bad("malformed expiry entry")
		}
	default: // a state index
		if len(v) != 0 {
			return bad(fmt.Sprintf("index value of %d bytes", len(v)))
		}
	}
	return nil
}
