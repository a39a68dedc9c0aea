package dashboard

import (
	"sync"
	"time"
)

// DefaultEventLogSize is the capacity of an EventLog made with n <= 0.
const DefaultEventLogSize = 200

// Event is one lifecycle event of a worker slot.
type Event struct {
	// Seq numbers events from 1 in the order they were added.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Slot int       `json:"slot"`
	// Kind is one of "started", "ready", "exited", "restarting", "backoff",
	// "killed", "restart", "draining", "stopped" (the master's vocabulary; the
	// log itself accepts any string).
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// EventLog is a bounded ring of the most recent events. It is safe for
// concurrent use; the zero value is not usable, call NewEventLog.
type EventLog struct {
	mu   sync.Mutex
	buf  []Event // ring; buf[(next-len+i) % cap] is the i-th oldest
	next int     // index the next event goes to
	n    int     // events held, <= len(buf)
	seq  uint64
}

// NewEventLog returns a log that keeps the last n events (DefaultEventLogSize
// when n <= 0).
func NewEventLog(n int) *EventLog {
	if n <= 0 {
		n = DefaultEventLogSize
	}
	return &EventLog{buf: make([]Event, n)}
}

// Add records an event for slot, stamped with the current time; the oldest
// event is forgotten when the log is full.
func (l *EventLog) Add(slot int, kind, msg string) {
	t := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	l.buf[l.next] = Event{Seq: l.seq, Time: t, Slot: slot, Kind: kind, Message: msg}
	l.next = (l.next + 1) % len(l.buf)
	if l.n < len(l.buf) {
		l.n++
	}
}

// Recent returns up to n of the newest events, oldest first. n <= 0 returns
// every event held. The result is a copy and never nil.
func (l *EventLog) Recent(n int) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n <= 0 || n > l.n {
		n = l.n
	}
	out := make([]Event, n)
	start := l.next - n
	if start < 0 {
		start += len(l.buf)
	}
	for i := range out {
		out[i] = l.buf[(start+i)%len(l.buf)]
	}
	return out
}

// Len returns the number of events held.
func (l *EventLog) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}
