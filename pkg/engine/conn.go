package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	"github.com/atomicflow/atomicflow/pkg/supervisor"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// maxMessageBytes bounds one message to a worker (payloads can be large).
const maxMessageBytes = 4 << 20

// conn is the Session with one live worker process.
type conn struct {
	e        *Engine
	w        *supervisor.Worker
	slot     int
	capacity int
	stream   pb.Worker_SessionClient
	cancel   context.CancelFunc

	// guarded by e.mu
	inflight map[string]*task
	timed    map[string]*task // the in-flight tasks that have a timeout
	draining bool
	gone     bool

	smu      sync.Mutex
	pending  []*pb.TaskSpec
	cancels  []string
	drainReq bool
	kick     chan struct{}

	drained     chan struct{}
	drainedOnce sync.Once
	recvDone    chan struct{}
	sendDone    chan struct{}
}

func (c *conn) enqueue(specs []*pb.TaskSpec) {
	c.smu.Lock()
	c.pending = append(c.pending, specs...)
	c.smu.Unlock()
}

func (c *conn) sendCancel(id string) {
	c.smu.Lock()
	c.cancels = append(c.cancels, id)
	c.smu.Unlock()
	c.wakeSender()
}

func (c *conn) wakeSender() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// sender writes pending batches to the stream; while one Send runs, the
// next batch accumulates.
func (c *conn) sender(ctx context.Context) {
	defer close(c.sendDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		for {
			msg := c.take()
			if msg == nil {
				break
			}
			if err := c.stream.Send(msg); err != nil {
				return // the worker is gone; WorkerGone redelivers
			}
		}
	}
}

// take builds the next message: up to one batch of tasks within the byte
// bound, every pending cancel, and the drain request after the last task.
func (c *conn) take() *pb.MasterMessage {
	c.smu.Lock()
	defer c.smu.Unlock()
	if len(c.pending) == 0 && len(c.cancels) == 0 && !c.drainReq {
		return nil
	}
	msg := &pb.MasterMessage{Cancel: c.cancels}
	c.cancels = nil
	n, size := 0, 0
	for n < len(c.pending) && n < c.e.cfg.BatchSize {
		size += proto.Size(c.pending[n])
		if n > 0 && size > maxMessageBytes {
			break
		}
		n++
	}
	msg.Tasks = c.pending[:n:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
		if c.drainReq {
			msg.Drain = true
			c.drainReq = false
		}
	}
	return msg
}

func (c *conn) receiver() {
	defer close(c.recvDone)
	for {
		msg, err := c.stream.Recv()
		if err != nil {
			return
		}
		if len(msg.Results) > 0 {
			c.e.complete(c, msg.Results)
		}
		if len(msg.Progress) > 0 {
			c.e.progress(c, msg.Progress)
		}
		if msg.Drained {
			c.drainedOnce.Do(func() { close(c.drained) })
		}
	}
}

// WorkerReady opens the worker's Session and starts dispatching to it.
func (e *Engine) WorkerReady(w *supervisor.Worker) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := w.Client.Session(ctx)
	if err != nil {
		cancel()
		e.cfg.Logger.Error("open session", "slot", w.Slot, "pid", w.PID, "error", err)
		// A worker the master cannot talk to would sit ready and idle:
		// replace it (with backoff if it keeps failing).
		e.mu.Lock()
		kill := e.cfg.KillHung
		e.mu.Unlock()
		if kill != nil {
			kill(w, "open session: "+err.Error())
		}
		return
	}
	c := &conn{
		e: e, w: w, slot: w.Slot, capacity: max(w.Capacity, 1), stream: stream, cancel: cancel,
		inflight: make(map[string]*task),
		timed:    make(map[string]*task),
		kick:     make(chan struct{}, 1),
		drained:  make(chan struct{}),
		recvDone: make(chan struct{}),
		sendDone: make(chan struct{}),
	}
	e.mu.Lock()
	for _, k := range w.Kinds {
		e.kinds[k] = true
	}
	if w.Slot >= len(e.conns) {
		e.mu.Unlock()
		cancel()
		e.cfg.Logger.Error("worker slot outside the engine's slots", "slot", w.Slot)
		return
	}
	// A reload starts the new process before the old one drains: the old
	// session takes no more work but keeps its tasks until it is gone.
	if old := e.conns[w.Slot]; old != nil {
		old.draining = true
	}
	e.conns[w.Slot] = c
	e.all[w] = c
	e.mu.Unlock()
	go c.sender(ctx)
	go c.receiver()
	e.wake()
}

// Drain stops dispatching to w and asks it to finish; it returns once the
// worker reported drained (after its stop hooks) or ctx ends.
func (e *Engine) Drain(ctx context.Context, w *supervisor.Worker) error {
	e.mu.Lock()
	c := e.all[w]
	if c == nil {
		e.mu.Unlock()
		return nil
	}
	c.draining = true
	e.mu.Unlock()
	c.smu.Lock()
	c.drainReq = true
	c.smu.Unlock()
	c.wakeSender()
	select {
	case <-c.drained:
		return nil
	case <-c.recvDone:
		return errors.New("session ended before the worker drained")
	case <-ctx.Done():
		return fmt.Errorf("drain slot %d: %w", w.Slot, ctx.Err())
	}
}

// WorkerGone delivers again every task that was running on w.
func (e *Engine) WorkerGone(w *supervisor.Worker) {
	e.mu.Lock()
	c := e.all[w]
	if c == nil {
		e.mu.Unlock()
		return
	}
	c.gone = true
	e.mu.Unlock()
	// Results the worker sent before it died may still sit in the stream:
	// take them before redelivering, so finished work is not run twice.
	select {
	case <-c.recvDone:
	case <-time.After(time.Second):
	}
	c.cancel()
	<-c.sendDone
	<-c.recvDone

	now := time.Now()
	var ups []*store.Record
	var done []*task
	e.mu.Lock()
	if e.conns[w.Slot] == c {
		e.conns[w.Slot] = nil
	}
	delete(e.all, w)
	requeued, redelivered := int64(0), int64(0)
	// While the master shuts down, a worker that goes is one the master
	// stopped (perhaps before its tasks finished): the attempts it
	// interrupted do not count, and its tasks stay queued in the store for
	// the next start instead of going dead.
	stopping := !e.dispatchOn
	clear(c.timed)
	for id, t := range c.inflight {
		delete(c.inflight, id)
		switch {
		case stopping && !t.canceled:
			t.rec.State = store.Queued
			t.rec.WorkerSlot = -1
			t.rec.Attempts = max(t.rec.Attempts-1, 0)
			t.conn = nil
			e.waiting++
			e.queue.pushFront(t)
			requeued++
			ups = append(ups, recCopy(&t.rec))
		case t.canceled:
			ups = append(ups, e.finishLocked(t, store.Canceled, nil, "canceled", now, &done))
		case t.rec.Attempts >= t.rec.MaxAttempts:
			ups = append(ups, e.finishLocked(t, store.Dead, nil,
				fmt.Sprintf("worker slot %d (pid %d) died during attempt %d of %d", w.Slot, w.PID, t.rec.Attempts, t.rec.MaxAttempts), now, &done))
		default:
			t.rec.State = store.Queued
			t.rec.WorkerSlot = -1
			t.conn = nil
			e.waiting++
			e.queue.pushFront(t)
			requeued++
			redelivered++
			ups = append(ups, recCopy(&t.rec))
		}
	}
	n := int64(len(ups))
	e.checkIdleLocked()
	e.mu.Unlock()
	r := e.cfg.Region
	r.Counter(shm.InFlight).Add(-n)
	r.Counter(shm.Queued).Add(requeued)
	r.Counter(shm.Redelivered).Add(redelivered)
	e.persist(ups, done)
	switch {
	case stopping && n > 0:
		e.cfg.Logger.Info("tasks of a worker stopped during shutdown stay queued for the next start", "slot", w.Slot, "pid", w.PID,
			"queued", requeued, "finished", n-requeued)
	case n > 0:
		e.cfg.Logger.Info("redelivering tasks of a dead worker", "slot", w.Slot, "pid", w.PID,
			"redelivered", redelivered, "finished", n-redelivered)
	}
	e.wake()
}

// complete applies a batch of results from c.
func (e *Engine) complete(c *conn, results []*pb.TaskResult) {
	var ups []*store.Record
	var obs []observation
	var finished []*task
	done, retried := int64(0), int64(0)
	e.mu.Lock()
	for _, r := range results {
		t := c.inflight[r.Id]
		if t == nil {
			continue
		}
		delete(c.inflight, r.Id)
		delete(c.timed, r.Id)
		done++
		if e.cfg.Observer != nil {
			obs = append(obs, observation{t.rec.Kind, outcomeName(r.Outcome, t), time.Duration(r.FinishedUnixNano - r.StartedUnixNano)})
		}
		if r.StartedUnixNano != 0 {
			t.rec.StartedAt = time.Unix(0, r.StartedUnixNano)
		}
		fin := time.Unix(0, r.FinishedUnixNano)
		if r.FinishedUnixNano == 0 {
			fin = time.Now()
		}
		switch r.Outcome {
		case pb.Outcome_OUTCOME_SUCCEEDED:
			t.progress = 1
			ups = append(ups, e.finishLocked(t, store.Succeeded, r.Output, "", fin, &finished))
		case pb.Outcome_OUTCOME_CANCELED:
			ups = append(ups, e.finishLocked(t, store.Canceled, nil, "canceled", fin, &finished))
		case pb.Outcome_OUTCOME_TIMEOUT, pb.Outcome_OUTCOME_UNKNOWN_KIND, pb.Outcome_OUTCOME_REJECTED:
			ups = append(ups, e.finishLocked(t, store.Failed, nil, r.Error, fin, &finished))
		default:
			switch {
			case t.canceled:
				ups = append(ups, e.finishLocked(t, store.Canceled, nil, "canceled", fin, &finished))
			case t.rec.Attempts < t.rec.MaxAttempts:
				t.rec.State = store.Queued
				t.rec.Error = r.Error
				t.rec.WorkerSlot = -1
				t.runAt = time.Now().Add(e.retryDelay(t.rec.Attempts))
				e.enqueueLocked(t)
				retried++
				ups = append(ups, recCopy(&t.rec))
			default:
				ups = append(ups, e.finishLocked(t, store.Dead, nil,
					fmt.Sprintf("attempt %d of %d failed: %s", t.rec.Attempts, t.rec.MaxAttempts, r.Error), fin, &finished))
			}
		}
	}
	e.checkIdleLocked()
	e.mu.Unlock()
	reg := e.cfg.Region
	reg.Counter(shm.InFlight).Add(-done)
	if retried > 0 {
		reg.Counter(shm.Retried).Add(retried)
	}
	e.persist(ups, finished)
	for _, o := range obs {
		e.cfg.Observer.TaskDone(o.kind, o.outcome, o.d)
	}
	e.wake()
}

type observation struct {
	kind, outcome string
	d             time.Duration
}

// outcomeName names an attempt's outcome for metrics; t's state is the
// one complete just gave it.
func outcomeName(o pb.Outcome, t *task) string {
	switch o {
	case pb.Outcome_OUTCOME_SUCCEEDED:
		return "succeeded"
	case pb.Outcome_OUTCOME_TIMEOUT:
		return "timeout"
	case pb.Outcome_OUTCOME_CANCELED:
		return "canceled"
	case pb.Outcome_OUTCOME_UNKNOWN_KIND:
		return "unknown_kind"
	case pb.Outcome_OUTCOME_REJECTED:
		return "rejected"
	}
	if t.rec.Attempts < t.rec.MaxAttempts && !t.canceled {
		return "retry"
	}
	return "dead"
}

func (e *Engine) progress(c *conn, ps []*pb.Progress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range ps {
		if t := c.inflight[p.Id]; t != nil {
			t.progress = p.Fraction
			t.progMsg = p.Message
			e.progLog.add(c, p.Id)
		}
	}
}

// checkIdleLocked wakes a waiting Shutdown once nothing is in flight.
func (e *Engine) checkIdleLocked() {
	if e.idle == nil {
		return
	}
	for _, c := range e.all {
		if len(c.inflight) > 0 {
			return
		}
	}
	close(e.idle)
	e.idle = nil
}
