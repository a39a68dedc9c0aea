package shm

import "sync/atomic"

// Counter names one global counter. Each lives on its own 128-byte line.
type Counter int

// The global counters, in layout order. Append only; bump Version otherwise.
const (
	Submitted Counter = iota
	Dispatched
	Completed
	Failed
	Retried
	Redelivered
	InFlight
	Queued
	WSClients
	Restarts
	Canceled
	Dead
	numCounters
)

var counterNames = [numCounters]string{
	"submitted", "dispatched", "completed", "failed", "retried", "redelivered",
	"in_flight", "queued", "ws_clients", "restarts", "canceled", "dead",
}

// String returns the counter's snake_case name, as used in the JSON API.
func (c Counter) String() string {
	if c < 0 || c >= numCounters {
		return "unknown"
	}
	return counterNames[c]
}

// Counters lists every global counter in layout order.
func Counters() []Counter {
	cs := make([]Counter, numCounters)
	for i := range cs {
		cs[i] = Counter(i)
	}
	return cs
}

// Counter returns the shared counter c; add to it with sync/atomic methods.
func (r *Region) Counter(c Counter) *atomic.Int64 {
	return r.i64(LineSize * (1 + int(c)))
}

// CounterValues reads every global counter, keyed by name.
func (r *Region) CounterValues() map[string]int64 {
	m := make(map[string]int64, numCounters)
	for c := Counter(0); c < numCounters; c++ {
		m[c.String()] = r.Counter(c).Load()
	}
	return m
}
