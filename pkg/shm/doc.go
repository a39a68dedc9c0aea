// Package shm is the region of memory the master and its workers share: the
// Go counterpart of Swoole\Atomic (global counters) and of the per-worker rows
// of Swoole\Table.
//
// The master creates one MAP_SHARED file (owner-only, on tmpfs) before any
// worker starts; each worker maps it, checks the header and then writes its
// own slot and the global counters with sync/atomic. Nobody needs an RPC to
// read live numbers: the dashboard, /metrics and `flowctl top` map the same
// file.
//
// Layout (every part starts on a 128-byte line so no two writers share a
// cache line pair):
//
//	line 0            header: magic, layout version, size, slot count, master pid, created
//	lines 1..C        one global counter per line (see Counter)
//	then, per slot    five lines: identity (master-written, seqlock), then two
//	                  worker halves of counters (atomics) and heartbeat (seqlock):
//	                  during a reload the new process writes the other half
//	then, optionally  the table directory and the shared tables (see Table)
//
// Tables are the Swoole\Table counterpart: fixed-size hash tables with typed
// columns, declared by the master (CreateWithTables) and found by name by
// every process (Region.Table). Row locks record the owner's pid and start
// time, so a writer killed while holding one is detected and its lock taken
// over within LockRecoveryBound.
//
// A seqlock (an even/odd sequence word around a group of fields) gives
// readers a consistent multi-field snapshot without a lock a dead writer
// could leave held: readers bound their retries, and the master resets a
// slot's worker lines before forking into it again.
package shm
