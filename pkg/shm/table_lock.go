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
// A waiter spins briefly, then yields the CPU, then sleeps with a backoff
// capped at lockMaxSleep. Once it has waited lockCheckEvery it checks
// whether the owner is alive (kill(pid, 0) and /proc/<pid>/stat: gone,
// zombie or started at another time means dead), and again every
// lockCheckEvery; a dead owner's lock is stolen with a CAS from the dead
// token. So a lock held by a process killed with -9 is taken over about
// 2*lockCheckEvery after the death or after the waiter started waiting,
// whichever is later: LockRecoveryBound with room for a loaded machine.
// A live owner is never robbed, however long it holds the lock (a stopped
// or hung worker is the supervisor's business: it kills it).
const (
	lockSpins      = 64
	lockYields     = 64
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
	var started, checked time.Time
	sleep := lockMinSleep
	for n := 0; ; n++ {
		cur := w.Load()
		if cur == 0 {
			if w.CompareAndSwap(0, me) {
				return false
			}
			continue
		}
		switch {
		case n < lockSpins:
			continue
		case n < lockSpins+lockYields:
			osYield()
			continue
		}
		now := time.Now()
		if started.IsZero() {
			started, checked = now, now
		}
		if now.Sub(checked) >= lockCheckEvery {
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
