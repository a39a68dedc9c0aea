// Package store keeps tasks durable: "accepted means stored". The master's
// submit answers 202 only after Create has returned, and Create returns only
// once its records are on disk. The engine keeps live tasks in memory and
// hands every new task (Create) and every state change (Update) to a Store;
// on start it reads back every task that had not finished (NonTerminal).
//
// Two implementations share the Store interface and one conformance suite:
//
//   - bolt (OpenBolt, the default): one go.etcd.io/bbolt file,
//     <data-dir>/atomicflow.db, locked against a second master.
//   - memory (NewMemory): the same semantics with nothing on disk.
//
// # Group commit
//
// A bolt store has one committer goroutine and one writer transaction at a
// time. Create enqueues its records and waits; Update enqueues and returns.
// The committer takes everything pending, applies it in a single
// transaction (one fsync for all of it) and then wakes the Create and Flush
// callers of that batch. Work that arrives while a commit runs waits for the
// next one, so under load each fsync carries many submits. Idempotency keys
// are resolved inside the committer, against the file and the batch, so
// concurrent Creates with one key store exactly one record.
//
// Updates are visible at once: until their transaction has committed they
// live in an overlay that Get, List and NonTerminal consult before the file.
//
// # Retention
//
// A janitor goroutine removes terminal tasks that finished more than
// Options.Retention ago (default 24h), every Options.JanitorInterval, at most
// 1000 per transaction, together with their index entries and idempotency
// keys (such a key may then be used again). Tasks that are not terminal are
// never removed, however old.
//
// # File layout
//
// Buckets of the bolt file (keys and values are raw bytes):
//
//	tasks           task ID -> TaskRecord (proto/atomicflow/v1/store.proto)
//	state/<state>   task ID -> empty; one bucket per State, so List and
//	                NonTerminal never scan finished history
//	idem            idempotency key -> task ID
//	expiry          8-byte big-endian FinishedAt (sign bit flipped) + task ID
//	                -> empty, for every terminal record; the retention
//	                janitor reads it from the oldest end
//
// Every change to a record moves its ID between the state buckets and the
// expiry index in the same transaction, so the indexes never disagree with
// the records, even across a crash.
//
// # Opening a file
//
// Open never writes to a file it cannot prove is a healthy bbolt database.
// bbolt itself trusts its pages: a writable Open rebuilds the free list by
// walking all of them and panics, or faults, on a damaged one, in ways no
// recover can catch. So a non-empty file is first opened read-only (which
// takes the shared lock and validates the meta pages), its page structure
// is checked from the file's bytes (bolt_pages.go: every reachable page,
// element, key and value in bounds, bbolt's key-order rules), and every
// bucket is walked (entries of the expected shapes, every record's wire
// format); only then is it opened for writing. A corrupt file yields an
// error wrapping ErrCorrupt that names the path, and is left byte-for-byte
// as it was. A zero-length file is initialized. A second master on the same
// file gets ErrLocked once Options.LockTimeout has passed. The check reads
// the whole file, so Open costs time proportional to its size (about 0.1 s
// per 100,000 tasks here).
package store
