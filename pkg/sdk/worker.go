package sdk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/wire"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// maxResultsPerMessage bounds one result batch.
const maxResultsPerMessage = 2048

// worker is the gRPC Worker service of one worker process.
type worker struct {
	pb.UnimplementedWorkerServer

	cfg    Config
	region *shm.Region
	slot   *shm.Half // the part of our slot this process writes
	env    *Env
	logger hclog.Logger
	sem    chan struct{}

	startOnce sync.Once
	startErr  error
	stopOnce  sync.Once

	mu       sync.Mutex
	running  map[string]context.CancelFunc
	sessions map[*session]struct{}
	tasks    sync.WaitGroup
	draining bool
}

func newWorker(cfg Config, region *shm.Region, slot, half int, logger hclog.Logger) *worker {
	s := region.Slot(slot).Half(half)
	s.SetCapacity(int64(cfg.Capacity))
	return &worker{
		cfg:      cfg,
		region:   region,
		slot:     s,
		env:      NewEnv(region, slot),
		logger:   logger,
		sem:      make(chan struct{}, cfg.Capacity),
		running:  make(map[string]context.CancelFunc),
		sessions: make(map[*session]struct{}),
	}
}

// Hello runs the start hook once and reports what this worker can do.
func (w *worker) Hello(ctx context.Context, _ *pb.HelloRequest) (*pb.HelloResponse, error) {
	w.startOnce.Do(func() {
		if w.cfg.OnStart != nil {
			w.startErr = w.cfg.OnStart(ctx)
		}
	})
	if w.startErr != nil {
		w.logger.Error("start hook failed", "error", w.startErr)
		go func() {
			time.Sleep(50 * time.Millisecond)
			os.Exit(wire.ExitStartHook)
		}()
		return nil, fmt.Errorf("start hook: %w", w.startErr)
	}
	kinds := make([]string, 0, len(w.cfg.Handlers))
	for k := range w.cfg.Handlers {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return &pb.HelloResponse{Pid: int32(os.Getpid()), Capacity: int32(w.cfg.Capacity), Kinds: kinds}, nil
}

// Session receives task batches and sends result batches until the master
// closes the stream.
func (w *worker) Session(stream pb.Worker_SessionServer) error {
	s := newSession(w, stream)
	w.mu.Lock()
	w.sessions[s] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.sessions, s)
		w.mu.Unlock()
	}()
	return s.run()
}

// start runs one task in its own goroutine, bounded by the semaphore.
func (w *worker) start(ctx context.Context, spec *pb.TaskSpec, out *session) {
	w.sem <- struct{}{}
	var cancel context.CancelFunc
	var deadline time.Time
	if spec.TimeoutMs > 0 {
		deadline = time.Now().Add(time.Duration(spec.TimeoutMs) * time.Millisecond)
		ctx, cancel = context.WithDeadline(ctx, deadline)
	} else {
		ctx, cancel = context.WithCancel(ctx)
	}
	w.mu.Lock()
	w.running[spec.Id] = cancel
	w.mu.Unlock()
	w.tasks.Add(1)
	w.slot.InFlight().Add(1)
	go func() {
		defer func() {
			cancel()
			w.mu.Lock()
			delete(w.running, spec.Id)
			w.mu.Unlock()
			w.slot.InFlight().Add(-1)
			<-w.sem
			w.tasks.Done()
		}()
		out.deliver(w.run(ctx, spec, deadline, out))
	}()
}

func (w *worker) run(ctx context.Context, spec *pb.TaskSpec, deadline time.Time, out *session) (res *pb.TaskResult) {
	res = &pb.TaskResult{Id: spec.Id, StartedUnixNano: time.Now().UnixNano()}
	defer func() {
		if p := recover(); p != nil {
			res.Outcome = pb.Outcome_OUTCOME_FAILED
			res.Error = fmt.Sprintf("panic: %v", p)
			res.Output = nil
		}
		res.FinishedUnixNano = time.Now().UnixNano()
		if res.Outcome == pb.Outcome_OUTCOME_SUCCEEDED {
			w.slot.Completed().Add(1)
			w.region.Counter(shm.Completed).Add(1)
		} else {
			w.slot.Failed().Add(1)
			w.region.Counter(shm.Failed).Add(1)
		}
	}()
	h, ok := w.cfg.Handlers[spec.Kind]
	if !ok {
		res.Outcome = pb.Outcome_OUTCOME_UNKNOWN_KIND
		res.Error = fmt.Sprintf("worker has no handler for kind %q", spec.Kind)
		return res
	}
	t := &Task{
		ID: spec.Id, Kind: spec.Kind, Payload: spec.Payload, Key: spec.Key,
		Attempt: int(spec.Attempt), Deadline: deadline, Env: w.env,
		progress: func(f float64, msg string) { out.progress(spec.Id, f, msg) },
	}
	output, err := h(ctx, t)
	switch {
	case err == nil:
		res.Outcome = pb.Outcome_OUTCOME_SUCCEEDED
		res.Output = output
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Outcome = pb.Outcome_OUTCOME_TIMEOUT
		res.Error = fmt.Sprintf("timeout after %dms: %v", spec.TimeoutMs, err)
	case errors.Is(ctx.Err(), context.Canceled):
		res.Outcome = pb.Outcome_OUTCOME_CANCELED
		res.Error = "canceled"
	case errors.Is(err, ErrPermanent):
		res.Outcome = pb.Outcome_OUTCOME_REJECTED
		res.Error = err.Error()
	default:
		res.Outcome = pb.Outcome_OUTCOME_FAILED
		res.Error = err.Error()
	}
	return res
}

func (w *worker) cancel(ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if c, ok := w.running[id]; ok {
			c()
		}
	}
}

// drain waits for running tasks (canceling them once timeout passes) and
// runs the stop hook once.
func (w *worker) drain(ctx context.Context, timeout time.Duration) {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		w.draining = true
		w.mu.Unlock()
		done := make(chan struct{})
		go func() {
			w.tasks.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(timeout):
			w.logger.Warn("drain timeout: canceling running tasks")
			w.mu.Lock()
			for _, c := range w.running {
				c()
			}
			w.mu.Unlock()
			<-done
		}
		w.flushSessions()
		if w.cfg.OnStop != nil {
			if err := w.cfg.OnStop(ctx); err != nil {
				w.logger.Error("stop hook failed", "error", err)
			}
		}
	})
}

func (w *worker) flushSessions() {
	w.mu.Lock()
	ss := make([]*session, 0, len(w.sessions))
	for s := range w.sessions {
		ss = append(ss, s)
	}
	w.mu.Unlock()
	for _, s := range ss {
		s.flush()
	}
}

func (w *worker) closeSessions() { w.flushSessions() }

// heartbeat writes the slot's heartbeat, RSS and CPU time until ctx ends.
func (w *worker) heartbeat(ctx context.Context) {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	// The beat itself is a few stores; RSS and CPU time cost syscalls, so
	// they are read about twice a second (an idle worker stays near 0% CPU).
	every := max(1, int(500*time.Millisecond/w.cfg.HeartbeatInterval))
	var hb shm.Heartbeat
	for i := 0; ; i++ {
		if i%every == 0 {
			hb.RSSBytes, hb.CPUTime = rssBytes(), cpuTime()
		}
		hb.At = time.Now()
		hb.Goroutines = int64(runtime.NumGoroutine())
		w.slot.Beat(hb)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
