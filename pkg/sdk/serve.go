package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/wire"
)

// env is what the master tells a worker through its environment.
type env struct {
	slot       int
	half       int
	generation uint64
	shmPath    string
	capacity   int
	lifeline   int
}

func readEnv(getenv func(string) string) (env, error) {
	var e env
	var err error
	if e.slot, err = strconv.Atoi(getenv(wire.EnvSlot)); err != nil || e.slot < 0 {
		return e, fmt.Errorf("bad or missing %s: %q", wire.EnvSlot, getenv(wire.EnvSlot))
	}
	if e.generation, err = strconv.ParseUint(getenv(wire.EnvGeneration), 10, 64); err != nil {
		return e, fmt.Errorf("bad or missing %s: %q", wire.EnvGeneration, getenv(wire.EnvGeneration))
	}
	if v := getenv(wire.EnvHalf); v != "" {
		if e.half, err = strconv.Atoi(v); err != nil || (e.half != 0 && e.half != 1) {
			return e, fmt.Errorf("bad %s: %q", wire.EnvHalf, v)
		}
	}
	if e.shmPath = getenv(wire.EnvShm); e.shmPath == "" {
		return e, fmt.Errorf("missing %s", wire.EnvShm)
	}
	if v := getenv(wire.EnvCapacity); v != "" {
		if e.capacity, err = strconv.Atoi(v); err != nil || e.capacity < 1 {
			return e, fmt.Errorf("bad %s: %q", wire.EnvCapacity, v)
		}
	}
	e.lifeline = -1
	if v := getenv(wire.EnvLifeline); v != "" {
		if e.lifeline, err = strconv.Atoi(v); err != nil || e.lifeline < 3 {
			return e, fmt.Errorf("bad %s: %q", wire.EnvLifeline, v)
		}
	}
	return e, nil
}

// effectiveCapacity is the worker's semaphore size: the smaller of its own
// Config.Capacity (when set) and the master's --capacity (when passed), so
// neither side can push a worker past what the other allows.
func effectiveCapacity(own, master int) int {
	switch {
	case own > 0 && master > 0:
		return min(own, master)
	case own > 0:
		return own
	case master > 0:
		return master
	}
	return DefaultCapacity
}

func serve(ctx context.Context, cfg Config) (int, error) {
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		return 1, errors.New("this program is an Atomic Flow worker: the master starts it " +
			"(run bin/master, or point its --worker-bin at this binary)")
	}
	e, err := readEnv(os.Getenv)
	if err != nil {
		return wire.ExitBadEnv, err
	}
	cfg.Capacity = effectiveCapacity(cfg.Capacity, e.capacity)
	region, err := shm.Open(e.shmPath, shm.OpenOptions{Slot: e.slot, MasterPID: os.Getppid()})
	if err != nil {
		return wire.ExitBadRegion, fmt.Errorf("refusing the shared region: %w", err)
	}
	defer region.Close()

	// go-plugin swaps os.Stderr for its stdio stream once Serve runs; keep
	// the real one: the master reads our JSON log lines from it.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       fmt.Sprintf("worker-%d", e.slot),
		Output:     os.Stderr,
		JSONFormat: true,
		Level:      hclog.Info,
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := newWorker(cfg, region, e.slot, e.half, logger)

	if e.lifeline >= 0 {
		go watchLifeline(os.NewFile(uintptr(e.lifeline), "lifeline"), logger)
	}
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(ctx)
	}()

	// SIGTERM sent to the worker itself (not through the master): drain,
	// run the stop hook, exit. Results of the tasks that finish still reach
	// the master over the session.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
			w.drain(ctx, cfg.DrainTimeout)
			w.closeSessions()
			os.Exit(0)
		case <-ctx.Done():
		}
	}()

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         wire.Plugins(w),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			// Task batches can be large; the master bounds each message.
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(256<<20))...)
		},
		Logger: logger,
	})
	// The master closed us. After a failed start hook (the master closes
	// at once when Hello fails) exit with its code, and no stop hook: the
	// worker never started. Else it is a graceful stop: stop hooks run here
	// too if no drain came first.
	if w.startFailed() {
		cancel()
		<-hbDone
		return wire.ExitStartHook, nil // Hello logged the hook's error
	}
	w.drain(ctx, cfg.DrainTimeout)
	cancel()
	<-hbDone
	return 0, nil
}

// startFailed reports whether the start hook ran and failed. It waits for a
// start hook that is still running.
func (w *worker) startFailed() bool {
	w.startOnce.Do(func() {}) // orders the read after Hello's Do
	return w.startErr != nil
}

// watchLifeline exits the process when the master's end of the pipe
// closes: the master is gone, and nothing will read our results.
func watchLifeline(f *os.File, logger hclog.Logger) {
	_, _ = io.Copy(io.Discard, f)
	logger.Warn("master is gone (lifeline closed); exiting")
	os.Exit(wire.ExitMasterGone)
}
