package shm

import (
	"runtime"
	"sync/atomic"
	"time"
)

// State is a worker slot's lifecycle state.
type State int64

// Slot states. The master writes them (it is the one that sees a process
// start, become ready, drain and die).
const (
	StateEmpty State = iota
	StateStarting
	StateReady
	StateDraining
	StateStopped
	StateDead
	StateBackoff
)

var stateNames = [...]string{"empty", "starting", "ready", "draining", "stopped", "dead", "backoff"}

// String returns the state's name as shown in the API and dashboard.
func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return "unknown"
	}
	return stateNames[s]
}

// offsets of a slot's lines and fields.
const (
	lineIdentity  = 0
	lineCounters  = LineSize
	lineHeartbeat = 2 * LineSize

	// identity line (master-written, seqlocked)
	idSeq        = 0
	idPID        = 8
	idGeneration = 16
	idState      = 24
	idRestarts   = 32
	idStarted    = 40
	idBackoff    = 48
	idLastExit   = 56

	// counters line (worker-written atomics)
	ctCapacity  = 0
	ctInFlight  = 8
	ctCompleted = 16
	ctFailed    = 24

	// heartbeat line (worker-written, seqlocked)
	hbSeq  = 0
	hbAt   = 8
	hbRSS  = 16
	hbCPU  = 24
	hbGoro = 32
)

// maxSeqRetries bounds a seqlock read so that a writer killed in the middle
// of an update (odd sequence forever) cannot hang a reader.
const maxSeqRetries = 1000

// Identity is the master-owned part of a slot.
type Identity struct {
	PID        int
	Generation uint64
	State      State
	Restarts   int64
	Started    time.Time
	// BackoffUntil is when a slot in StateBackoff forks again.
	BackoffUntil time.Time
	// LastExit is the last exit: >= 0 an exit code, < 0 a signal number negated.
	LastExit int64
}

// Heartbeat is the worker-owned, periodically written part of a slot.
type Heartbeat struct {
	At         time.Time
	RSSBytes   int64
	CPUTime    time.Duration
	Goroutines int64
}

// SlotSnapshot is a consistent read of one slot.
type SlotSnapshot struct {
	Slot int
	Identity
	Heartbeat
	Capacity  int64
	InFlight  int64
	Completed int64
	Failed    int64
}

// Slot is a handle on one worker slot.
type Slot struct {
	r     *Region
	index int
	base  int
}

// Slot returns the handle for slot i; it panics when i is out of range, as
// indexing a slice does.
func (r *Region) Slot(i int) *Slot {
	if i < 0 || i >= r.slots {
		panic("shm: slot index out of range")
	}
	return &Slot{r: r, index: i, base: LineSize*(1+int(numCounters)) + i*SlotSize}
}

// Index returns the slot's number.
func (s *Slot) Index() int { return s.index }

func (s *Slot) i64(line, field int) *atomic.Int64 { return s.r.i64(s.base + line + field) }

// SetIdentity writes the master-owned fields as one seqlocked update.
func (s *Slot) SetIdentity(id Identity) {
	mu := &s.r.writers[s.index]
	mu.Lock()
	defer mu.Unlock()
	seq := s.i64(lineIdentity, idSeq)
	seq.Add(1) // odd: write in progress
	s.i64(lineIdentity, idPID).Store(int64(id.PID))
	s.i64(lineIdentity, idGeneration).Store(int64(id.Generation))
	s.i64(lineIdentity, idState).Store(int64(id.State))
	s.i64(lineIdentity, idRestarts).Store(id.Restarts)
	s.i64(lineIdentity, idStarted).Store(unixNano(id.Started))
	s.i64(lineIdentity, idBackoff).Store(unixNano(id.BackoffUntil))
	s.i64(lineIdentity, idLastExit).Store(id.LastExit)
	seq.Add(1)
}

// ResetWorker clears the worker-owned lines before a new process is forked
// into the slot, so a predecessor killed mid-write leaves nothing behind.
func (s *Slot) ResetWorker() {
	for f := 0; f < LineSize; f += 8 {
		s.i64(lineCounters, f).Store(0)
		s.i64(lineHeartbeat, f).Store(0)
	}
}

// Identity reads the master-owned fields consistently.
func (s *Slot) Identity() Identity {
	seq := s.i64(lineIdentity, idSeq)
	var id Identity
	for try := 0; ; try++ {
		v1 := seq.Load()
		if v1&1 == 1 && try < maxSeqRetries {
			runtime.Gosched()
			continue
		}
		id = Identity{
			PID:          int(s.i64(lineIdentity, idPID).Load()),
			Generation:   uint64(s.i64(lineIdentity, idGeneration).Load()),
			State:        State(s.i64(lineIdentity, idState).Load()),
			Restarts:     s.i64(lineIdentity, idRestarts).Load(),
			Started:      fromUnixNano(s.i64(lineIdentity, idStarted).Load()),
			BackoffUntil: fromUnixNano(s.i64(lineIdentity, idBackoff).Load()),
			LastExit:     s.i64(lineIdentity, idLastExit).Load(),
		}
		if seq.Load() == v1 || try >= maxSeqRetries {
			return id
		}
	}
}

// SetCapacity records the worker's semaphore size.
func (s *Slot) SetCapacity(n int64) { s.i64(lineCounters, ctCapacity).Store(n) }

// InFlight is the worker's count of running tasks.
func (s *Slot) InFlight() *atomic.Int64 { return s.i64(lineCounters, ctInFlight) }

// Completed is the worker's count of tasks that succeeded.
func (s *Slot) Completed() *atomic.Int64 { return s.i64(lineCounters, ctCompleted) }

// Failed is the worker's count of tasks that failed (errors, timeouts, panics).
func (s *Slot) Failed() *atomic.Int64 { return s.i64(lineCounters, ctFailed) }

// Beat writes the heartbeat fields as one seqlocked update. One goroutine
// per worker calls it.
func (s *Slot) Beat(hb Heartbeat) {
	seq := s.i64(lineHeartbeat, hbSeq)
	seq.Add(1)
	s.i64(lineHeartbeat, hbAt).Store(unixNano(hb.At))
	s.i64(lineHeartbeat, hbRSS).Store(hb.RSSBytes)
	s.i64(lineHeartbeat, hbCPU).Store(int64(hb.CPUTime))
	s.i64(lineHeartbeat, hbGoro).Store(hb.Goroutines)
	seq.Add(1)
}

// Heartbeat reads the heartbeat fields consistently.
func (s *Slot) Heartbeat() Heartbeat {
	seq := s.i64(lineHeartbeat, hbSeq)
	for try := 0; ; try++ {
		v1 := seq.Load()
		if v1&1 == 1 && try < maxSeqRetries {
			runtime.Gosched()
			continue
		}
		hb := Heartbeat{
			At:         fromUnixNano(s.i64(lineHeartbeat, hbAt).Load()),
			RSSBytes:   s.i64(lineHeartbeat, hbRSS).Load(),
			CPUTime:    time.Duration(s.i64(lineHeartbeat, hbCPU).Load()),
			Goroutines: s.i64(lineHeartbeat, hbGoro).Load(),
		}
		if seq.Load() == v1 || try >= maxSeqRetries {
			return hb
		}
	}
}

// Snapshot reads the whole slot.
func (s *Slot) Snapshot() SlotSnapshot {
	return SlotSnapshot{
		Slot:      s.index,
		Identity:  s.Identity(),
		Heartbeat: s.Heartbeat(),
		Capacity:  s.i64(lineCounters, ctCapacity).Load(),
		InFlight:  s.InFlight().Load(),
		Completed: s.Completed().Load(),
		Failed:    s.Failed().Load(),
	}
}

// Snapshots reads every slot.
func (r *Region) Snapshots() []SlotSnapshot {
	out := make([]SlotSnapshot, r.slots)
	for i := range out {
		out[i] = r.Slot(i).Snapshot()
	}
	return out
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
