package shm

import (
	"os"
	"sync/atomic"
	"time"
)

// Row locks work across processes and survive the death of their owner,
// as Swoole's table locks do.
//
// A lock word is 0 when free. A locker writes its token with a CAS: its
// pid in the high 32 bits and its start time (clock ticks after boot, from
// /proc/self/stat, truncated to 32 bits) in the low 32. The start time is
// the owner's incarnation: a recycled pid belongs to a process started at
// another time and does not pass for the owner, and since a token names
// one process exactly, the CAS that steals a dead owner's lock can never
// take a lock that a live process acquired in the meantime.
//
// Goroutines of one process share the token; they first queue on a
// process-local mutex (one per stripe of rows), so at most one goroutine
// per process spins on a shared word, and a long-held lock costs the
// others nothing but a sleeping goroutine.
//
// A waiter spins briefly (lockSpins loads, then sched_yields for
// lockYieldFor), then sleeps with a backoff capped at
// lockMaxSleep. From the end of the spins it checks whether the owner is
// alive (kill(pid, 0) and /proc/<pid>/stat: gone, zombie, or started at
// another time means dead), at once and then every lockCheckEvery; a dead
// owner's lock is stolen with a CAS from the dead token. So a lock held by
// a process killed with -9 is taken over by a waiter at most about
// lockCheckEvery + lockMaxSleep (1.5ms) after the death, or right after
// the waiter's spins when the owner was already dead: LockRecoveryBound
// (10ms) leaves room for scheduling delays; only a machine so overloaded
// that the waiter does not run for longer stretches it.
// A live owner is never robbed, however long it holds the lock (a stopped
// or hung worker is the supervisor's business: it kills it).
const (
	lockSpins      = 64
	lockYieldFor   = 100 * time.Microsecond
	lockMinSleep   = 20 * time.Microsecond
	lockMaxSleep   = 500 * time.Microsecond
	lockCheckEvery = time.Millisecond

	// LockRecoveryBound is how soon a table lock held by a dead process is
	// taken over by a waiting one (typically within 2ms; this bound leaves
	// room for a loaded machine).
	LockRecoveryBound = 10 * time.Millisecond
)

// lockToken is this process's lock word value.
func lockToken() uint64 {
	return uint64(uint32(os.Getpid()))<<32 | uint64(selfStart())
}

// acquire takes the lock word w for token me, stealing it from a dead
// owner. It reports whether it stole it.
func acquire(w *atomic.Uint64, me uint64) (stolen bool) {
	if w.CompareAndSwap(0, me) {
		return false
	}
	var yielding, checked time.Time
	sleep := lockMinSleep
	for n := 0; ; n++ {
		cur := w.Load()
		if cur == 0 {
			if w.CompareAndSwap(0, me) {
				return false
			}
			continue
		}
		if n < lockSpins {
			continue
		}
		// Yields are bounded by time, not count: on a busy machine one
		// sched_yield can last a whole time slice.
		now := time.Now()
		if yielding.IsZero() {
			yielding = now
		}
		if now.Sub(yielding) < lockYieldFor {
			osYield()
			continue
		}
		// Past the spins: check the owner now and then every
		// lockCheckEvery (the first check is at once, so a lock left by a
		// process that is already dead is taken without delay).
		if checked.IsZero() || now.Sub(checked) >= lockCheckEvery {
			checked = now
			if cur != me && !processAlive(int(cur>>32), uint32(cur)) && w.CompareAndSwap(cur, me) {
				return true
			}
		}
		time.Sleep(sleep)
		sleep = min(2*sleep, lockMaxSleep)
	}
}

// release frees w if me holds it. A lock is only stolen from a dead
// process, so a live holder always finds its token.
func release(w *atomic.Uint64, me uint64) {
	w.CompareAndSwap(me, 0)
}
