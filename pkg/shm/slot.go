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
	lineIdentity = 0
	// a worker half h has its counters at LineSize*(1+2h) and its
	// heartbeat on the line after
	lineCounters  = LineSize
	lineHeartbeat = 2 * LineSize
	halfStride    = 2 * LineSize

	// identity line (master-written, seqlocked)
	idSeq        = 0
	idPID        = 8
	idGeneration = 16
	idState      = 24
	idRestarts   = 32
	idStarted    = 40
	idBackoff    = 48
	idLastExit   = 56
	idHalf       = 64

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
	// Half is the worker half (0 or 1) the current process writes.
	Half int
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
	s.i64(lineIdentity, idHalf).Store(int64(id.Half & 1))
	seq.Add(1)
}

// Identity reads the master-owned fields consistently.
func (s *Slot) Identity() Identity {
	seq := s.i64(lineIdentity, idSeq)
	var r seqReader
	for {
		v1, ok := r.begin(seq)
		if !ok {
			continue
		}
		id := Identity{
			PID:          int(s.i64(lineIdentity, idPID).Load()),
			Generation:   uint64(s.i64(lineIdentity, idGeneration).Load()),
			State:        State(s.i64(lineIdentity, idState).Load()),
			Restarts:     s.i64(lineIdentity, idRestarts).Load(),
			Started:      fromUnixNano(s.i64(lineIdentity, idStarted).Load()),
			BackoffUntil: fromUnixNano(s.i64(lineIdentity, idBackoff).Load()),
			LastExit:     s.i64(lineIdentity, idLastExit).Load(),
			Half:         int(s.i64(lineIdentity, idHalf).Load() & 1),
		}
		if r.end(seq, v1) {
			return id
		}
	}
}

// seqReader runs the read side of a seqlock. A sequence that changes means
// a live writer: retry. One that stays odd for deadWriterAfter means the
// writer died in the middle of an update: take the values as they are
// rather than hang. (A count of retries is not enough: a live writer that
// is merely descheduled can hold an odd sequence for milliseconds.)
type seqReader struct {
	last  int64
	since time.Time
}

// deadWriterAfter is how long a sequence must stay odd before its writer
// counts as dead.
const deadWriterAfter = 100 * time.Millisecond

func (r *seqReader) begin(seq *atomic.Int64) (int64, bool) {
	v := seq.Load()
	if v&1 == 0 {
		return v, true
	}
	now := time.Now()
	if v != r.last || r.since.IsZero() {
		r.last, r.since = v, now
	} else if now.Sub(r.since) >= deadWriterAfter {
		return v, true
	}
	runtime.Gosched()
	return 0, false
}

func (r *seqReader) end(seq *atomic.Int64, v1 int64) bool {
	return seq.Load() == v1
}

// Half is the part of a slot one worker process writes: its counters
// and heartbeat. A slot has two, so that during a rolling reload the new
// process and the draining old one never write the same words.
type Half struct {
	s    *Slot
	base int
}

// Half returns worker half h (0 or 1) of the slot.
func (s *Slot) Half(h int) *Half {
	return &Half{s: s, base: s.base + (h&1)*halfStride}
}

// Current is the half the slot's current process writes.
func (s *Slot) Current() *Half { return s.Half(s.Identity().Half) }

func (h *Half) i64(line, field int) *atomic.Int64 { return h.s.r.i64(h.base + line + field) }

// Reset clears the half before a new process is forked into it, so a
// predecessor killed mid-write leaves nothing behind.
func (h *Half) Reset() {
	for f := 0; f < LineSize; f += 8 {
		h.i64(lineCounters, f).Store(0)
		h.i64(lineHeartbeat, f).Store(0)
	}
}

// SetCapacity records the worker's semaphore size.
func (h *Half) SetCapacity(n int64) { h.i64(lineCounters, ctCapacity).Store(n) }

// Capacity is the worker's semaphore size.
func (h *Half) Capacity() int64 { return h.i64(lineCounters, ctCapacity).Load() }

// InFlight is the worker's count of running tasks.
func (h *Half) InFlight() *atomic.Int64 { return h.i64(lineCounters, ctInFlight) }

// Completed is the worker's count of tasks that succeeded.
func (h *Half) Completed() *atomic.Int64 { return h.i64(lineCounters, ctCompleted) }

// Failed is the worker's count of tasks that failed (errors, timeouts, panics).
func (h *Half) Failed() *atomic.Int64 { return h.i64(lineCounters, ctFailed) }

// Beat writes the heartbeat fields as one seqlocked update. One goroutine
// per worker calls it.
func (h *Half) Beat(hb Heartbeat) {
	seq := h.i64(lineHeartbeat, hbSeq)
	seq.Add(1)
	h.i64(lineHeartbeat, hbAt).Store(unixNano(hb.At))
	h.i64(lineHeartbeat, hbRSS).Store(hb.RSSBytes)
	h.i64(lineHeartbeat, hbCPU).Store(int64(hb.CPUTime))
	h.i64(lineHeartbeat, hbGoro).Store(hb.Goroutines)
	seq.Add(1)
}

// Heartbeat reads the heartbeat fields consistently.
func (h *Half) Heartbeat() Heartbeat {
	seq := h.i64(lineHeartbeat, hbSeq)
	var r seqReader
	for {
		v1, ok := r.begin(seq)
		if !ok {
			continue
		}
		hb := Heartbeat{
			At:         fromUnixNano(h.i64(lineHeartbeat, hbAt).Load()),
			RSSBytes:   h.i64(lineHeartbeat, hbRSS).Load(),
			CPUTime:    time.Duration(h.i64(lineHeartbeat, hbCPU).Load()),
			Goroutines: h.i64(lineHeartbeat, hbGoro).Load(),
		}
		if r.end(seq, v1) {
			return hb
		}
	}
}

// Snapshot reads the whole slot: the identity and the current half; in
// flight also counts a draining predecessor's tasks in the other half.
func (s *Slot) Snapshot() SlotSnapshot {
	id := s.Identity()
	cur, other := s.Half(id.Half), s.Half(id.Half+1)
	return SlotSnapshot{
		Slot:      s.index,
		Identity:  id,
		Heartbeat: cur.Heartbeat(),
		Capacity:  cur.Capacity(),
		InFlight:  cur.InFlight().Load() + other.InFlight().Load(),
		Completed: cur.Completed().Load(),
		Failed:    cur.Failed().Load(),
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
