package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const (
	batchSize   = 10000 // the master's default --max-batch
	echoPayload = `{"n":1}`
	submitters  = 4 // concurrent HTTP submitters (or gRPC streams: 2)
)

// Aims of scenarios 1 and 2.
var (
	aimThroughput = atLeast(1_000_000, "≥ 1,000,000/s")
	aimDurable    = atLeast(250_000, "≥ 250,000/s")
)

// echoRun is one measured echo load.
type echoRun struct {
	Via       string        `json:"via"`
	Store     string        `json:"store"`
	Tasks     int           `json:"tasks"`
	Completed int64         `json:"completed"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	// Accepted is first submit → last batch accepted.
	Accepted time.Duration `json:"accepted_ns"`
	Rate     float64       `json:"tasks_per_s"`
	Bounded  bool          `json:"bounded"` // the time bound ended it before all completed
	Refused  int           `json:"refused_batches"`
	CPU      []cpuUse      `json:"cpu"`
	Wall     time.Duration `json:"wall_ns"`
	// BoltBytes is the size of the bolt file after the run.
	BoltBytes int64 `json:"bolt_bytes,omitempty"`
}

// summary is the run in one sentence for the notes.
func (r echoRun) summary() string {
	s := fmt.Sprintf("%s, %s store: %s of %s tasks completed in %.3f s → %s tasks/s; all batches accepted after %.3f s",
		r.Via, r.Store, group(float64(r.Completed)), group(float64(r.Tasks)), r.Elapsed.Seconds(), group(r.Rate), r.Accepted.Seconds())
	if r.Bounded {
		s += " (the time bound ended the run before every task completed)"
	}
	if r.Refused > 0 {
		s += fmt.Sprintf("; %d batch answers were 429/503 and sent again", r.Refused)
	}
	return s + ". " + cpuSplit(r.CPU, r.Wall) + "."
}

// submitFunc sends batches of batchSize tasks and returns when they are
// all accepted.
type submitFunc func(ctx context.Context, batches int) (loadResult, error)

// measureEcho runs total echo tasks through m with submit and measures from
// the first submit to stats.completed reaching the total (bounded).
func measureEcho(ctx context.Context, m *masterProc, via, store string, total int, bound time.Duration, submit submitFunc) (echoRun, error) {
	r := echoRun{Via: via, Store: store, Tasks: total}
	base := m.Counter(shm.Completed)
	meter := meterMaster(m).Start()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type done struct {
		lr  loadResult
		err error
	}
	loadDone := make(chan done, 1)
	started := time.Now()
	go func() {
		lr, err := submit(lctx, total/batchSize)
		if err != nil {
			cancel() // ends the wait below
		}
		loadDone <- done{lr, err}
	}()
	end, ok := m.waitCounter(lctx, shm.Completed, base+int64(total), bound)
	r.Completed = m.Counter(shm.Completed) - base
	r.CPU, r.Wall = meter.Stop()
	cancel()
	d := <-loadDone
	if d.err != nil && !errors.Is(d.err, context.Canceled) {
		return r, d.err
	}
	first := d.lr.First
	if first.IsZero() {
		first = started
	}
	r.Elapsed = end.Sub(first)
	if !d.lr.Last.IsZero() {
		r.Accepted = d.lr.Last.Sub(first)
	}
	r.Refused = d.lr.Refused
	r.Bounded = !ok
	if r.Elapsed > 0 {
		r.Rate = float64(r.Completed) / r.Elapsed.Seconds()
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	return r, nil
}

// httpSubmit submits the echo batch over HTTP with n submitters.
func httpSubmit(m *masterProc, body []byte, n int) submitFunc {
	l := newHTTPLoad(m.URL, body, n)
	return func(ctx context.Context, batches int) (loadResult, error) {
		return l.submit(ctx, batches, n)
	}
}

// echoMaster starts a master for echo loads.
func echoMaster(ctx context.Context, env *benchEnv, store string, opt masterOptions) (*masterProc, error) {
	opt.Store = store
	opt.Workers = 2
	opt.MaxQueue = 2_000_000
	return startMaster(ctx, env, opt)
}

// warmUp runs one batch through, so the first measured batch does not pay
// for connections, goroutines and the first heap growth.
func warmUp(ctx context.Context, m *masterProc, body []byte) error {
	_, err := measureEcho(ctx, m, "warm-up", "", batchSize, 20*time.Second, httpSubmit(m, body, 1))
	return err
}

// freshEcho starts a master, warms it up, runs one measured echo load
// with submit made for that master, and stops it: every figure comes from
// a master whose store holds only the warm-up.
func freshEcho(ctx context.Context, env *benchEnv, store, via string, total int, submit func(m *masterProc) (submitFunc, func(), error)) (echoRun, error) {
	body := batchBody("echo", echoPayload, batchSize)
	m, err := echoMaster(ctx, env, store, masterOptions{})
	if err != nil {
		return echoRun{}, err
	}
	defer m.Stop()
	if err := warmUp(ctx, m, body); err != nil {
		return echoRun{}, fmt.Errorf("warm-up: %w", err)
	}
	f, done, err := submit(m)
	if err != nil {
		return echoRun{}, err
	}
	defer done()
	r, err := measureEcho(ctx, m, via, store, total, 30*time.Second, f)
	if err != nil {
		return r, err
	}
	if store == "bolt" {
		if st, serr := os.Stat(m.DataDir + "/atomicflow.db"); serr == nil {
			r.BoltBytes = st.Size()
		}
	}
	return r, nil
}

// overHTTP submits the echo batch over HTTP with the standard submitters.
func overHTTP(m *masterProc) (submitFunc, func(), error) {
	return httpSubmit(m, batchBody("echo", echoPayload, batchSize), submitters), func() {}, nil
}

// errNoGRPC is a master that serves no gRPC socket.
var errNoGRPC = errors.New("the master serves no gRPC socket")

// overGRPC submits over SubmitStream on the master's socket, 2 streams.
func overGRPC(m *masterProc) (submitFunc, func(), error) {
	if _, err := os.Stat(m.GRPC); err != nil {
		return nil, nil, fmt.Errorf("%w at %s (--grpc-listen unix://<run-dir>/api.sock)", errNoGRPC, m.GRPC)
	}
	gl, err := newGRPCLoad(m.GRPC, "echo", echoPayload, batchSize)
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, batches int) (loadResult, error) { return gl.submit(ctx, batches, 2) },
		func() { gl.Close() }, nil
}

const (
	figHTTP500k = "echo tasks/s, 500,000 tasks, HTTP batch of 10,000 × 4 submitters, memory store"
	figGRPC500k = "echo tasks/s, 500,000 tasks, gRPC SubmitStream (2 streams), memory store"
)

func runThroughput(ctx context.Context, env *benchEnv, o *outcome) error {
	o.note("each run on a fresh master (2 workers, capacity 10,000 each, least-loaded, memory store) after a 10,000-task warm-up; each batch body (10,000 × {\"kind\":\"echo\",\"payload\":{\"n\":1}}) is encoded once and posted as is; time = first submit → stats.completed (read from the shared region every 1 ms) reaching the total")
	alone, err := freshEcho(ctx, env, "memory", "HTTP batch", 100_000, overHTTP)
	if err != nil {
		return fmt.Errorf("100,000 tasks: %w", err)
	}
	o.add("echo tasks/s, 100,000 tasks alone (HTTP batch, memory)", alone.Rate, "tasks/s", nil, "asked for by another issue")
	o.note("100,000 alone: %s", alone.summary())
	o.detail("http_100k", alone)

	big, err := freshEcho(ctx, env, "memory", "HTTP batch", 500_000, overHTTP)
	if err != nil {
		return fmt.Errorf("500,000 tasks: %w", err)
	}
	o.add(figHTTP500k, big.Rate, "tasks/s", aimThroughput, "")
	o.note("500,000: %s", big.summary())
	o.detail("http_500k", big)

	g, err := freshEcho(ctx, env, "memory", "gRPC SubmitStream", 500_000, overGRPC)
	switch {
	case errors.Is(err, errNoGRPC):
		o.missing(figGRPC500k, aimThroughput, "not available: "+err.Error())
	case err != nil:
		o.missing(figGRPC500k, aimThroughput, "failed: "+err.Error())
	default:
		o.add(figGRPC500k, g.Rate, "tasks/s", aimThroughput, "")
		o.note("gRPC: %s", g.summary())
		o.detail("grpc_500k", g)
	}

	if env.profile && big.Rate < aimThroughput.Value/2 {
		env.logf("throughput is %.0f%% of its aim: profiling master and workers", 100*big.Rate/aimThroughput.Value)
		body := batchBody("echo", echoPayload, batchSize)
		profs, run, err := profileEcho(ctx, env, body)
		if err != nil {
			o.note("CPU profile not captured: %v", err)
		} else {
			o.Profiles = profs
			o.note("profiled run: %s", run.summary())
		}
	}
	return nil
}

func runDurable(ctx context.Context, env *benchEnv, o *outcome) error {
	var runs [2]echoRun
	for i, store := range []string{"memory", "bolt"} {
		r, err := freshEcho(ctx, env, store, "HTTP batch", 500_000, overHTTP)
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
		runs[i] = r
		o.note("%s: %s", store, r.summary())
	}
	o.add("echo tasks/s, 500,000 tasks, HTTP batch, bolt store", runs[1].Rate, "tasks/s", aimDurable, "")
	o.add("bolt ÷ memory throughput, same run", runs[1].Rate/runs[0].Rate, "ratio", nil,
		fmt.Sprintf("memory %s tasks/s in this scenario", group(runs[0].Rate)))
	if runs[1].BoltBytes > 0 {
		o.note("bolt file after the run: %.1f MiB", float64(runs[1].BoltBytes)/(1<<20))
	}
	o.note("each on a fresh master after a 10,000-task warm-up, as in throughput")
	o.detail("memory", runs[0])
	o.detail("bolt", runs[1])
	return nil
}
