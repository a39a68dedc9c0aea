package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// profileSource is added to package main of cmd/master and cmd/worker in
// the profiling build only (go build -overlay), never to the sources.
// With ATOMICFLOW_BENCH_CPUPROFILE=PREFIX set, the process writes a CPU
// profile to PREFIX-<pid>.pprof from its start until SIGUSR1 (or two
// minutes), then creates PREFIX-<pid>.done. With
// ATOMICFLOW_BENCH_MEMSTATS=PREFIX set, each SIGUSR2 writes
// PREFIX-<pid>.mem.json (runtime.MemStats in brief) and a heap profile
// PREFIX-<pid>.heap.
const profileSource = `package main

import (
	"encoding/json"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"
)

func init() {
	if prefix := os.Getenv("ATOMICFLOW_BENCH_MEMSTATS"); prefix != "" {
		name := prefix + "-" + strconv.Itoa(os.Getpid())
		dump := make(chan os.Signal, 1)
		signal.Notify(dump, syscall.SIGUSR2)
		go func() {
			for range dump {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b, _ := json.Marshal(map[string]uint64{
					"heap_inuse": ms.HeapInuse, "stack_inuse": ms.StackInuse, "heap_alloc": ms.HeapAlloc,
					"heap_objects": ms.HeapObjects, "sys": ms.Sys, "goroutines": uint64(runtime.NumGoroutine()),
				})
				if f, err := os.Create(name + ".heap"); err == nil {
					_ = pprof.WriteHeapProfile(f)
					f.Close()
				}
				_ = os.WriteFile(name+".mem.json.tmp", b, 0o600)
				_ = os.Rename(name+".mem.json.tmp", name+".mem.json")
			}
		}()
	}
	prefix := os.Getenv("ATOMICFLOW_BENCH_CPUPROFILE")
	if prefix == "" {
		return
	}
	name := prefix + "-" + strconv.Itoa(os.Getpid())
	f, err := os.Create(name + ".pprof")
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	go func() {
		select {
		case <-stop:
		case <-time.After(2 * time.Minute):
		}
		pprof.StopCPUProfile()
		f.Close()
		_ = os.WriteFile(name+".done", nil, 0o600)
	}()
}
`

// profileTop is the top of one process kind's profile.
type profileTop struct {
	Process string `json:"process"`
	Window  string `json:"window"`
	Top     string `json:"top"`
}

// profilingBins returns the profiling copies of master and worker, built
// once per run into a directory run removes at the end.
func (e *benchEnv) profilingBins(ctx context.Context) (master, worker string, err error) {
	if e.profMaster != "" {
		return e.profMaster, e.profWorker, nil
	}
	dir, err := os.MkdirTemp("", "afbench-bin-")
	if err != nil {
		return "", "", err
	}
	e.profDir = dir
	e.logf("building profiling copies of master and worker (go build -overlay)")
	master, worker, err = buildProfiling(ctx, e, dir)
	if err != nil {
		return "", "", err
	}
	e.profMaster, e.profWorker = master, worker
	return master, worker, nil
}

// buildProfiling builds the profiling copies of master and worker in dir.
func buildProfiling(ctx context.Context, env *benchEnv, dir string) (master, worker string, err error) {
	src := filepath.Join(dir, "zz_benchprof.go")
	if err := os.WriteFile(src, []byte(profileSource), 0o644); err != nil {
		return "", "", err
	}
	overlay := map[string]map[string]string{"Replace": {
		filepath.Join(env.Root, "cmd", "master", "zz_benchprof.go"): src,
		filepath.Join(env.Root, "cmd", "worker", "zz_benchprof.go"): src,
	}}
	b, _ := json.Marshal(overlay)
	ov := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ov, b, 0o644); err != nil {
		return "", "", err
	}
	master, worker = filepath.Join(dir, "master"), filepath.Join(dir, "worker")
	for _, t := range [][2]string{{master, "./cmd/master"}, {worker, "./cmd/worker"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-overlay", ov, "-o", t[0], t[1])
		cmd.Dir = env.Root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("profiling build of %s: %v: %s", t[1], err, out)
		}
	}
	return master, worker, nil
}

// profileEcho reruns the 500,000-task memory load against profiling copies
// of the master and the workers and returns the top of their profiles.
func profileEcho(ctx context.Context, env *benchEnv, body []byte) ([]profileTop, echoRun, error) {
	dir, err := os.MkdirTemp("", "afbench-prof-")
	if err != nil {
		return nil, echoRun{}, err
	}
	defer os.RemoveAll(dir)
	mbin, wbin, err := env.profilingBins(ctx)
	if err != nil {
		return nil, echoRun{}, err
	}
	prefix := filepath.Join(dir, "cpu")
	m, err := echoMaster(ctx, env, "memory", masterOptions{
		MasterBin: mbin, WorkerBin: wbin, Env: []string{"ATOMICFLOW_BENCH_CPUPROFILE=" + prefix},
	})
	if err != nil {
		return nil, echoRun{}, err
	}
	defer m.Stop()
	if err := warmUp(ctx, m, body); err != nil {
		return nil, echoRun{}, err
	}
	start := time.Now()
	r, err := measureEcho(ctx, m, "HTTP batch (profiled)", "memory", 500_000, 30*time.Second, httpSubmit(m, body, submitters))
	if err != nil {
		return nil, r, err
	}
	window := fmt.Sprintf("from process start through a 500,000-task run of %.1f s", time.Since(start).Seconds())
	pids := map[string][]int{"master": {m.PID}, "workers": m.WorkerPIDs()}
	for _, ps := range pids {
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGUSR1)
		}
	}
	var tops []profileTop
	for _, kind := range []string{"master", "workers"} {
		bin := mbin
		if kind == "workers" {
			bin = wbin
		}
		var files []string
		for _, p := range pids[kind] {
			name := fmt.Sprintf("%s-%d", prefix, p)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := os.Stat(name + ".done"); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := os.Stat(name + ".done"); err != nil {
				return nil, r, fmt.Errorf("no profile from %s pid %d", kind, p)
			}
			files = append(files, name+".pprof")
		}
		for _, view := range []string{"-top", "-cum"} {
			args := []string{"tool", "pprof", "-top", "-nodecount=25"}
			label := kind + " (CPU, by own time)"
			if view == "-cum" {
				args = append(args, "-cum")
				label = kind + " (CPU, by cumulative time)"
			}
			args = append(append(args, bin), files...)
			out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
			if err != nil {
				return nil, r, fmt.Errorf("go tool pprof: %v: %s", err, out)
			}
			tops = append(tops, profileTop{Process: label, Window: window, Top: trimPprof(string(out))})
		}
	}
	return tops, r, nil
}

// trimPprof drops pprof's header lines before "Showing nodes" except the
// duration line.
func trimPprof(s string) string {
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// memStats is what the profiling build's SIGUSR2 handler writes.
type memStats struct {
	HeapInuse   int64 `json:"heap_inuse"`
	StackInuse  int64 `json:"stack_inuse"`
	HeapAlloc   int64 `json:"heap_alloc"`
	HeapObjects int64 `json:"heap_objects"`
	Sys         int64 `json:"sys"`
	Goroutines  int64 `json:"goroutines"`
}

// dumpMem signals pid (a profiling build) and reads its memory stats.
func dumpMem(prefix string, pid int) (memStats, error) {
	name := fmt.Sprintf("%s-%d.mem.json", prefix, pid)
	_ = os.Remove(name)
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		return memStats{}, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(name); err == nil {
			var ms memStats
			if err := json.Unmarshal(b, &ms); err != nil {
				return ms, fmt.Errorf("%s: %w", name, err)
			}
			return ms, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return memStats{}, fmt.Errorf("pid %d wrote no memory stats in 20 s", pid)
}
