package engine

// progressRing is how many of the latest progress reports the engine
// remembers for ProgressSnapshot: the dashboard shows a few, not all.
const progressRing = 256

// TaskProgress is a running task's latest progress report.
type TaskProgress struct {
	ID       string
	Kind     string
	Slot     int
	Fraction float64
	Message  string
}

// progressLog is a ring of the latest progress reports; guarded by e.mu.
type progressLog struct {
	refs []progressRef
	next int
	n    int
}

type progressRef struct {
	c  *conn
	id string
}

func (l *progressLog) add(c *conn, id string) {
	if l.refs == nil {
		l.refs = make([]progressRef, progressRing)
	}
	l.refs[l.next] = progressRef{c: c, id: id}
	l.next = (l.next + 1) % progressRing
	l.n = min(l.n+1, progressRing)
}

// ProgressSnapshot returns up to max running tasks that reported
// progress, the most recently updated first. It walks the last
// progressRing reports, not every task in flight.
func (e *Engine) ProgressSnapshot(max int) []TaskProgress {
	if max <= 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := &e.progLog
	var out []TaskProgress
	seen := make(map[*task]bool, max)
	for i := 0; i < l.n && len(out) < max; i++ {
		ref := l.refs[(l.next-1-i+progressRing)%progressRing]
		t := ref.c.inflight[ref.id]
		if ref.c.gone || t == nil || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, TaskProgress{ID: t.rec.ID, Kind: t.rec.Kind, Slot: ref.c.slot, Fraction: t.progress, Message: t.progMsg})
	}
	return out
}
