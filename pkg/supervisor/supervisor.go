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
	// WorkerReady is called when a worker has answered Hello.
	WorkerReady(w *Worker)
	// Drain stops new work for w and returns once w finished what it runs
	// and ran its stop hooks, or when ctx ends.
	Drain(ctx context.Context, w *Worker) error
	// WorkerGone is called once w's process has exited; nothing more comes
	// from it, so its tasks can be delivered again.
	WorkerGone(w *Worker)
}

// NopHooks is Hooks that does nothing.
type NopHooks struct{}

func (NopHooks) WorkerReady(*Worker)                  {}
func (NopHooks) Drain(context.Context, *Worker) error { return nil }
func (NopHooks) WorkerGone(*Worker)                   {}

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
}

// Supervisor runs one loop per worker slot.
type Supervisor struct {
	cfg    Config
	fork   *forker
	slots  []*slot
	wg     sync.WaitGroup
	cancel context.CancelFunc

	mu       sync.Mutex
	started  bool
	stopped  bool
	stopping atomic.Bool // no restarts once set
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
	s := &Supervisor{cfg: cfg}
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
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	errs := make(chan error, len(s.slots))
	for _, sl := range s.slots {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sl.run(runCtx, errs)
		}()
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

// Stop drains every worker (up to StopTimeout each, in parallel), stops
// them and waits for the slot loops. It is safe to call more than once.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	s.stopping.Store(true)
	for _, sl := range s.slots {
		sl.requestStop()
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
		for _, sl := range s.slots {
			_ = sl.kill()
		}
		s.cancel()
		<-done
		err = ctx.Err()
	}
	s.cancel()
	s.fork.close()
	return err
}

// Slots returns the number of worker slots.
func (s *Supervisor) Slots() int { return len(s.slots) }

func (s *Supervisor) slot(i int) (*slot, error) {
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
	if err := sl.kill(); err != nil {
		return err
	}
	s.event(i, "killed", "killed with SIGKILL on request")
	return nil
}

// Restart stops the slot's worker gracefully (drain, stop hooks) and forks
// a fresh one. It returns once the restart is under way.
func (s *Supervisor) Restart(i int) error {
	sl, err := s.slot(i)
	if err != nil {
		return err
	}
	return sl.requestRestart()
}

// Process returns the slot's live worker, or nil.
func (s *Supervisor) Process(i int) *Worker {
	sl, err := s.slot(i)
	if err != nil {
		return nil
	}
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.cur == nil {
		return nil
	}
	return sl.cur.worker
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
