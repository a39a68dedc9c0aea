package store

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// verifyFile proves that the non-empty file at path is a healthy bbolt
// database before anything opens it for writing: bbolt's writable Open
// rebuilds the free list by walking every page and panics (in a goroutine
// of its own, beyond any recover) on a damaged one.
//
// The file is opened read-only (a shared lock, so a second master still
// gets ErrLocked) and walked: every page of every bucket through cursors,
// keys strictly ascending, every task record's wire format, state and ID.
// Faults on the mapping and bbolt's assertion panics become ErrCorrupt.
func verifyFile(path string, lockTimeout time.Duration) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("store: open %s: %w", path, err)
	}
	db, err := openReadOnly(path, lockTimeout)
	if err != nil {
		return err
	}
	err = walk(db, fi.Size())
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
			return walkBucket(string(name), b, string(name) == bucketTasks)
		})
	})
}

// walkBucket reads every key of b and its nested buckets; records says
// that the values are task records.
func walkBucket(name string, b *bolt.Bucket, records bool) error {
	c := b.Cursor()
	var prev []byte
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if prev != nil && bytes.Compare(prev, k) >= 0 {
			return fmt.Errorf("%w: bucket %q: key %x after %x", ErrCorrupt, name, k, prev)
		}
		prev = k
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if err := walkBucket(name+"/"+string(k), nb, false); err != nil {
					return err
				}
				continue
			}
		}
		if !records {
			continue
		}
		m, err := peekRecord(v)
		if err != nil {
			return fmt.Errorf("bucket %q: key %q: %w", name, k, err)
		}
		if !bytes.Equal(m.id, k) {
			return fmt.Errorf("%w: bucket %q: key %q holds the record of %q", ErrCorrupt, name, k, m.id)
		}
	}
	return nil
}
