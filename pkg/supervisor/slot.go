package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/wire"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

type ctrlKind int

const (
	// ctrlReplace starts a new process in the slot's other half, waits
	// until it is ready, then drains and stops the old one (reload,
	// restart, recycle).
	ctrlReplace ctrlKind = iota
	// ctrlStop drains and stops the slot's process and ends the loop.
	ctrlStop
)

type ctrlReq struct {
	kind   ctrlKind
	reason string
	done   chan error // nil: nobody waits
}

func (r ctrlReq) reply(err error) {
	if r.done != nil {
		r.done <- err
	}
}

// slot is the loop that keeps one worker slot filled.
type slot struct {
	sup   *Supervisor
	index int
	shm   *shm.Slot
	ctrl  chan ctrlReq
	done  chan struct{} // closed when run returns

	// loop-owned
	gen      uint64
	restarts int64
	quick    int
	lastExit int64
	lastHalf int
	retiring sync.WaitGroup
	// retired is closed when the process retiring in the background is
	// gone (nil: none). A replacement waits for it, as it would spawn into
	// that process's half; pending holds the replace requests waiting.
	retired chan struct{}
	pending []ctrlReq

	// drainCtx bounds every drain; Stop cancels it at its drain deadline.
	drainCtx    context.Context
	drainCancel context.CancelCauseFunc

	mu    sync.Mutex
	cur   *process
	old   *process // retiring (draining) after a replacement
	cause string   // why the current process is about to die (kill, hung)
}

type process struct {
	runner    *procRunner
	client    *plugin.Client
	worker    *Worker
	half      int
	started   time.Time
	taskLimit int64 // recycle after this many tasks (0: never)
	recycling bool
	killed    string // why a retiring process was killed (guarded by slot.mu)
}

func newSlot(s *Supervisor, i int) *slot {
	sl := &slot{sup: s, index: i, shm: s.cfg.Region.Slot(i), ctrl: make(chan ctrlReq, 4), done: make(chan struct{})}
	sl.drainCtx, sl.drainCancel = context.WithCancelCause(context.Background())
	return sl
}

// drainUntil ends every drain of the slot, running or to come, at t.
func (sl *slot) drainUntil(t time.Time) {
	time.AfterFunc(time.Until(t), func() { sl.drainCancel(errStopDeadline) })
}

var errStopDeadline = errors.New("shutdown deadline")

func (sl *slot) setIdentity(state shm.State, p *process, backoffUntil time.Time) {
	id := shm.Identity{Generation: sl.gen, State: state, Restarts: sl.restarts, BackoffUntil: backoffUntil, LastExit: sl.lastExit}
	if p != nil {
		id.PID, id.Started, id.Half = p.worker.PID, p.started, p.half
	}
	sl.shm.SetIdentity(id)
}

func (sl *slot) request(r ctrlReq) {
	sl.ctrl <- r
}

func (sl *slot) clearCur(p *process) {
	sl.mu.Lock()
	if sl.cur == p {
		sl.cur = nil
	}
	sl.mu.Unlock()
}

func (sl *slot) live() *process {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.cur
}

func (sl *slot) kill(cause string) error {
	sl.mu.Lock()
	p := sl.cur
	if p != nil {
		sl.cause = cause
	}
	sl.mu.Unlock()
	if p == nil || p.runner == nil {
		return fmt.Errorf("slot %d: %w", sl.index, ErrNotRunning)
	}
	return p.runner.signal(syscall.SIGKILL)
}

// killWorker SIGKILLs w if it is the slot's current or retiring process.
func (sl *slot) killWorker(w *Worker, cause string) error {
	sl.mu.Lock()
	var p *process
	switch {
	case sl.cur != nil && sl.cur.worker == w:
		p, sl.cause = sl.cur, cause
	case sl.old != nil && sl.old.worker == w && sl.old.killed == "":
		p, sl.old.killed = sl.old, cause
	}
	sl.mu.Unlock()
	if p == nil || p.runner == nil {
		return fmt.Errorf("slot %d: pid %d: %w", sl.index, w.PID, ErrNotRunning)
	}
	return p.runner.signal(syscall.SIGKILL)
}

// killAll SIGKILLs the current and the retiring process.
func (sl *slot) killAll(cause string) {
	_ = sl.kill(cause)
	sl.mu.Lock()
	o := sl.old
	if o != nil && o.killed == "" {
		o.killed = cause
	}
	sl.mu.Unlock()
	if o != nil {
		_ = o.runner.signal(syscall.SIGKILL)
	}
}

// run keeps the slot filled until a stop request or ctx ends. When first
// is not nil the first start's outcome goes there, and a failure ends the
// loop (a configuration problem); later failures back off and retry.
func (sl *slot) run(ctx context.Context, first chan<- error) {
	defer close(sl.done)
	defer sl.retiring.Wait()
	cfg := &sl.sup.cfg
	initial := true
	for {
		if !initial {
			delay := cfg.Backoff.delay(sl.quick)
			if delay > 0 {
				until := time.Now().Add(delay)
				sl.setIdentity(shm.StateBackoff, nil, until)
				cfg.Logger.Warn("worker backoff", "slot", sl.index, "delay", delay.Round(time.Millisecond), "quick_deaths", sl.quick)
				sl.sup.event(sl.index, "backoff", fmt.Sprintf("died %d times in a row soon after start; next fork in %v", sl.quick, delay.Round(time.Millisecond)))
				if sl.sleep(ctx, delay) {
					sl.setIdentity(shm.StateStopped, nil, time.Time{})
					return
				}
			}
			sl.restarts++
			cfg.Region.Counter(shm.Restarts).Add(1)
			cfg.Logger.Info("worker restarting", "slot", sl.index, "in", delay.Round(time.Millisecond), "gen", sl.gen+1)
			sl.sup.event(sl.index, "restarting", fmt.Sprintf("forking generation %d", sl.gen+1))
		}
		p, err := sl.spawn(ctx, sl.lastHalf == 1, nil)
		if err != nil {
			sl.setIdentity(shm.StateDead, nil, time.Time{})
			if initial && first != nil {
				first <- err
				return
			}
			cfg.Logger.Error("worker failed to start", "slot", sl.index, "gen", sl.gen, "error", err)
			sl.sup.event(sl.index, "exited", "failed to start: "+err.Error())
			sl.quick++
			initial = false
			if sl.stopRequested(ctx) {
				sl.setIdentity(shm.StateStopped, nil, time.Time{})
				return
			}
			continue
		}
		if initial && first != nil {
			first <- nil
		}
		initial = false
		if stop := sl.supervise(ctx, p); stop {
			return
		}
	}
}

// sleep waits out a backoff; it reports true when the slot must stop.
// Replace requests during a backoff are answered: there is nothing to
// replace.
func (sl *slot) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return false
		case r := <-sl.ctrl:
			if r.kind == ctrlStop {
				r.reply(nil)
				return true
			}
			r.reply(fmt.Errorf("slot %d: %w (in backoff)", sl.index, ErrNotRunning))
		case <-ctx.Done():
			return true
		}
	}
}

// stopRequested drains pending requests after a failed start.
func (sl *slot) stopRequested(ctx context.Context) bool {
	for {
		select {
		case r := <-sl.ctrl:
			if r.kind == ctrlStop {
				r.reply(nil)
				return true
			}
			r.reply(fmt.Errorf("slot %d: %w", sl.index, ErrNotRunning))
		case <-ctx.Done():
			return true
		default:
			return sl.sup.stopping.Load()
		}
	}
}

// supervise watches the slot's process: its death, requests, a stale
// heartbeat, and the recycling limits. It reports whether the loop ends.
func (sl *slot) supervise(ctx context.Context, p *process) (stop bool) {
	cfg := &sl.sup.cfg
	watch := time.NewTicker(min(cfg.HeartbeatTimeout/4, 250*time.Millisecond))
	defer watch.Stop()
	for {
		select {
		case <-p.runner.exited:
			sl.reap(p)
			// The slot forks a fresh process anyway: what waiting
			// replace requests asked for.
			sl.replyPending(nil)
			return sl.sup.stopping.Load()
		case <-sl.retired:
			sl.retired = nil
			if reqs := sl.pending; len(reqs) > 0 {
				sl.pending = nil
				p = sl.replace(ctx, p, reqs)
			}
		case r := <-sl.ctrl:
			switch r.kind {
			case ctrlStop:
				sl.replyPending(fmt.Errorf("slot %d: %w", sl.index, ErrStopped))
				sl.setIdentity(shm.StateDraining, p, time.Time{})
				sl.retire(p, "stop")
				sl.clearCur(p)
				sl.setIdentity(shm.StateStopped, nil, time.Time{})
				r.reply(nil)
				return true
			case ctrlReplace:
				if sl.retired != nil {
					// The previous replacement's old process still drains
					// in the half the new one would take: wait for it.
					cfg.Logger.Info("replacement waits for the previous one to finish draining", "slot", sl.index, "reason", r.reason)
					sl.pending = append(sl.pending, r)
					continue
				}
				p = sl.replace(ctx, p, []ctrlReq{r})
			}
		case <-ctx.Done():
			sl.replyPending(fmt.Errorf("slot %d: %w", sl.index, ErrStopped))
			sl.retire(p, "stop")
			sl.clearCur(p)
			sl.setIdentity(shm.StateStopped, nil, time.Time{})
			return true
		case now := <-watch.C:
			sl.checkRetiring(now)
			sl.check(p, now)
		}
	}
}

func (sl *slot) replyPending(err error) {
	for _, r := range sl.pending {
		r.reply(err)
	}
	sl.pending = nil
}

// replace starts a new process in p's other half and, once it is ready,
// retires p in the background; reqs (one replacement serves them all) are
// answered when p is gone. It returns the slot's process: the new one, or
// p when the new one failed to start. No retire may be in progress.
func (sl *slot) replace(ctx context.Context, p *process, reqs []ctrlReq) *process {
	cfg := &sl.sup.cfg
	reason := reqs[0].reason
	np, err := sl.spawn(ctx, p.half == 0, p)
	if err != nil {
		cfg.Logger.Error("replacement worker failed to start; keeping the old one", "slot", sl.index,
			"pid", p.worker.PID, "reason", reason, "error", err)
		sl.sup.event(sl.index, "exited", fmt.Sprintf("replacement for pid %d failed to start: %v", p.worker.PID, err))
		p.recycling = false
		for _, r := range reqs {
			r.reply(err)
		}
		return p
	}
	sl.restarts++
	sl.setIdentity(shm.StateReady, np, time.Time{})
	sl.sup.countRestart(reason)
	done := make(chan struct{})
	sl.retired = done // spawn made p sl.old
	sl.retiring.Add(1)
	go func() {
		defer sl.retiring.Done()
		sl.retire(p, reason)
		sl.mu.Lock()
		sl.old = nil
		sl.mu.Unlock()
		close(done)
		for _, r := range reqs {
			r.reply(nil)
		}
	}()
	return np
}

// checkRetiring kills the retiring process when its heartbeat is stale:
// hung, it would hold its drain (and the next replacement) to the drain
// timeout. Its tasks are delivered again once it is gone.
func (sl *slot) checkRetiring(now time.Time) {
	cfg := &sl.sup.cfg
	sl.mu.Lock()
	o := sl.old
	sl.mu.Unlock()
	if o == nil {
		return
	}
	hb := sl.shm.Half(o.half).Heartbeat()
	if hb.At.IsZero() || now.Sub(hb.At) <= cfg.HeartbeatTimeout {
		return
	}
	age := now.Sub(hb.At).Round(time.Millisecond)
	if sl.killWorker(o.worker, "hung") == nil {
		cfg.Logger.Warn("draining worker hung: heartbeat stale, killing it", "slot", sl.index, "pid", o.worker.PID, "heartbeat_age", age)
		sl.sup.event(sl.index, "killed", fmt.Sprintf("draining pid %d hung: no heartbeat for %v", o.worker.PID, age))
	}
}

// check kills a hung worker and asks for the replacement of one past its
// recycling limits.
func (sl *slot) check(p *process, now time.Time) {
	cfg := &sl.sup.cfg
	half := sl.shm.Half(p.half)
	hb := half.Heartbeat()
	if !hb.At.IsZero() && now.Sub(hb.At) > cfg.HeartbeatTimeout {
		age := now.Sub(hb.At).Round(time.Millisecond)
		cfg.Logger.Warn("worker hung: heartbeat stale, killing it", "slot", sl.index, "pid", p.worker.PID, "heartbeat_age", age)
		sl.sup.event(sl.index, "killed", fmt.Sprintf("pid %d hung: no heartbeat for %v", p.worker.PID, age))
		_ = sl.kill("hung")
		return
	}
	if p.recycling || sl.retired != nil {
		return // recycling, or a replacement still under way
	}
	reason := ""
	if done := half.Completed().Load() + half.Failed().Load(); p.taskLimit > 0 && done >= p.taskLimit {
		reason = fmt.Sprintf("recycle: %d tasks done (limit %d)", done, p.taskLimit)
	} else if cfg.MaxRSS > 0 && hb.RSSBytes > cfg.MaxRSS {
		reason = fmt.Sprintf("recycle: rss %d MiB over %d MiB", hb.RSSBytes>>20, cfg.MaxRSS>>20)
	}
	if reason == "" {
		return
	}
	p.recycling = true
	cfg.Logger.Info("worker recycling", "slot", sl.index, "pid", p.worker.PID, "reason", reason)
	sl.sup.event(sl.index, "restart", fmt.Sprintf("pid %d %s", p.worker.PID, reason))
	select {
	case sl.ctrl <- ctrlReq{kind: ctrlReplace, reason: "recycle"}:
	default:
		p.recycling = false // the queue is busy; try again next tick
	}
}

// retire drains p (its tasks finish, its stop hooks run) for up to
// StopTimeout or until the slot's drain deadline, stops it, and hands back
// whatever it still had.
func (sl *slot) retire(p *process, reason string) {
	cfg := &sl.sup.cfg
	sl.sup.event(sl.index, "draining", fmt.Sprintf("pid %d draining (%s)", p.worker.PID, reason))
	dctx, cancel := context.WithTimeout(sl.drainCtx, cfg.StopTimeout)
	if err := cfg.Hooks.Drain(dctx, p.worker); err != nil {
		cfg.Logger.Warn("worker drain incomplete", "slot", sl.index, "pid", p.worker.PID, "error", err, "cause", context.Cause(dctx))
	}
	cancel()
	// Kill closes the gRPC connection (the worker exits on it), waits up to
	// 2s, then SIGKILLs, and removes the socket directory. Its shutdown RPC
	// blocks on a frozen process, so SIGKILL here too if need be.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		p.client.Kill()
	}()
	select {
	case <-p.runner.exited:
	case <-time.After(stopReserve + 500*time.Millisecond):
		cfg.Logger.Warn("worker did not exit after close; killing it", "slot", sl.index, "pid", p.worker.PID)
		sl.mu.Lock()
		if p.killed == "" {
			p.killed = "no exit after close"
		}
		sl.mu.Unlock()
		_ = p.runner.signal(syscall.SIGKILL)
		<-p.runner.exited
	}
	<-closed
	sl.shm.Half(p.half).InFlight().Store(0)
	cfg.Hooks.WorkerGone(p.worker)
	status, code := p.runner.exitStatus()
	sl.mu.Lock()
	killed := p.killed
	sl.mu.Unlock()
	cfg.Logger.Info("worker exited", "slot", sl.index, "pid", p.worker.PID, "gen", p.worker.Generation,
		"status", status, "uptime", time.Since(p.started).Round(time.Millisecond), "graceful", killed == "" && code >= 0, "reason", reason)
	if killed != "" {
		sl.sup.event(sl.index, "exited", fmt.Sprintf("draining pid %d %s (%s)", p.worker.PID, status, killed))
		return
	}
	sl.sup.event(sl.index, "stopped", fmt.Sprintf("pid %d stopped gracefully (%s)", p.worker.PID, reason))
}

// reap handles a process that died on its own (or by a kill).
func (sl *slot) reap(p *process) {
	cfg := &sl.sup.cfg
	status, code := p.runner.exitStatus()
	sl.lastExit = code
	uptime := time.Since(p.started)
	sl.mu.Lock()
	sl.cur = nil
	cause := sl.cause
	sl.cause = ""
	sl.mu.Unlock()
	if cause == "" {
		cause = "crash"
	}
	// The worker can no longer write its half: take its in-flight count off
	// so the region shows no ghosts.
	sl.shm.Half(p.half).InFlight().Store(0)
	sl.lastHalf = p.half
	sl.setIdentity(shm.StateDead, p, time.Time{})
	// WorkerGone before Kill: the engine can still read the results the
	// worker sent before it died.
	cfg.Hooks.WorkerGone(p.worker)
	p.client.Kill()
	cfg.Logger.Info("worker exited", "slot", sl.index, "pid", p.worker.PID, "gen", p.worker.Generation,
		"status", status, "uptime", uptime.Round(time.Millisecond), "graceful", false, "cause", cause)
	sl.sup.event(sl.index, "exited", fmt.Sprintf("pid %d %s after %v (%s)", p.worker.PID, status, uptime.Round(time.Millisecond), cause))
	sl.sup.countRestart(cause)
	if uptime >= cfg.Backoff.MinUptime {
		sl.quick = 0
	}
	sl.quick++
}

// spawn forks a fresh worker into half `second` of the slot and waits
// until it is ready. replacing is the live process it will replace (nil
// when the slot is empty); that one's identity stays until the new one is
// ready.
func (sl *slot) spawn(ctx context.Context, second bool, replacing *process) (*process, error) {
	cfg := &sl.sup.cfg
	half := 0
	if second {
		half = 1
	}
	sl.gen++
	sl.shm.Half(half).Reset()
	started := time.Now()
	p := &process{half: half, started: started, worker: &Worker{Slot: sl.index, Generation: sl.gen}}
	if replacing == nil {
		sl.setIdentity(shm.StateStarting, p, time.Time{})
	}
	env := []string{
		wire.EnvSlot + "=" + strconv.Itoa(sl.index),
		wire.EnvGeneration + "=" + strconv.FormatUint(sl.gen, 10),
		wire.EnvHalf + "=" + strconv.Itoa(half),
		wire.EnvShm + "=" + cfg.Region.Path(),
		wire.EnvLifeline + "=3",
	}
	if cfg.Capacity > 0 {
		env = append(env, wire.EnvCapacity+"="+strconv.Itoa(cfg.Capacity))
	}
	env = append(env, cfg.Env...)
	var pr *procRunner
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          wire.Plugins(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Managed:          false,
		Logger:           sl.sup.hclogger(sl.index),
		StartTimeout:     cfg.StartTimeout,
		UnixSocketConfig: &plugin.UnixSocketConfig{TempDir: cfg.RunDir},
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20))},
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			var err error
			pr, err = newProcRunner(sl.sup.fork, cfg.WorkerBin, cfg.Args, append(cmd.Env, env...))
			return pr, err
		},
	})
	// fail stops what was started and says why in terms a user can act on:
	// a process that exited by itself during the handshake crashed (or
	// refused to run); one we had to kill did not speak our protocol.
	fail := func(err error, handshake bool) (*process, error) {
		client.Kill()
		if pr != nil && pr.pid != 0 {
			<-pr.exited
			status, code := pr.exitStatus()
			sl.lastExit = code
			switch {
			case code == wire.ExitBadRegion:
				err = fmt.Errorf("worker refused the shared region (%s): %w", status, err)
			case code == -int64(syscall.SIGKILL) && handshake:
				err = fmt.Errorf("%w: no go-plugin handshake (is %s an Atomic Flow worker?): %w", ErrBadWorkerBinary, cfg.WorkerBin, err)
			default:
				err = fmt.Errorf("worker exited during start (%s): %w", status, err)
			}
		} else if handshake {
			err = fmt.Errorf("%w: %w", ErrBadWorkerBinary, err)
		}
		return nil, fmt.Errorf("slot %d: start %s: %w", sl.index, cfg.WorkerBin, err)
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(err, true)
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		return fail(fmt.Errorf("%w: dispense: %w", ErrBadWorkerBinary, err), false)
	}
	wc, ok := raw.(pb.WorkerClient)
	if !ok {
		return fail(fmt.Errorf("%w: unexpected plugin type %T", ErrBadWorkerBinary, raw), false)
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	hello, err := wc.Hello(hctx, &pb.HelloRequest{Slot: int32(sl.index), Generation: sl.gen})
	cancel()
	if err != nil {
		return fail(fmt.Errorf("hello: %w", err), false)
	}
	p.runner, p.client = pr, client
	p.worker = &Worker{
		Slot: sl.index, Generation: sl.gen, PID: pr.pid, Capacity: int(hello.Capacity),
		Kinds: hello.Kinds, Client: wc,
	}
	if cfg.MaxTasks > 0 {
		// Jitter, like Swoole's max_request_grace, so workers started
		// together do not recycle together.
		p.taskLimit = int64(cfg.MaxTasks) + rand.Int64N(int64(cfg.MaxTasks)/10+1)
	}
	sl.mu.Lock()
	sl.cur = p
	if replacing != nil {
		sl.old = replacing // now retiring: still killable
	}
	sl.mu.Unlock()
	if replacing == nil {
		sl.setIdentity(shm.StateReady, p, time.Time{})
	}
	readyIn := time.Since(started).Round(time.Microsecond)
	cfg.Logger.Info("worker started", "slot", sl.index, "pid", pr.pid, "gen", sl.gen, "capacity", p.worker.Capacity, "ready_in", readyIn)
	sl.sup.event(sl.index, "started", fmt.Sprintf("pid %d generation %d ready in %v", pr.pid, sl.gen, readyIn))
	cfg.Hooks.WorkerReady(p.worker)
	return p, nil
}

func (p *procRunner) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}
