package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/atomicflow/atomicflow/pkg/api"
	"github.com/atomicflow/atomicflow/pkg/config"
	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/engine"
	"github.com/atomicflow/atomicflow/pkg/metrics"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	"github.com/atomicflow/atomicflow/pkg/supervisor"
	"github.com/atomicflow/atomicflow/web"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, config.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "master: %v\n", err)
		return exitUsage
	}
	logger := newLogger(cfg.LogFormat, stderr)
	// Signals are caught before anything starts: SIGTTIN/SIGTTOU would
	// otherwise stop the process, and SIGHUP end it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	ops := make(chan os.Signal, 4)
	signal.Notify(ops, syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(ops)
	m := &master{cfg: cfg, log: logger, stdout: stdout}
	if err := m.start(); err != nil {
		fmt.Fprintf(stderr, "master: %v\n", err)
		m.cleanup()
		return exitFailed
	}
	opsDone := make(chan struct{})
	defer close(opsDone)
	go m.operate(ops, opsDone)
	sig := <-sigs
	logger.Info("shutting down", "signal", sig.String(), "timeout", cfg.ShutdownTimeout)
	first := time.Now()
	ctx, hardStop := context.WithCancel(context.Background())
	go func() {
		for range sigs {
			// One keypress or `kill` can deliver the signal twice (to the
			// process group and from a wrapper): only a later one counts.
			if time.Since(first) > time.Second {
				logger.Warn("second signal: stopping now, unfinished tasks stay stored")
				hardStop()
				return
			}
		}
	}()
	return m.shutdown(ctx, first.Add(cfg.ShutdownTimeout))
}

// operate handles the operator's signals: SIGHUP reloads every worker,
// SIGTTIN adds one, SIGTTOU removes one (as Gunicorn does).
func (m *master) operate(sigs <-chan os.Signal, done <-chan struct{}) {
	for {
		var sig os.Signal
		select {
		case sig = <-sigs:
		case <-done:
			return
		}
		ctx := context.Background()
		var err error
		switch sig {
		case syscall.SIGHUP:
			m.log.Info("SIGHUP: rolling reload")
			err = m.sup.Reload(ctx)
		case syscall.SIGTTIN:
			err = m.sup.Scale(ctx, m.sup.Slots()+1)
		case syscall.SIGTTOU:
			if n := m.sup.Slots(); n > 1 {
				err = m.sup.Scale(ctx, n-1)
			}
		}
		if err != nil {
			m.log.Error("signal "+sig.String(), "error", err)
		}
	}
}

func newLogger(format string, w io.Writer) *slog.Logger {
	if format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// master holds the running parts; start builds them in dependency order
// and cleanup releases whatever was built, after a partial start too.
type master struct {
	cfg    *config.Config
	log    *slog.Logger
	stdout io.Writer

	lock     *os.File
	listener net.Listener
	store    store.Store
	metrics  *metrics.Metrics
	region   *shm.Region
	shmLink  string
	engine   *engine.Engine
	sup      *supervisor.Supervisor
	hub      *dashboard.Hub
	hubStop  context.CancelFunc
	hubDone  chan struct{}
	http     *http.Server
	httpDone chan struct{}
	grpcStop context.CancelFunc
	grpcDone chan error
	pprof    *http.Server
}

func (m *master) start() error {
	cfg := m.cfg
	if err := m.prepareRunDir(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	m.listener = ln

	st, err := store.Open(cfg.Store, cfg.DataDir, &store.Options{Retention: cfg.Retention})
	if err != nil {
		return fmt.Errorf("open %s store in %s: %w", cfg.Store, cfg.DataDir, err)
	}
	m.store = st

	if err := m.createRegion(); err != nil {
		return err
	}

	m.metrics = metrics.New(metrics.Sources{Region: m.region, RestartCauses: func() map[string]int64 {
		if m.sup == nil {
			return nil
		}
		return m.sup.RestartCauses()
	}})
	policy, err := engine.ParsePolicy(cfg.Dispatch)
	if err != nil {
		return err
	}
	eng, err := engine.New(engine.Config{
		Store: st, Region: m.region, Slots: m.region.Slots(), Workers: cfg.Workers, Policy: policy,
		MaxQueue: cfg.MaxQueue, MaxAttempts: cfg.MaxAttempts, Logger: m.log, Observer: m.metrics,
	})
	if err != nil {
		return err
	}
	m.engine = eng
	queued, dead, err := eng.Recover(context.Background())
	if err != nil {
		return err
	}
	if queued+dead > 0 {
		m.log.Info("recovered unfinished tasks from the store", "queued", queued, "dead", dead)
	}

	events := dashboard.NewEventLog(200)
	sampler := dashboard.NewSampler(m.region, events,
		dashboard.WithKinds(eng.Kinds),
		dashboard.WithProgress(func(n int) []dashboard.TaskProgress {
			ps := eng.ProgressSnapshot(n)
			out := make([]dashboard.TaskProgress, len(ps))
			for i, p := range ps {
				out[i] = dashboard.TaskProgress{ID: p.ID, Kind: p.Kind, Slot: p.Slot, Fraction: p.Fraction, Message: p.Message}
			}
			return out
		}))
	sup, err := supervisor.New(supervisor.Config{
		Workers: cfg.Workers, WorkerBin: cfg.WorkerBin, RunDir: cfg.RunDir, Region: m.region,
		Capacity: cfg.Capacity, Hooks: eng, StopTimeout: cfg.ShutdownTimeout, Logger: m.log,
		HeartbeatTimeout: cfg.HeartbeatTimeout, MaxTasks: cfg.MaxTasksPerWorker, MaxRSS: cfg.MaxWorkerRSS,
		LogJSON: cfg.LogFormat == config.LogJSON, OnEvent: events.Add,
	})
	if err != nil {
		return err
	}
	eng.SetKillHung(sup.KillHung, cfg.HeartbeatTimeout)
	if err := sup.Start(context.Background()); err != nil {
		return fmt.Errorf("workers did not start: %w", err)
	}
	m.sup = sup
	eng.Start()

	m.hub = dashboard.NewHub(dashboard.HubConfig{
		Sampler: sampler, Region: m.region, Interval: cfg.SampleInterval,
		OriginPatterns: cfg.AllowedOrigins, Logger: m.log,
	})
	hubCtx, hubStop := context.WithCancel(context.Background())
	m.hubStop, m.hubDone = hubStop, make(chan struct{})
	go func() {
		defer close(m.hubDone)
		_ = m.hub.Run(hubCtx)
	}()

	mux := http.NewServeMux()
	apiCfg := api.Config{
		Engine: eng, Control: sup, Region: m.region,
		Workers:  func() any { return sampler.Workers() },
		Ready:    func() bool { return eng.Stats().Workers > 0 },
		MaxBatch: cfg.MaxBatch, MaxBody: cfg.MaxBodyBytes, AuthToken: cfg.AuthToken, Logger: m.log,
	}
	api.New(apiCfg).Register(mux)
	if cfg.GRPCListen != "" {
		gln, err := api.ListenGRPC(cfg.GRPCListen)
		if err != nil {
			return fmt.Errorf("grpc listen on %s: %w", cfg.GRPCListen, err)
		}
		gctx, gstop := context.WithCancel(context.Background())
		m.grpcStop, m.grpcDone = gstop, make(chan error, 1)
		grpcSrv := api.NewGRPC(apiCfg)
		go func() { m.grpcDone <- grpcSrv.Serve(gctx, gln, 2*time.Second) }()
	}
	mux.Handle("GET /ws", m.hub)
	mux.Handle("GET /metrics", m.metrics.Handler())
	mux.Handle("/", http.FileServerFS(web.FS()))
	m.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.httpDone = make(chan struct{})
	go func() {
		defer close(m.httpDone)
		if err := m.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("http server", "error", err)
		}
	}()
	if cfg.PprofListen != "" {
		if err := m.servePprof(cfg.PprofListen); err != nil {
			return err
		}
	}
	storeDesc := cfg.Store + " store"
	if cfg.Store == config.StoreBolt {
		storeDesc += " at " + filepath.Join(cfg.DataDir, "atomicflow.db")
	}
	fmt.Fprintf(m.stdout, "atomicflow master listening on http://%s (%d workers, %s, pid %d)\n",
		ln.Addr(), cfg.Workers, storeDesc, os.Getpid())
	m.log.Info("master ready", "listen", ln.Addr().String(), "workers", cfg.Workers, "store", storeDesc,
		"shm", m.region.Path(), "run_dir", cfg.RunDir)
	return nil
}

// servePprof serves Go's profiles on a separate loopback listener (off by
// default), for `go tool pprof http://ADDR/debug/pprof/profile`.
func (m *master) servePprof(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.pprof.Serve(ln) }()
	m.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// prepareRunDir makes the private run directory and takes its lock, so two
// masters never share sockets or a region.
func (m *master) prepareRunDir() error {
	dir := m.cfg.RunDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("run directory %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("run directory %s: %w", dir, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("run directory %s belongs to uid %d, not to us", dir, sys.Uid)
	}
	if st.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("run directory %s: make it private: %w", dir, err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "master.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("run directory %s is not writable: %w", dir, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(lock.Name())
		lock.Close()
		return fmt.Errorf("run directory %s is in use by another master (pid %s)", dir, strings.TrimSpace(string(pid)))
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	m.lock = lock
	// What a master killed with -9 left behind: socket dirs, its region.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "plugin-dir") {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	link := filepath.Join(dir, "shm")
	if target, err := os.Readlink(link); err == nil {
		_ = os.Remove(target)
		_ = os.Remove(link)
	}
	return nil
}

// createRegion makes the shared region on tmpfs (falling back to the run
// directory) and links it from the run directory for flowctl top.
func (m *master) createRegion() error {
	base := "/dev/shm"
	if st, err := os.Stat(base); err != nil || !st.IsDir() {
		base = m.cfg.RunDir
	}
	path := filepath.Join(base, fmt.Sprintf("atomicflow-%d-%d", os.Getuid(), os.Getpid()))
	_ = os.Remove(path) // a stale region of a dead master with our pid: replaced, never reused
	// Room to scale up to 4× (at least 64 slots): a slot costs 640 bytes.
	slots := max(m.cfg.Workers, min(shm.MaxSlots, max(64, 4*m.cfg.Workers)))
	r, err := shm.CreateWithTables(path, slots, m.cfg.Tables)
	if err != nil {
		return fmt.Errorf("shared region: %w", err)
	}
	m.region = r
	link := filepath.Join(m.cfg.RunDir, "shm")
	if err := os.Symlink(path, link); err != nil {
		return fmt.Errorf("shared region link %s: %w", link, err)
	}
	m.shmLink = link
	return nil
}

// shutdown drains: readiness false and 503 for submits, no new dispatch,
// in-flight tasks finish (until deadline), workers run their stop hooks,
// what is unfinished stays in the store. The workers get what is left of
// the deadline, but at least supervisor.StopGrace.
func (m *master) shutdown(hard context.Context, deadline time.Time) int {
	ctx, cancel := context.WithDeadline(hard, deadline)
	defer cancel()
	finished, unfinished := m.engine.Shutdown(ctx)
	stopBy := deadline
	if least := time.Now().Add(supervisor.StopGrace); stopBy.Before(least) {
		stopBy = least
	}
	stopCtx, stopCancel := context.WithDeadline(hard, stopBy)
	defer stopCancel()
	if err := m.sup.Stop(stopCtx); err != nil {
		m.log.Warn("workers did not all stop in time", "error", err)
	}
	m.engine.Close()
	if err := m.engine.Flush(context.Background()); err != nil {
		m.log.Error("flush store", "error", err)
	}
	m.log.Info("stopped", "finished_during_drain", finished, "left_unfinished", unfinished)
	m.cleanup()
	return exitOK
}

func (m *master) cleanup() {
	if m.pprof != nil {
		_ = m.pprof.Close()
	}
	if m.grpcStop != nil {
		m.grpcStop()
		if err := <-m.grpcDone; err != nil {
			m.log.Error("grpc server", "error", err)
		}
	}
	if m.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = m.http.Shutdown(ctx)
		cancel()
		<-m.httpDone
	} else if m.listener != nil {
		m.listener.Close()
	}
	if m.hubStop != nil {
		m.hubStop()
		<-m.hubDone
	}
	if m.sup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.sup.Stop(ctx)
		cancel()
	}
	if m.store != nil {
		if err := m.store.Close(); err != nil {
			m.log.Error("close store", "error", err)
		}
	}
	if m.region != nil {
		if err := m.region.Close(); err != nil {
			m.log.Error("remove shared region", "error", err)
		}
	}
	if m.shmLink != "" {
		_ = os.Remove(m.shmLink)
	}
	if m.lock != nil {
		_ = os.Remove(m.lock.Name())
		m.lock.Close()
	}
	_ = os.Remove(m.cfg.RunDir) // only if empty
}
