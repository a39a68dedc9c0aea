package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"
)

// expiryKey is the key of the expiry index: the finish time as 8 bytes that
// sort like the signed number, then the ID.
func expiryKey(finished int64, id []byte) []byte {
	return appendExpiryKey(make([]byte, 0, 8+len(id)), finished, string(id))
}

// appendExpiryKey appends the expiry key of (finished, id) to b.
func appendExpiryKey(b []byte, finished int64, id string) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(finished)^(1<<63))
	return append(b, id...)
}

// parseExpiryKey is the inverse of expiryKey.
func parseExpiryKey(k []byte) (finished int64, id []byte, ok bool) {
	if len(k) <= 8 {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), k[8:], true
}

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
