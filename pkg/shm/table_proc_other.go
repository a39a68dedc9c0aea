//go:build !linux

package shm

import (
	"errors"
	"runtime"
	"syscall"
)

// selfStart is 0 without /proc: liveness checks use the pid alone.
func selfStart() uint32 { return 0 }

// processAlive reports whether pid exists; without /proc a zombie or a
// recycled pid counts as alive, so a lock is never stolen from a live
// owner (it may wait for the owner's reaping instead).
func processAlive(pid int, _ uint32) bool {
	if pid <= 0 {
		return false
	}
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func osYield() { runtime.Gosched() }
