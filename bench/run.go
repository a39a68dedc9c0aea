package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// benchEnv is what every scenario gets.
type benchEnv struct {
	BinDir     string // bin/master and bin/worker
	Root       string // the module root (for the profiling build)
	ResultsDir string
	Date       string
	Log        io.Writer
	// done holds the outcomes of the scenarios already run in this
	// invocation, by name (baseline compares with throughput).
	done map[string]*outcome
	// profile: capture a CPU profile when a throughput figure is far off.
	profile bool
	keep    bool
	// The profiling copies of master and worker, once built.
	profDir, profMaster, profWorker string
}

func (e *benchEnv) logf(format string, args ...any) {
	fmt.Fprintf(e.Log, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// scenario is one named benchmark.
type scenario struct {
	name  string
	about string
	run   func(ctx context.Context, env *benchEnv, o *outcome) error
	// bound is how long the scenario may take before its context ends.
	bound time.Duration
}

func scenarios() []scenario {
	return []scenario{
		{"throughput", "echo tasks/s, memory store, HTTP batch submit (and gRPC SubmitStream)", runThroughput, 150 * time.Second},
		{"durable", "echo tasks/s with the bolt store, and the ratio to memory", runDurable, 120 * time.Second},
		{"concurrency", "1,000,000 sleep tasks in flight: RSS and CPU", runConcurrency, 180 * time.Second},
		{"idle", "master + 4 workers idle: RSS and CPU over 30 s", runIdle, 60 * time.Second},
		{"restart", "kill -9 → replacement ready; kill → tasks running elsewhere", runRestart, 90 * time.Second},
		{"chaos", "echo throughput over time while workers are killed", runChaos, 60 * time.Second},
		{"shm", "shared-counter increment from 2 processes vs gRPC unary round trip", runSHM, 60 * time.Second},
		{"fanout", "1,000 and 100 dashboard WebSocket clients", runFanout, 90 * time.Second},
		{"baseline", "the same echo work in-process, no IPC", runBaseline, 60 * time.Second},
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	which := fs.String("scenario", "", "run only this scenario (or a comma-separated list): "+strings.Join(names, ", "))
	bin := fs.String("bin", "bin", "directory of the built master and worker")
	out := fs.String("out", "bench/results", "directory of the report")
	root := fs.String("root", ".", "the module root (for the profiling build)")
	profile := fs.Bool("profile", true, "capture CPU and memory profiles when throughput or memory is far off its aim")
	readme := fs.String("readme", "README.md", "after a full run, rewrite this file's performance table (empty: leave it)")
	keep := fs.Bool("keep", false, "keep each master's log in its temporary directory (printed at its stop)")
	readmeFrom := fs.String("readme-from", "", "rewrite the README's table from this report's .json and run nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *readmeFrom != "" {
		if err := readmeFromJSON(*readmeFrom, *readme); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
		return 0
	}
	chosen := scenarios()
	if *which != "" {
		chosen = nil
		for _, w := range strings.Split(*which, ",") {
			found := false
			for _, s := range scenarios() {
				if s.name == strings.TrimSpace(w) {
					chosen, found = append(chosen, s), true
				}
			}
			if !found {
				fmt.Fprintf(stderr, "bench: unknown scenario %q (have %s)\n", w, strings.Join(names, ", "))
				return 2
			}
		}
	}
	binDir, _ := filepath.Abs(*bin)
	rootDir, _ := filepath.Abs(*root)
	for _, b := range []string{"master", "worker"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			fmt.Fprintf(stderr, "bench: %v (run `make build` first)\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	env := &benchEnv{
		BinDir: binDir, Root: rootDir, ResultsDir: *out, Date: start.Format("2006-01-02"),
		Log: stderr, done: map[string]*outcome{}, profile: *profile, keep: *keep,
	}
	rep := &report{Date: env.Date, Started: start, Machine: describeMachine(), Command: "make bench"}
	base := env.Date
	if *which != "" {
		rep.Command = "make bench SCENARIO=" + *which
		base = env.Date + "-" + strings.ReplaceAll(*which, ",", "+")
	}
	for _, s := range chosen {
		if ctx.Err() != nil {
			break
		}
		o := &outcome{Name: s.name, Started: time.Now(), LoadAvg: loadAvg()}
		env.logf("scenario %s: %s (load average %s)", s.name, s.about, o.LoadAvg)
		sctx, cancel := context.WithTimeout(ctx, s.bound)
		err := runGuarded(sctx, env, s, o)
		cancel()
		if err != nil {
			o.Error = err.Error()
			env.logf("scenario %s failed: %v", s.name, err)
		}
		o.Seconds = time.Since(o.Started).Seconds()
		for _, f := range o.Figures {
			env.logf("  %s: %s   [aim %s]", f.Name, resultText(f), aimText(f))
		}
		env.done[s.name] = o
		rep.Outcomes = append(rep.Outcomes, *o)
	}
	if env.profDir != "" {
		_ = os.RemoveAll(env.profDir)
	}
	rep.Seconds = time.Since(start).Seconds()
	md, js, err := rep.write(env.ResultsDir, base)
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	if *which == "" && *readme != "" && ctx.Err() == nil {
		if err := rep.updateReadme(*readme, md); err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return 1
		}
	}
	fmt.Fprint(stdout, rep.table())
	fmt.Fprintf(stdout, "\nreport: %s, %s (%.0f s)\n", md, js, rep.Seconds)
	if ctx.Err() != nil {
		return 1
	}
	return 0
}

func aimText(f figure) string {
	if f.Aim == nil {
		return "none"
	}
	return f.Aim.Text
}

// runGuarded runs one scenario and turns a panic into its error, so that
// one broken scenario still leaves a report of the others.
func runGuarded(ctx context.Context, env *benchEnv, s scenario, o *outcome) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return s.run(ctx, env, o)
}
