package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/atomicflow/atomicflow/pkg/shm"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// Worker is one live worker process as the engine sees it.
type Worker struct {
	Slot       int
	Generation uint64
	PID        int
	Capacity   int
	Kinds      []string
	Client     pb.WorkerClient
}

// Hooks connect the supervisor to whoever sends the workers tasks.
type Hooks interface {
	// WorkerReady is called when a worker has answered Hello. During a
	// reload the slot's previous worker is still draining.
	WorkerReady(w *Worker)
	// Drain stops new work for w and returns once w finished what it runs
	// and ran its stop hooks, or when ctx ends.
	Drain(ctx context.Context, w *Worker) error
	// WorkerGone is called once w's process has exited; nothing more comes
	// from it, so its tasks can be delivered again.
	WorkerGone(w *Worker)
	// SlotCount is called when scaling changed the number of slots.
	SlotCount(n int)
}

// NopHooks is Hooks that does nothing.
type NopHooks struct{}

func (NopHooks) WorkerReady(*Worker)                  {}
func (NopHooks) Drain(context.Context, *Worker) error { return nil }
func (NopHooks) WorkerGone(*Worker)                   {}
func (NopHooks) SlotCount(int)                        {}

// Config describes the workers to run. Region, WorkerBin and RunDir are
// required.
type Config struct {
	Workers   int
	WorkerBin string
	Args      []string
	// Env is added to the master's environment for every worker.
	Env []string
	// RunDir is the private (0700) directory for the workers' sockets.
	RunDir string
	Region *shm.Region
	// Capacity is passed to each worker as its semaphore size (0: the
	// worker's own default).
	Capacity     int
	Hooks        Hooks
	Backoff      Backoff
	StartTimeout time.Duration // default 10s
	StopTimeout  time.Duration // drain bound for a graceful stop, default 30s
	// HeartbeatTimeout: a ready worker whose heartbeat in the region is
	// older than this is killed as hung (default 5s).
	HeartbeatTimeout time.Duration
	Logger           *slog.Logger
	// LogJSON makes the per-worker go-plugin loggers write JSON.
	LogJSON bool
	// OnEvent, when set, receives every lifecycle event (for the dashboard).
	OnEvent func(slot int, kind, msg string)
	// MaxTasks recycles a worker after about this many tasks (plus up to
	// 10% jitter); 0 never. MaxRSS recycles one whose RSS exceeds it.
	MaxTasks int
	MaxRSS   int64
}

// Supervisor runs one loop per worker slot.
type Supervisor struct {
	cfg    Config
	fork   *forker
	wg     sync.WaitGroup
	runCtx context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	slots    []*slot
	started  bool
	stopped  bool
	stopping atomic.Bool // no restarts once set
	causes   map[string]int64
	// ops serializes reload and scale.
	ops sync.Mutex
}

// New checks the configuration and the worker binary; it starts nothing.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Region == nil {
		return nil, errors.New("supervisor: no shared region")
	}
	if cfg.Workers < 1 || cfg.Workers > cfg.Region.Slots() {
		return nil, fmt.Errorf("supervisor: %d workers for %d slots", cfg.Workers, cfg.Region.Slots())
	}
	if err := checkBinary(cfg.WorkerBin); err != nil {
		return nil, err
	}
	if cfg.Hooks == nil {
		cfg.Hooks = NopHooks{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	cfg.Backoff = cfg.Backoff.withDefaults()
	s := &Supervisor{cfg: cfg, causes: map[string]int64{}}
	for i := 0; i < cfg.Workers; i++ {
		s.slots = append(s.slots, newSlot(s, i))
	}
	return s, nil
}

func checkBinary(path string) error {
	if path == "" {
		return fmt.Errorf("%w: no path given", ErrBadWorkerBinary)
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadWorkerBinary, err)
	}
	if st.IsDir() {
		return fmt.Errorf("%w: %s is a directory", ErrBadWorkerBinary, path)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: %s is not executable", ErrBadWorkerBinary, path)
	}
	return nil
}

// Start forks every worker and returns once each has become ready, or the
// first error: a worker that cannot start at all when the master starts is
// a configuration problem, reported once instead of retried forever. After
// Start returns nil, deaths are handled by restarting.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("supervisor: started twice")
	}
	s.started = true
	s.mu.Unlock()

	s.fork = newForker()
	s.runCtx, s.cancel = context.WithCancel(context.Background())
	errs := make(chan error, len(s.slots))
	for _, sl := range s.slots {
		s.launch(sl, errs)
	}
	var first error
	for range s.slots {
		select {
		case err := <-errs:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			if first == nil {
				first = ctx.Err()
			}
		}
		if first != nil {
			break
		}
	}
	if first != nil {
		stopCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = s.Stop(stopCtx)
		return first
	}
	return nil
}

// Stop timing: a drain ends stopReserve before Stop's deadline (go-plugin
// then gives a worker 2s to exit; its stop hooks run), but lasts at least
// minDrain.
const (
	minDrain    = 500 * time.Millisecond
	stopReserve = 2 * time.Second
	// StopGrace is the least time Stop needs to stop workers gracefully;
	// give its ctx at least this much.
	StopGrace = minDrain + stopReserve
)

// Stop drains every worker in parallel, up to StopTimeout and until
// stopReserve before ctx's deadline (but at least minDrain), stops them
// and waits for the slot loops. Workers left when ctx ends are killed. It
// is safe to call more than once.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.stopping.Store(true)
	dl, hasDeadline := ctx.Deadline()
	drainBy := dl.Add(-stopReserve)
	if least := time.Now().Add(minDrain); drainBy.Before(least) {
		drainBy = least
	}
	for _, sl := range s.snapshot() {
		if hasDeadline {
			sl.drainUntil(drainBy)
		}
		sl.request(ctrlReq{kind: ctrlStop})
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		// Out of time: kill what is left.
		for _, sl := range s.snapshot() {
			sl.drainCancel(ctx.Err())
			sl.killAll("stop")
		}
		s.cancel()
		<-done
		err = ctx.Err()
	}
	s.cancel()
	s.fork.close()
	return err
}

func (s *Supervisor) launch(sl *slot, first chan<- error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sl.run(s.runCtx, first)
	}()
}

func (s *Supervisor) snapshot() []*slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*slot(nil), s.slots...)
}

// Slots returns the number of worker slots in use.
func (s *Supervisor) Slots() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.slots)
}

func (s *Supervisor) slot(i int) (*slot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, ErrStopped
	}
	if i < 0 || i >= len(s.slots) {
		return nil, fmt.Errorf("%w: %d (have 0..%d)", ErrNoSlot, i, len(s.slots)-1)
	}
	return s.slots[i], nil
}

// Kill sends SIGKILL to the slot's worker; the slot forks a new one.
func (s *Supervisor) Kill(i int) error {
	sl, err := s.slot(i)
	if err != nil {
		return err
	}
	if err := sl.kill("kill"); err != nil {
		return err
	}
	s.event(i, "killed", "killed with SIGKILL on request")
	return nil
}

// KillHung kills w if it is still its slot's current or retiring
// (draining) process: it was found hung (reason says why). A current one
// is replaced by a new fork; a retiring one's tasks are delivered again.
// It is also the way to drop a worker the engine cannot use.
func (s *Supervisor) KillHung(w *Worker, reason string) {
	sl, err := s.slot(w.Slot)
	if err != nil {
		return
	}
	if sl.killWorker(w, "hung") == nil {
		s.event(w.Slot, "killed", fmt.Sprintf("pid %d hung: %s", w.PID, reason))
	}
}

// Restart replaces the slot's worker with a fresh process: the new one
// starts, and once it is ready the old one drains (its tasks finish, its
// stop hooks run) and stops. While an earlier replacement's old process
// still drains, the restart waits for it. It returns once the restart is
// under way.
func (s *Supervisor) Restart(i int) error {
	sl, err := s.slot(i)
	if err != nil {
		return err
	}
	if sl.live() == nil {
		return fmt.Errorf("slot %d: %w", i, ErrNotRunning)
	}
	select {
	case sl.ctrl <- ctrlReq{kind: ctrlReplace, reason: "restart"}:
		s.event(i, "restart", "graceful restart requested")
		return nil
	default:
		return fmt.Errorf("slot %d: %w", i, ErrBusy)
	}
}

// Reload replaces every worker, one slot at a time: start the new
// process, wait until it is ready, drain and stop the old one, then the
// next slot. A binary replaced on disk is picked up. A replacement that
// fails to start leaves the old worker running and stops the reload.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.ops.Lock()
	defer s.ops.Unlock()
	start := time.Now()
	s.cfg.Logger.Info("rolling reload started", "slots", s.Slots())
	for _, sl := range s.snapshot() {
		if s.stopping.Load() {
			return ErrStopped
		}
		if sl.live() == nil {
			continue // dead or in backoff: its next fork uses the new binary anyway
		}
		done := make(chan error, 1)
		select {
		case sl.ctrl <- ctrlReq{kind: ctrlReplace, reason: "reload", done: done}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("reload stopped at slot %d: %w", sl.index, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.cfg.Logger.Info("rolling reload done", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Scale sets the number of workers. New slots start at once; removed
// slots (the highest) are drained first.
func (s *Supervisor) Scale(ctx context.Context, n int) error {
	s.ops.Lock()
	defer s.ops.Unlock()
	if n < 1 || n > s.cfg.Region.Slots() {
		return fmt.Errorf("%w: %d workers (this master has room for 1..%d)", ErrBadCount, n, s.cfg.Region.Slots())
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	cur := len(s.slots)
	for i := cur; i < n; i++ {
		sl := newSlot(s, i)
		s.slots = append(s.slots, sl)
		s.launch(sl, nil)
	}
	var removed []*slot
	if n < cur {
		removed = append(removed, s.slots[n:]...)
		s.slots = s.slots[:n]
	}
	s.mu.Unlock()
	s.cfg.Hooks.SlotCount(n)
	if n != cur {
		s.cfg.Logger.Info("scaling", "from", cur, "to", n)
	}
	for i := len(removed) - 1; i >= 0; i-- {
		sl := removed[i]
		sl.request(ctrlReq{kind: ctrlStop})
		select {
		case <-sl.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		sl.shm.SetIdentity(shm.Identity{State: shm.StateEmpty})
		s.event(sl.index, "stopped", "slot removed by scaling")
	}
	return nil
}

// MaxWorkers is the most workers Scale accepts (the region's slots).
func (s *Supervisor) MaxWorkers() int { return s.cfg.Region.Slots() }

func (s *Supervisor) countRestart(cause string) {
	s.mu.Lock()
	s.causes[cause]++
	s.mu.Unlock()
}

// RestartCauses counts worker replacements by cause: crash, kill, hung,
// restart, reload, recycle, stop.
func (s *Supervisor) RestartCauses() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.causes))
	for k, v := range s.causes {
		out[k] = v
	}
	return out
}

// Process returns the slot's live worker, or nil.
func (s *Supervisor) Process(i int) *Worker {
	sl, err := s.slot(i)
	if err != nil {
		return nil
	}
	if p := sl.live(); p != nil {
		return p.worker
	}
	return nil
}

func (s *Supervisor) event(slot int, kind, msg string) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(slot, kind, msg)
	}
}

func (s *Supervisor) hclogger(slot int) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       fmt.Sprintf("worker-%d", slot),
		Output:     os.Stderr,
		Level:      hclog.Info,
		JSONFormat: s.cfg.LogJSON,
	})
}
