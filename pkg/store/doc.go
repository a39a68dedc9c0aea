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
// Open never writes to a file it cannot prove is a healthy bbolt database:
// a non-empty file is first opened read-only and walked (every page of
// every bucket, key order, every record decoded) with faults turned into
// errors; only then is it opened for writing. A corrupt file yields an error
// wrapping ErrCorrupt and is left byte-for-byte as it was. A second master on
// the same file gets ErrLocked once Options.LockTimeout has passed.
package store
