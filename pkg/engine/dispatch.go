package engine

import (
	"fmt"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	"github.com/atomicflow/atomicflow/pkg/supervisor"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

func (e *Engine) dispatchLoop() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	watch := time.NewTicker(500 * time.Millisecond)
	defer watch.Stop()
	for {
		select {
		case <-e.stop:
			timer.Stop()
			return
		case <-e.kick:
		case <-timer.C:
		case now := <-watch.C:
			e.findHung(now)
			continue
		}
		next := e.dispatch()
		timer.Stop()
		if !next.IsZero() {
			timer.Reset(max(time.Until(next), time.Millisecond))
		}
	}
}

// dispatch hands queued tasks to workers with credit, then wakes their
// senders. It returns when the next retry is due (zero if none).
func (e *Engine) dispatch() time.Time {
	e.mu.Lock()
	now := time.Now()
	for t := e.retries.next(); t != nil && !t.runAt.After(now); t = e.retries.next() {
		e.retries.take()
		t.runAt = time.Time{}
		e.queue.push(t)
	}
	d := dispatchRun{e: e, now: now}
	if e.dispatchOn {
		switch e.cfg.Policy {
		case KeyHash:
			d.keyHash()
		case RoundRobin:
			d.roundRobin()
		default:
			d.leastLoaded()
		}
	}
	var next time.Time
	if t := e.retries.next(); t != nil {
		next = t.runAt
	}
	e.mu.Unlock()
	if len(d.updates) > 0 {
		e.store.Update(d.updates...)
	}
	for _, c := range d.touched {
		c.wakeSender()
	}
	return next
}

// dispatchRun is one pass of the dispatcher, under e.mu.
type dispatchRun struct {
	e       *Engine
	now     time.Time
	updates []*store.Record
	touched []*conn
	specs   map[*conn][]*pb.TaskSpec
}

func (d *dispatchRun) free(c *conn) int {
	if c == nil || c.draining || c.gone {
		return 0
	}
	return c.capacity - len(c.inflight)
}

// next pops the next task that is still queued (canceled ones are skipped).
func (d *dispatchRun) next() *task {
	for {
		t := d.e.queue.pop()
		if t == nil || !t.canceled {
			return t
		}
	}
}

func (d *dispatchRun) assign(c *conn, t *task) {
	e := d.e
	t.rec.State = store.Running
	t.rec.Attempts++
	t.rec.WorkerSlot = int32(c.slot)
	t.rec.StartedAt = d.now
	t.conn = c
	c.inflight[t.rec.ID] = t
	if t.rec.TimeoutMs > 0 {
		c.timed[t.rec.ID] = t
	}
	e.waiting--
	d.updates = append(d.updates, recCopy(&t.rec))
	if d.specs == nil {
		d.specs = make(map[*conn][]*pb.TaskSpec)
	}
	if _, ok := d.specs[c]; !ok {
		d.touched = append(d.touched, c)
	}
	d.specs[c] = append(d.specs[c], &pb.TaskSpec{
		Id: t.rec.ID, Kind: t.rec.Kind, Payload: t.rec.Payload, Key: t.rec.Key,
		TimeoutMs: t.rec.TimeoutMs, Attempt: t.rec.Attempts,
	})
}

// flush moves the pass's specs to the connections and the counters to the
// region.
func (d *dispatchRun) flush() {
	n := int64(0)
	for c, specs := range d.specs {
		c.enqueue(specs)
		n += int64(len(specs))
	}
	d.specs = nil
	if n > 0 {
		r := d.e.cfg.Region
		r.Counter(shm.Queued).Add(-n)
		r.Counter(shm.Dispatched).Add(n)
		r.Counter(shm.InFlight).Add(n)
	}
}

// bestConn is the live connection with the most free credit.
func (d *dispatchRun) bestConn() (*conn, int, int) {
	var best *conn
	bestFree, withCredit := 0, 0
	for _, c := range d.e.conns {
		f := d.free(c)
		if f <= 0 {
			continue
		}
		withCredit++
		if f > bestFree {
			best, bestFree = c, f
		}
	}
	return best, bestFree, withCredit
}

// leastLoaded gives the worker with the most free credit a chunk of the
// queue: its fair share, at most one batch. Repeating that spreads work
// evenly and keeps messages large.
func (d *dispatchRun) leastLoaded() {
	defer d.flush()
	e := d.e
	for e.queue.len() > 0 {
		c, free, n := d.bestConn()
		if c == nil {
			return
		}
		chunk := min(free, (e.queue.len()+n-1)/n, e.cfg.BatchSize)
		for i := 0; i < chunk; i++ {
			t := d.next()
			if t == nil {
				return
			}
			d.assign(c, t)
		}
	}
}

func (d *dispatchRun) roundRobin() {
	defer d.flush()
	e := d.e
	n := len(e.conns)
	for e.queue.len() > 0 {
		var c *conn
		for i := 0; i < n; i++ {
			cand := e.conns[(e.rr+i)%n]
			if d.free(cand) > 0 {
				c = cand
				e.rr = (e.rr + i + 1) % n
				break
			}
		}
		if c == nil {
			return
		}
		t := d.next()
		if t == nil {
			return
		}
		d.assign(c, t)
	}
}

// keyHash sends every task with a key to the slot its key hashes to,
// waiting in that slot's queue while the slot is busy or restarting;
// tasks without a key go to the least loaded worker.
func (d *dispatchRun) keyHash() {
	defer d.flush()
	e := d.e
	for s, c := range e.conns[:e.slotCount] {
		q := &e.pinned[s]
		for q.len() > 0 && d.free(c) > 0 {
			t := q.pop()
			if !t.canceled {
				d.assign(c, t)
			}
		}
	}
	for e.queue.len() > 0 {
		t := d.next()
		if t == nil {
			return
		}
		if t.rec.Key != "" {
			s := slotForKey(t.rec.Key, e.slotCount)
			if c := e.conns[s]; d.free(c) > 0 && e.pinned[s].len() == 0 {
				d.assign(c, t)
			} else {
				e.pinned[s].push(t)
			}
			continue
		}
		c, _, _ := d.bestConn()
		if c == nil {
			e.queue.pushFront(t)
			return
		}
		d.assign(c, t)
	}
}

// findHung looks for tasks that outlived their timeout by more than the
// grace: their handler ignores its context, so the worker is killed and
// its tasks delivered again, like a crash.
func (e *Engine) findHung(now time.Time) {
	if e.cfg.KillHung == nil {
		return
	}
	type hung struct {
		w      *supervisor.Worker
		reason string
	}
	var found []hung
	e.mu.Lock()
	for _, c := range e.all {
		if c.gone {
			continue
		}
		for _, t := range c.timed {
			limit := time.Duration(t.rec.TimeoutMs)*time.Millisecond + e.cfg.HungGrace
			if over := now.Sub(t.rec.StartedAt); over > limit {
				found = append(found, hung{c.w, fmt.Sprintf("task %s (%s) ran %v, timeout %dms plus grace %v",
					t.rec.ID, t.rec.Kind, over.Round(time.Millisecond), t.rec.TimeoutMs, e.cfg.HungGrace)})
				break
			}
		}
	}
	e.mu.Unlock()
	for _, h := range found {
		e.cfg.Logger.Warn("worker hung: a task ignores its timeout, killing the worker", "slot", h.w.Slot, "pid", h.w.PID, "reason", h.reason)
		e.cfg.KillHung(h.w, h.reason)
	}
}
