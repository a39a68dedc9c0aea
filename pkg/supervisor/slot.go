package supervisor

import (
	"context"
	"fmt"
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
	ctrlRestart ctrlKind = iota
	ctrlStop
)

// slot is the loop that keeps one worker slot filled.
type slot struct {
	sup   *Supervisor
	index int
	shm   *shm.Slot
	ctrl  chan ctrlKind

	// loop-owned
	gen      uint64
	restarts int64
	quick    int
	lastExit int64

	mu  sync.Mutex
	cur *process
}

type process struct {
	runner  *procRunner
	client  *plugin.Client
	worker  *Worker
	started time.Time
}

func newSlot(s *Supervisor, i int) *slot {
	return &slot{sup: s, index: i, shm: s.cfg.Region.Slot(i), ctrl: make(chan ctrlKind, 1)}
}

func (sl *slot) setIdentity(state shm.State, pid int, started, backoffUntil time.Time) {
	sl.shm.SetIdentity(shm.Identity{
		PID: pid, Generation: sl.gen, State: state, Restarts: sl.restarts,
		Started: started, BackoffUntil: backoffUntil, LastExit: sl.lastExit,
	})
}

func (sl *slot) requestStop() {
	// A pending restart is superseded by the stop.
	select {
	case <-sl.ctrl:
	default:
	}
	sl.ctrl <- ctrlStop
}

func (sl *slot) requestRestart() error {
	sl.mu.Lock()
	live := sl.cur != nil
	sl.mu.Unlock()
	if !live {
		return fmt.Errorf("slot %d: %w", sl.index, ErrNotRunning)
	}
	select {
	case sl.ctrl <- ctrlRestart:
		sl.sup.event(sl.index, "restart", "graceful restart requested")
		return nil
	default:
		return nil // one is already pending
	}
}

func (sl *slot) kill() error {
	sl.mu.Lock()
	p := sl.cur
	sl.mu.Unlock()
	if p == nil {
		return fmt.Errorf("slot %d: %w", sl.index, ErrNotRunning)
	}
	return p.runner.signal(syscall.SIGKILL)
}

// run keeps the slot filled until a stop request or ctx ends. The first
// start's outcome goes to first.
func (sl *slot) run(ctx context.Context, first chan<- error) {
	cfg := &sl.sup.cfg
	initial := true
	for {
		if !initial {
			delay := cfg.Backoff.delay(sl.quick)
			if delay > 0 {
				until := time.Now().Add(delay)
				sl.setIdentity(shm.StateBackoff, 0, time.Time{}, until)
				cfg.Logger.Warn("worker backoff", "slot", sl.index, "delay", delay.Round(time.Millisecond), "quick_deaths", sl.quick)
				sl.sup.event(sl.index, "backoff", fmt.Sprintf("died %d times in a row soon after start; next fork in %v", sl.quick, delay.Round(time.Millisecond)))
				select {
				case <-time.After(delay):
				case k := <-sl.ctrl:
					if k == ctrlStop {
						sl.setIdentity(shm.StateStopped, 0, time.Time{}, time.Time{})
						return
					}
				case <-ctx.Done():
					sl.setIdentity(shm.StateStopped, 0, time.Time{}, time.Time{})
					return
				}
			}
			sl.restarts++
			cfg.Region.Counter(shm.Restarts).Add(1)
			cfg.Logger.Info("worker restarting", "slot", sl.index, "in", delay.Round(time.Millisecond), "gen", sl.gen+1)
			sl.sup.event(sl.index, "restarting", fmt.Sprintf("forking generation %d", sl.gen+1))
		}
		sl.gen++
		p, err := sl.spawn(ctx)
		if err != nil {
			sl.setIdentity(shm.StateDead, 0, time.Time{}, time.Time{})
			if initial {
				first <- err
				return
			}
			cfg.Logger.Error("worker failed to start", "slot", sl.index, "gen", sl.gen, "error", err)
			sl.sup.event(sl.index, "exited", "failed to start: "+err.Error())
			sl.quick++
			if stop := sl.drainCtrl(ctx); stop {
				return
			}
			continue
		}
		if initial {
			first <- nil
			initial = false
		}
		stop := sl.supervise(ctx, p)
		if stop {
			sl.setIdentity(shm.StateStopped, 0, time.Time{}, time.Time{})
			return
		}
	}
}

// drainCtrl consumes a pending control request after a failed start;
// restart requests are moot then, stop ends the loop.
func (sl *slot) drainCtrl(ctx context.Context) bool {
	select {
	case k := <-sl.ctrl:
		return k == ctrlStop
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// supervise waits for the process to die or for a request, and cleans up.
// It reports whether the slot should stop.
func (sl *slot) supervise(ctx context.Context, p *process) (stop bool) {
	cfg := &sl.sup.cfg
	graceful := false
	watch := time.NewTicker(cfg.HeartbeatTimeout / 4)
	defer watch.Stop()
wait:
	for {
		select {
		case <-p.runner.exited:
			break wait
		case k := <-sl.ctrl:
			stop = k == ctrlStop
			graceful = true
			break wait
		case <-ctx.Done():
			stop = true
			break wait
		case now := <-watch.C:
			// A worker whose heartbeat stalls (stopped, deadlocked, stuck
			// in a syscall) is hung: kill it and let the slot re-fork.
			if hb := sl.shm.Heartbeat().At; !hb.IsZero() && now.Sub(hb) > cfg.HeartbeatTimeout {
				cfg.Logger.Warn("worker hung: heartbeat stale, killing it", "slot", sl.index, "pid", p.worker.PID,
					"heartbeat_age", now.Sub(hb).Round(time.Millisecond))
				sl.sup.event(sl.index, "killed", fmt.Sprintf("pid %d hung: no heartbeat for %v", p.worker.PID, now.Sub(hb).Round(time.Millisecond)))
				_ = p.runner.signal(syscall.SIGKILL)
			}
		}
	}
	if graceful {
		sl.setIdentity(shm.StateDraining, p.worker.PID, p.started, time.Time{})
		sl.sup.event(sl.index, "draining", fmt.Sprintf("pid %d draining", p.worker.PID))
		dctx, cancel := context.WithTimeout(ctx, cfg.StopTimeout)
		if err := cfg.Hooks.Drain(dctx, p.worker); err != nil {
			cfg.Logger.Warn("worker drain incomplete", "slot", sl.index, "pid", p.worker.PID, "error", err)
		}
		cancel()
	}
	// Kill closes the gRPC connection (the worker exits on it), waits up to
	// 2s, then SIGKILLs; it also removes the socket directory. After a crash
	// it only cleans up, and runs after WorkerGone so the engine can still
	// read the results the worker sent before it died.
	if graceful {
		p.client.Kill()
	}
	<-p.runner.exited
	status, code := p.runner.exitStatus()
	sl.lastExit = code
	uptime := time.Since(p.started)
	sl.mu.Lock()
	sl.cur = nil
	sl.mu.Unlock()
	state := shm.StateDead
	if graceful {
		state = shm.StateStopped
	}
	// The worker can no longer write its lines: take its in-flight count
	// off so the region does not show ghosts.
	sl.shm.InFlight().Store(0)
	sl.setIdentity(state, p.worker.PID, p.started, time.Time{})
	cfg.Hooks.WorkerGone(p.worker)
	if !graceful {
		p.client.Kill()
	}
	cfg.Logger.Info("worker exited", "slot", sl.index, "pid", p.worker.PID, "gen", p.worker.Generation,
		"status", status, "uptime", uptime.Round(time.Millisecond), "graceful", graceful)
	sl.sup.event(sl.index, "exited", fmt.Sprintf("pid %d %s after %v", p.worker.PID, status, uptime.Round(time.Millisecond)))
	if graceful || uptime >= cfg.Backoff.MinUptime {
		sl.quick = 0
	}
	if !graceful {
		sl.quick++
	}
	return stop || sl.sup.stopping.Load()
}

// spawn forks a fresh worker into the slot and waits until it is ready.
func (sl *slot) spawn(ctx context.Context) (*process, error) {
	cfg := &sl.sup.cfg
	sl.shm.ResetWorker()
	started := time.Now()
	sl.setIdentity(shm.StateStarting, 0, started, time.Time{})
	env := []string{
		wire.EnvSlot + "=" + strconv.Itoa(sl.index),
		wire.EnvGeneration + "=" + strconv.FormatUint(sl.gen, 10),
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
			if err != nil {
				return nil, err
			}
			sl.mu.Lock()
			sl.cur = &process{runner: pr, started: started, worker: &Worker{Slot: sl.index, Generation: sl.gen}}
			sl.mu.Unlock()
			return pr, nil
		},
	})
	// fail stops what was started and says why in terms a user can act on:
	// a process that exited by itself during the handshake crashed (or
	// refused to run); one we had to kill did not speak our protocol.
	fail := func(err error, handshake bool) (*process, error) {
		client.Kill()
		sl.mu.Lock()
		sl.cur = nil
		sl.mu.Unlock()
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
	w := &Worker{
		Slot: sl.index, Generation: sl.gen, PID: pr.pid, Capacity: int(hello.Capacity),
		Kinds: hello.Kinds, Client: wc,
	}
	p := &process{runner: pr, client: client, worker: w, started: started}
	sl.mu.Lock()
	sl.cur = p
	sl.mu.Unlock()
	sl.setIdentity(shm.StateReady, pr.pid, started, time.Time{})
	cfg.Logger.Info("worker started", "slot", sl.index, "pid", pr.pid, "gen", sl.gen,
		"capacity", w.Capacity, "ready_in", time.Since(started).Round(time.Microsecond))
	sl.sup.event(sl.index, "started", fmt.Sprintf("pid %d generation %d ready in %v", pr.pid, sl.gen, time.Since(started).Round(time.Microsecond)))
	cfg.Hooks.WorkerReady(w)
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
