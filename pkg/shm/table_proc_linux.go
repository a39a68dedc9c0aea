package shm

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// procStat reads a process's state letter and start time (clock ticks
// after boot) from /proc/<pid>/stat.
func procStat(pid string) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name is parenthesised and may hold spaces and ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("shm: unreadable /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, errors.New("shm: short /proc stat")
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, err
	}
	return f[0][0], start, nil
}

// selfStart is this process's start time for lock tokens; 0 when /proc
// cannot tell it, and then liveness checks use the pid alone.
func selfStart() uint32 {
	_, start, err := procStat("self")
	if err != nil {
		return 0
	}
	return uint32(start)
}

// processAlive reports whether the process that took a lock with
// (pid, start) still runs. A pid that does not exist, a zombie, or a pid
// now used by a process started at another time (a recycled pid) is dead.
// When it cannot tell (no /proc), it says alive: a lock is never stolen
// from a live owner.
func processAlive(pid int, start uint32) bool {
	if pid <= 0 {
		return false
	}
	if err := unix.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	state, st, err := procStat(strconv.Itoa(pid))
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	if state == 'Z' || state == 'X' || state == 'x' {
		return false
	}
	return start == 0 || uint32(st) == start
}

// osYield gives the CPU to another thread (sched_yield): the lock owner
// may be waiting for one.
func osYield() { _, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
