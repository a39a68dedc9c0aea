package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/tasks"
)

// The test binary doubles as the worker.
const envTestWorker = "SUPERVISOR_TEST_WORKER"

func TestMain(m *testing.M) {
	if os.Getenv(envTestWorker) == "1" {
		sdk.Serve(sdk.Config{Handlers: tasks.Handlers()})
	}
	os.Exit(m.Run())
}

// hooks records readiness and exits; Drain holds a worker until release is
// closed, ctx ends, or its process is gone.
type hooks struct {
	release     chan struct{}
	releaseOnce sync.Once

	mu     sync.Mutex
	log    []string
	events []string
	ready  chan *Worker
	gone   chan *Worker
}

func newHooks() *hooks {
	return &hooks{release: make(chan struct{}), ready: make(chan *Worker, 16), gone: make(chan *Worker, 16)}
}

func (h *hooks) releaseAll() { h.releaseOnce.Do(func() { close(h.release) }) }

func (h *hooks) record(s string) {
	h.mu.Lock()
	h.log = append(h.log, s)
	h.mu.Unlock()
}

func (h *hooks) WorkerReady(w *Worker) {
	h.record(fmt.Sprintf("ready %d", w.PID))
	h.ready <- w
}

func (h *hooks) Drain(ctx context.Context, w *Worker) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if !alive(w.PID) {
				return errors.New("process gone")
			}
		}
	}
}

func (h *hooks) WorkerGone(w *Worker) {
	h.record(fmt.Sprintf("gone %d", w.PID))
	h.gone <- w
}

func (h *hooks) SlotCount(int) {}

func (h *hooks) onEvent(slot int, kind, msg string) {
	h.mu.Lock()
	h.events = append(h.events, kind+": "+msg)
	h.mu.Unlock()
}

func (h *hooks) sawEvent(sub string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if strings.Contains(e, sub) {
			return true
		}
	}
	return false
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func start(t *testing.T, h *hooks, tweak func(*Config)) (*Supervisor, *shm.Region) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sv") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	r, err := shm.Create(filepath.Join(dir, "shm"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	cfg := Config{
		Workers: 1, WorkerBin: bin, Env: []string{envTestWorker + "=1"}, RunDir: dir, Region: r,
		Hooks: h, StopTimeout: 30 * time.Second, OnEvent: h.onEvent,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done := make(chan struct{})
		go func() {
			_ = s.Stop(ctx)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("Stop hung")
		}
	})
	return s, r
}

func recv(t *testing.T, ch <-chan *Worker, what string, d time.Duration) *Worker {
	t.Helper()
	select {
	case w := <-ch:
		return w
	case <-time.After(d):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// replaceOnce restarts slot 0 and returns its old and new worker; the old
// one is left draining.
func replaceOnce(t *testing.T, s *Supervisor, h *hooks) (old, cur *Worker) {
	t.Helper()
	old = recv(t, h.ready, "first worker", 10*time.Second)
	if err := s.Restart(0); err != nil {
		t.Fatal(err)
	}
	return old, recv(t, h.ready, "replacement", 10*time.Second)
}

// A second replacement must not spawn into the half where the first one's
// old process still drains.
func TestReplaceWaitsForRetiringWorker(t *testing.T) {
	h := newHooks()
	s, r := start(t, h, nil)
	a, b := replaceOnce(t, s, h)
	halfA := 1 - r.Slot(0).Identity().Half
	if err := s.Restart(0); err != nil {
		t.Fatal(err)
	}
	select {
	case w := <-h.ready:
		t.Fatalf("pid %d started while pid %d still drains in its half", w.PID, a.PID)
	case <-time.After(time.Second):
	}
	h.releaseAll()
	if w := recv(t, h.gone, "old worker gone", 10*time.Second); w != a {
		t.Fatalf("gone pid %d, want %d", w.PID, a.PID)
	}
	c := recv(t, h.ready, "second replacement", 10*time.Second)
	if w := recv(t, h.gone, "first replacement gone", 10*time.Second); w != b {
		t.Fatalf("gone pid %d, want %d", w.PID, b.PID)
	}
	if id := r.Slot(0).Identity(); id.PID != c.PID || id.Half != halfA {
		t.Fatalf("identity %+v, want pid %d in half %d", id, c.PID, halfA)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	want := []string{
		fmt.Sprintf("ready %d", a.PID), fmt.Sprintf("ready %d", b.PID), fmt.Sprintf("gone %d", a.PID),
		fmt.Sprintf("ready %d", c.PID), fmt.Sprintf("gone %d", b.PID),
	}
	if fmt.Sprint(h.log) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", h.log, want)
	}
}

func TestHungRetiringWorkerIsKilled(t *testing.T) {
	h := newHooks()
	s, _ := start(t, h, func(c *Config) { c.HeartbeatTimeout = 500 * time.Millisecond })
	a, _ := replaceOnce(t, s, h)
	// Frozen: its heartbeat stops while it drains.
	if err := syscall.Kill(a.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if w := recv(t, h.gone, "hung draining worker gone", 5*time.Second); w != a {
		t.Fatalf("gone pid %d, want %d", w.PID, a.PID)
	}
	if alive(a.PID) {
		t.Fatalf("pid %d still alive", a.PID)
	}
	if !h.sawEvent(fmt.Sprintf("draining pid %d hung", a.PID)) {
		t.Fatalf("no hung event: %v", h.events)
	}
}

func TestKillHungReachesRetiringWorker(t *testing.T) {
	h := newHooks()
	s, _ := start(t, h, nil)
	a, b := replaceOnce(t, s, h)
	s.KillHung(a, "test")
	if w := recv(t, h.gone, "killed draining worker gone", 5*time.Second); w != a {
		t.Fatalf("gone pid %d, want %d", w.PID, a.PID)
	}
	if p := s.Process(0); p != b {
		t.Fatalf("slot's worker %+v, want pid %d", p, b.PID)
	}
}

// Stop keeps to its ctx's deadline even though StopTimeout is longer and a
// retiring worker never finishes draining.
func TestStopKeepsToItsDeadline(t *testing.T) {
	h := newHooks()
	s, _ := start(t, h, nil)
	a, b := replaceOnce(t, s, h)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	begin := time.Now()
	err := s.Stop(ctx)
	took := time.Since(begin)
	if err != nil {
		t.Fatalf("stop: %v (after %v)", err, took)
	}
	// Drains end at the deadline less the reserve (1s here).
	if took < 800*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("stop took %v, want about 1s", took)
	}
	for _, w := range []*Worker{a, b} {
		if alive(w.PID) {
			t.Fatalf("pid %d outlived Stop", w.PID)
		}
	}
}

// A worker that cannot exit is killed by Stop's deadline.
func TestStopKillsAFrozenWorkerByItsDeadline(t *testing.T) {
	h := newHooks()
	s, _ := start(t, h, nil)
	w := recv(t, h.ready, "worker", 10*time.Second)
	if err := syscall.Kill(w.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), StopGrace)
	defer cancel()
	begin := time.Now()
	_ = s.Stop(ctx)
	if took := time.Since(begin); took > StopGrace+time.Second {
		t.Fatalf("stop took %v", took)
	}
	if alive(w.PID) {
		t.Fatalf("pid %d outlived Stop", w.PID)
	}
}

// Without a deadline, a frozen worker (its go-plugin shutdown RPC never
// answers) is still killed once its drain is over.
func TestStopWithoutDeadlineKillsAFrozenWorker(t *testing.T) {
	h := newHooks()
	s, _ := start(t, h, func(c *Config) { c.StopTimeout = time.Second })
	w := recv(t, h.ready, "worker", 10*time.Second)
	if err := syscall.Kill(w.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Stop(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hung on a frozen worker")
	}
	if alive(w.PID) {
		t.Fatalf("pid %d outlived Stop", w.PID)
	}
}
