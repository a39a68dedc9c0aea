package sdk

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Handler runs one task. Its output is the task's result (JSON is shown as
// JSON by the API); a non-nil error fails the attempt, and the master
// retries it with backoff until the task's attempts run out.
type Handler func(ctx context.Context, t *Task) ([]byte, error)

// Task is one attempt at a task, as a handler sees it.
type Task struct {
	ID      string
	Kind    string
	Payload []byte
	Key     string
	// Attempt counts from 1; a task redelivered after a crash has Attempt > 1.
	Attempt int
	// Deadline is zero when the task has no timeout.
	Deadline time.Time
	// Env is the worker process's shared state: the region and its tables
	// (see Table). Serve sets it; a test that calls a handler directly
	// sets it with NewEnv.
	Env *Env

	progress func(fraction float64, msg string)
}

// Progress reports how far the task is (fraction in [0,1]) with a short
// message; the master shows the latest one in the API and the dashboard.
func (t *Task) Progress(fraction float64, msg string) {
	if t.progress != nil {
		t.progress(fraction, msg)
	}
}

// Config describes a worker. The zero value of every field but Handlers is
// usable.
type Config struct {
	// Handlers maps task kinds to their handlers.
	Handlers map[string]Handler
	// Capacity is the most tasks this worker runs at once. The master's
	// --capacity (default 10,000, passed in the environment) is a limit for
	// every worker, so the worker uses the smaller of the two: set Capacity
	// to keep a worker below the master's figure (a handler that holds a
	// scarce resource), leave it 0 to take the master's. The figure in use
	// is what the worker announces to the master, which never has more than
	// that in flight on it, and what GET /api/v1/workers and the dashboard
	// show. Run without a master's figure, 0 means DefaultCapacity.
	Capacity int
	// OnStart runs once before the worker reports ready (Swoole's
	// onWorkerStart): the slot shows "starting" and gets no task until it
	// returns. Its ctx ends when the master stops waiting (its start
	// timeout, 10 s). An error makes the worker exit with code 6
	// (wire.ExitStartHook): at the master's start that stops the master (a
	// configuration problem); later the master logs the error, and the slot
	// backs off and forks again, like any crash at start.
	OnStart func(ctx context.Context) error
	// OnStop runs when the worker drains, after its last task finished, and
	// before the process exits (Swoole's onWorkerStop).
	OnStop func(ctx context.Context) error
	// HeartbeatInterval is how often the worker writes its heartbeat
	// (default 100ms).
	HeartbeatInterval time.Duration
	// DrainTimeout bounds how long a SIGTERM'd worker waits for its tasks
	// (default 30s).
	DrainTimeout time.Duration
}

// DefaultCapacity is the semaphore size when neither Config nor the master
// sets one.
const DefaultCapacity = 10000

// withDefaults fills the zero fields, but Capacity: serve decides it with
// the master's figure.
func (c *Config) withDefaults() Config {
	out := *c
	if out.HeartbeatInterval <= 0 {
		out.HeartbeatInterval = 100 * time.Millisecond
	}
	if out.DrainTimeout <= 0 {
		out.DrainTimeout = 30 * time.Second
	}
	if out.Handlers == nil {
		out.Handlers = map[string]Handler{}
	}
	return out
}

// Serve runs the worker until the master stops it, then exits the process.
// It never returns. Run directly (not by a master) it prints an
// explanation and exits non-zero.
func Serve(cfg Config) {
	// One goroutine and a few small objects per task: collect less often
	// (GOGC in the environment still wins).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	code, err := serve(context.Background(), cfg.withDefaults())
	if err != nil {
		// One JSON line: the master's go-plugin logger shows it at error level.
		hclog.New(&hclog.LoggerOptions{Name: "atomicflow-worker", Output: os.Stderr, JSONFormat: true}).
			Error(err.Error())
	}
	os.Exit(code)
}
