package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	"github.com/atomicflow/atomicflow/pkg/supervisor"
)

// Policy chooses the worker for a task.
type Policy string

// Dispatch policies.
const (
	LeastLoaded Policy = "least-loaded"
	RoundRobin  Policy = "round-robin"
	KeyHash     Policy = "key-hash"
)

// ParsePolicy checks a policy name.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case LeastLoaded, RoundRobin, KeyHash:
		return p, nil
	case "":
		return LeastLoaded, nil
	}
	return "", fmt.Errorf("unknown dispatch policy %q (want least-loaded, round-robin or key-hash)", s)
}

// Config describes an engine. Store and Region are required.
type Config struct {
	Store  store.Store
	Region *shm.Region
	// Slots is the number of worker slots the region has room for.
	Slots int
	// Workers is the number of slots in use at start (default Slots);
	// SlotCount changes it when the master scales.
	Workers int
	Policy  Policy
	// MaxQueue bounds the tasks waiting to run (default 1,000,000).
	MaxQueue int
	// MaxAttempts is the default for tasks that do not set one (default 3).
	MaxAttempts int
	// Kinds, when set, are accepted before any worker has said which kinds
	// it serves; the kinds ready workers report are always accepted.
	Kinds []string
	// RetryBase and RetryMax shape the backoff of handler errors
	// (defaults 100ms and 30s): base × 2^(attempt-1), ±20% jitter.
	RetryBase time.Duration
	RetryMax  time.Duration
	// BatchSize caps the tasks in one message to a worker (default 1024).
	BatchSize int
	Logger    *slog.Logger
	// Observer, when set, is told about every attempt that ended.
	Observer Observer
	// KillHung, when set, is called for a worker running a task that
	// outlived its timeout by more than HungGrace: the handler ignores its
	// context, so the process is treated as hung and replaced.
	KillHung  func(w *supervisor.Worker, reason string)
	HungGrace time.Duration // default 5s
}

// Observer is told about every task attempt that ended, outside the
// engine's lock (metrics).
type Observer interface {
	TaskDone(kind, outcome string, d time.Duration)
}

// Submission is one task to accept.
type Submission struct {
	Kind           string
	Payload        []byte
	Key            string
	TimeoutMs      int64
	MaxAttempts    int
	IdempotencyKey string
}

// Engine owns every live task. It is safe for concurrent use.
type Engine struct {
	cfg   Config
	ids   idGen
	store store.Store

	mu         sync.Mutex
	tasks      map[string]*task
	queue      fifo
	pinned     []fifo // key-hash: tasks waiting for their slot
	retries    delayed
	reserved   int                          // queue places held by submits waiting for the store
	waiting    int                          // queued tasks: queue + pinned + retries
	conns      []*conn                      // the active connection of each slot
	all        map[*supervisor.Worker]*conn // every open session, draining ones too
	slotCount  int                          // slots in use (key-hash maps keys onto them)
	rr         int
	kinds      map[string]bool
	progLog    progressLog // the latest progress reports, for ProgressSnapshot
	accepting  bool
	dispatchOn bool
	idle       chan struct{} // closed when nothing is in flight, during shutdown
	finished   int64         // tasks that reached a terminal state

	kick   chan struct{}
	stop   chan struct{}
	doneWG sync.WaitGroup
}

var _ supervisor.Hooks = (*Engine)(nil)

// task is a live task: its record plus where it is.
type task struct {
	rec      store.Record
	conn     *conn
	runAt    time.Time
	canceled bool // cancel requested while running
	progress float64
	progMsg  string
	waiters  []chan struct{}
}

// New makes an engine; call Recover, then Start.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil || cfg.Region == nil {
		return nil, fmt.Errorf("engine: store and region are required")
	}
	if cfg.Slots <= 0 {
		cfg.Slots = cfg.Region.Slots()
	}
	if cfg.Workers <= 0 || cfg.Workers > cfg.Slots {
		cfg.Workers = cfg.Slots
	}
	if cfg.Policy == "" {
		cfg.Policy = LeastLoaded
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 1_000_000
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1024
	}
	if cfg.HungGrace <= 0 {
		cfg.HungGrace = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{
		cfg:        cfg,
		store:      cfg.Store,
		tasks:      make(map[string]*task),
		pinned:     make([]fifo, cfg.Slots),
		conns:      make([]*conn, cfg.Slots),
		all:        make(map[*supervisor.Worker]*conn),
		slotCount:  cfg.Workers,
		kinds:      make(map[string]bool),
		accepting:  true,
		dispatchOn: true,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
	for _, k := range cfg.Kinds {
		e.kinds[k] = true
	}
	return e, nil
}

// Start runs the dispatcher until Close.
func (e *Engine) Start() {
	e.doneWG.Add(1)
	go func() {
		defer e.doneWG.Done()
		e.dispatchLoop()
	}()
	e.wake()
}

// Close stops the dispatcher and closes every session. Call it after the
// workers are stopped.
func (e *Engine) Close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	e.doneWG.Wait()
}

func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) counter(c shm.Counter) interface{ Add(int64) int64 } {
	return e.cfg.Region.Counter(c)
}

// Recover loads every task the store holds that had not finished — queued,
// or running on a worker of a master that died — and queues it again. Call
// it before accepting new work. It returns the number of tasks queued and
// the number that went dead because their attempts ran out.
func (e *Engine) Recover(ctx context.Context) (queued, dead int, err error) {
	var updates []*store.Record
	err = e.store.NonTerminal(ctx, func(r *store.Record) error {
		e.ids.observe(r.ID)
		t := &task{rec: *r}
		if t.rec.MaxAttempts <= 0 {
			t.rec.MaxAttempts = int32(e.cfg.MaxAttempts)
		}
		if t.rec.State == store.Running && t.rec.Attempts >= t.rec.MaxAttempts {
			t.rec.State = store.Dead
			t.rec.Error = fmt.Sprintf("master stopped during attempt %d of %d", t.rec.Attempts, t.rec.MaxAttempts)
			t.rec.FinishedAt = time.Now()
			updates = append(updates, recCopy(&t.rec))
			dead++
			return nil
		}
		if t.rec.State != store.Queued {
			t.rec.State = store.Queued
			updates = append(updates, recCopy(&t.rec))
		}
		t.rec.WorkerSlot = -1
		e.mu.Lock()
		e.tasks[t.rec.ID] = t
		e.enqueueLocked(t)
		e.mu.Unlock()
		queued++
		return nil
	})
	if len(updates) > 0 {
		e.store.Update(updates...)
	}
	e.counter(shm.Dead).Add(int64(dead))
	e.wake()
	if err != nil {
		return queued, dead, fmt.Errorf("engine: recover: %w", err)
	}
	return queued, dead, nil
}

// Submit validates and accepts tasks: it returns their ids once the store
// holds them durably. A submission whose idempotency key was seen before
// gets the earlier task's id.
func (e *Engine) Submit(ctx context.Context, subs []Submission) ([]string, error) {
	if len(subs) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	if !e.accepting {
		e.mu.Unlock()
		return nil, ErrShuttingDown
	}
	for i := range subs {
		if err := e.validateLocked(i, &subs[i]); err != nil {
			e.mu.Unlock()
			return nil, err
		}
	}
	if e.waiting+e.reserved+len(subs) > e.cfg.MaxQueue {
		free := e.cfg.MaxQueue - e.waiting - e.reserved
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %d tasks do not fit (room for %d of %d)", ErrQueueFull, len(subs), max(free, 0), e.cfg.MaxQueue)
	}
	e.reserved += len(subs)
	e.mu.Unlock()

	now := time.Now()
	ids := e.ids.next(len(subs))
	recs := make([]*store.Record, len(subs))
	for i, s := range subs {
		ma := s.MaxAttempts
		if ma <= 0 {
			ma = e.cfg.MaxAttempts
		}
		recs[i] = &store.Record{
			ID: ids[i], Kind: s.Kind, Payload: s.Payload, Key: s.Key, TimeoutMs: s.TimeoutMs,
			MaxAttempts: int32(ma), IdempotencyKey: s.IdempotencyKey, State: store.Queued,
			WorkerSlot: -1, CreatedAt: now,
		}
	}
	// Live copies first: the store owns recs once Create has them.
	live := make([]*task, len(recs))
	for i, r := range recs {
		live[i] = &task{rec: *r}
	}
	// Once Create has handed the records to the store they may become
	// durable whether or not the caller is still there, so the engine must
	// queue whatever the store accepted: the caller's cancellation is not
	// passed on (the wait is bounded by one group commit).
	res, err := e.store.Create(context.WithoutCancel(ctx), recs)

	e.mu.Lock()
	e.reserved -= len(subs)
	if err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("engine: store: %w", err)
	}
	out := make([]string, len(res))
	added := 0
	for i, r := range res {
		out[i] = r.ID
		if r.Existing {
			continue
		}
		e.tasks[r.ID] = live[i]
		e.enqueueLocked(live[i])
		added++
	}
	e.mu.Unlock()
	e.counter(shm.Submitted).Add(int64(added))
	e.wake()
	return out, nil
}

func (e *Engine) validateLocked(i int, s *Submission) error {
	switch {
	case s.Kind == "":
		return &InvalidError{Index: i, Code: "bad_field", Message: fmt.Sprintf("tasks[%d]: kind is required", i)}
	case !e.kinds[s.Kind]:
		return &InvalidError{Index: i, Code: "unknown_kind", Message: fmt.Sprintf("tasks[%d]: unknown task kind %q (known: %s)", i, s.Kind, e.kindListLocked())}
	case s.TimeoutMs < 0:
		return &InvalidError{Index: i, Code: "bad_field", Message: fmt.Sprintf("tasks[%d]: timeout_ms must be >= 0", i)}
	case s.MaxAttempts < 0 || s.MaxAttempts > 1000:
		return &InvalidError{Index: i, Code: "bad_field", Message: fmt.Sprintf("tasks[%d]: max_attempts must be in 0..1000", i)}
	case len(s.Key) > 1024 || len(s.IdempotencyKey) > 1024:
		return &InvalidError{Index: i, Code: "bad_field", Message: fmt.Sprintf("tasks[%d]: key and idempotency_key are limited to 1024 bytes", i)}
	}
	return nil
}

// Kinds returns the task kinds the engine accepts, sorted.
func (e *Engine) Kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return sortedKeys(e.kinds)
}

func (e *Engine) kindListLocked() string {
	ks := sortedKeys(e.kinds)
	if len(ks) == 0 {
		return "none yet: no worker is ready"
	}
	s := ""
	for i, k := range ks {
		if i > 0 {
			s += ", "
		}
		s += k
	}
	return s
}

// enqueueLocked puts a queued task where the dispatcher finds it.
func (e *Engine) enqueueLocked(t *task) {
	t.conn = nil
	e.waiting++
	e.counter(shm.Queued).Add(1)
	if !t.runAt.IsZero() && t.runAt.After(time.Now()) {
		e.retries.add(t)
		return
	}
	e.queue.push(t)
}

// finishLocked moves a task to a terminal state. It returns the record for
// the caller to hand to the store and adds the task to done: once the store
// has the record, the caller passes done to release, which drops the task
// from memory and wakes whoever waits for it. (Dropping it earlier would let
// a Get between the two read the store's older state.)
func (e *Engine) finishLocked(t *task, state store.State, result []byte, errMsg string, at time.Time, done *[]*task) *store.Record {
	t.rec.State = state
	t.rec.Result = result
	t.rec.Error = errMsg
	t.rec.FinishedAt = at
	t.conn = nil
	e.finished++
	*done = append(*done, t)
	switch state {
	case store.Dead:
		e.counter(shm.Dead).Add(1)
	case store.Canceled:
		e.counter(shm.Canceled).Add(1)
	}
	return recCopy(&t.rec)
}

// persist hands records to the store and then releases the finished tasks.
func (e *Engine) persist(ups []*store.Record, done []*task) {
	if len(ups) > 0 {
		e.store.Update(ups...)
	}
	if len(done) == 0 {
		return
	}
	e.mu.Lock()
	for _, t := range done {
		if e.tasks[t.rec.ID] == t {
			delete(e.tasks, t.rec.ID)
		}
		for _, w := range t.waiters {
			close(w)
		}
		t.waiters = nil
	}
	e.mu.Unlock()
}

// retryDelay is the backoff before attempt n+1 after n failed ones.
func (e *Engine) retryDelay(n int32) time.Duration {
	d := e.cfg.RetryBase
	for i := int32(1); i < n && d < e.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, e.cfg.RetryMax)
	return jitter(d)
}

func recCopy(r *store.Record) *store.Record {
	c := *r
	return &c
}

// TaskView is a task as the API shows it.
type TaskView struct {
	store.Record
	Progress        float64
	ProgressMessage string
}

// Get returns the task with id.
func (e *Engine) Get(ctx context.Context, id string) (*TaskView, error) {
	e.mu.Lock()
	if t, ok := e.tasks[id]; ok {
		v := &TaskView{Record: t.rec, Progress: t.progress, ProgressMessage: t.progMsg}
		e.mu.Unlock()
		return v, nil
	}
	e.mu.Unlock()
	r, err := e.store.Get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	v := &TaskView{Record: *r}
	if r.State == store.Succeeded {
		v.Progress = 1
	}
	return v, nil
}

// Wait returns the task once it is terminal, or its current view when ctx
// ends first.
func (e *Engine) Wait(ctx context.Context, id string) (*TaskView, error) {
	e.mu.Lock()
	t, ok := e.tasks[id]
	if !ok {
		e.mu.Unlock()
		return e.Get(ctx, id)
	}
	ch := make(chan struct{})
	t.waiters = append(t.waiters, ch)
	e.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
	return e.Get(context.WithoutCancel(ctx), id)
}

// Cancel cancels a task: a queued one at once, a running one by canceling
// its handler's context (it ends canceled when the worker reports back).
func (e *Engine) Cancel(ctx context.Context, id string) (*TaskView, error) {
	e.mu.Lock()
	t, ok := e.tasks[id]
	if !ok {
		e.mu.Unlock()
		v, err := e.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		return v, fmt.Errorf("%w: %s is %s", ErrTerminal, id, v.State)
	}
	var done []*task
	var ups []*store.Record
	switch {
	case t.rec.State.Terminal():
		v := &TaskView{Record: t.rec}
		e.mu.Unlock()
		return v, fmt.Errorf("%w: %s is %s", ErrTerminal, id, v.State)
	case t.rec.State == store.Queued:
		// Left where it is in the queue; the dispatcher drops it.
		t.canceled = true
		e.waiting--
		e.counter(shm.Queued).Add(-1)
		ups = append(ups, e.finishLocked(t, store.Canceled, nil, "canceled before it ran", time.Now(), &done))
	case t.conn != nil:
		t.canceled = true
		t.conn.sendCancel(id)
	}
	v := &TaskView{Record: t.rec}
	e.mu.Unlock()
	e.persist(ups, done)
	return v, nil
}

// Retry queues a dead task again with a fresh set of attempts.
func (e *Engine) Retry(ctx context.Context, id string) (*TaskView, error) {
	e.mu.Lock()
	if _, live := e.tasks[id]; live {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %s is still live", ErrNotDead, id)
	}
	e.mu.Unlock()
	r, err := e.store.Get(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return nil, err
	}
	if r.State != store.Dead {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotDead, id, r.State)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, live := e.tasks[id]; live {
		return nil, fmt.Errorf("%w: %s is already queued", ErrNotDead, id)
	}
	t := &task{rec: *r}
	t.rec.State = store.Queued
	t.rec.Attempts = 0
	t.rec.Error = ""
	t.rec.Result = nil
	t.rec.FinishedAt = time.Time{}
	t.rec.WorkerSlot = -1
	e.tasks[id] = t
	e.store.Update(recCopy(&t.rec))
	e.enqueueLocked(t)
	e.counter(shm.Dead).Add(-1)
	e.wake()
	return &TaskView{Record: t.rec}, nil
}

// List returns tasks in one state, from the store.
func (e *Engine) List(ctx context.Context, state store.State, limit int, after string) ([]*store.Record, error) {
	recs, err := e.store.List(ctx, store.ListOptions{State: state, Limit: limit, After: after})
	if err != nil {
		return nil, fmt.Errorf("engine: list: %w", err)
	}
	return recs, nil
}

// Stats are the engine's own numbers (the shared region has the rest).
type Stats struct {
	Live     int
	Queued   int
	InFlight int
	Workers  int
}

// Stats reads the engine's counts.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{Live: len(e.tasks), Queued: e.waiting}
	for _, c := range e.all {
		s.InFlight += len(c.inflight)
		if !c.draining {
			s.Workers++
		}
	}
	return s
}

// Accepting reports whether submits are accepted (readiness).
func (e *Engine) Accepting() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.accepting
}

// Shutdown stops accepting and dispatching, then waits until nothing is in
// flight or ctx ends. It returns how many tasks finished while it waited
// and how many were left (queued or still running); those stay in the
// store and run after the next start.
func (e *Engine) Shutdown(ctx context.Context) (finished, unfinished int) {
	e.mu.Lock()
	e.accepting = false
	e.dispatchOn = false
	before := e.finished
	inflight := 0
	for _, c := range e.all {
		inflight += len(c.inflight)
	}
	var idle chan struct{}
	if inflight > 0 {
		idle = make(chan struct{})
		e.idle = idle
	}
	e.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	e.mu.Lock()
	finished = int(e.finished - before)
	for _, t := range e.tasks {
		if !t.rec.State.Terminal() {
			unfinished++
		}
	}
	e.idle = nil
	e.mu.Unlock()
	return finished, unfinished
}

// SetKillHung sets the hung-task hook and its grace (the supervisor is
// made after the engine). Call it before Start.
func (e *Engine) SetKillHung(kill func(w *supervisor.Worker, reason string), grace time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.KillHung = kill
	if grace > 0 {
		e.cfg.HungGrace = grace
	}
}

// SlotCount sets the number of slots in use (the master scaled). Keys then
// hash onto the new count.
func (e *Engine) SlotCount(n int) {
	e.mu.Lock()
	e.slotCount = max(1, min(n, len(e.conns)))
	// Tasks pinned to slots that are gone hash again.
	for s := e.slotCount; s < len(e.pinned); s++ {
		for t := e.pinned[s].pop(); t != nil; t = e.pinned[s].pop() {
			e.queue.push(t)
		}
	}
	e.mu.Unlock()
	e.wake()
}

// Flush makes every state change so far durable.
func (e *Engine) Flush(ctx context.Context) error {
	return e.store.Flush(ctx)
}
