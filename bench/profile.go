package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// masterHasPprof reports whether bin/master has --pprof-listen (the
// master's own opt-in net/http/pprof listener).
func masterHasPprof(ctx context.Context, env *benchEnv) bool {
	out, _ := exec.CommandContext(ctx, filepath.Join(env.BinDir, "master"), "--help").CombinedOutput()
	return strings.Contains(string(out), "--pprof-listen")
}

var pprofLine = regexp.MustCompile(`msg="pprof listening" addr=([0-9.:]+)`)

// profileEcho reruns the 500,000-task memory load and returns the top of
// the CPU profiles of the master and the workers. The master is the real
// bin/master profiled through its own --pprof-listen (5 s from the first
// submit) when it has that flag, else the profiling copy; the workers are
// always the profiling copy (from their start through the run).
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
	opt := masterOptions{MasterBin: mbin, WorkerBin: wbin, Env: []string{"ATOMICFLOW_BENCH_CPUPROFILE=" + prefix}}
	ownPprof := masterHasPprof(ctx, env)
	if ownPprof {
		opt.MasterBin = filepath.Join(env.BinDir, "master")
		opt.Extra = []string{"--pprof-listen", "127.0.0.1:0"}
	}
	m, err := echoMaster(ctx, env, "memory", opt)
	if err != nil {
		return nil, echoRun{}, err
	}
	defer m.Stop()
	pprofAddr := ""
	if ownPprof {
		if mm := pprofLine.FindStringSubmatch(m.logTail(1 << 20)); mm != nil {
			pprofAddr = mm[1]
		} else {
			return nil, echoRun{}, fmt.Errorf("the master logged no pprof address")
		}
	}
	if err := warmUp(ctx, m, body); err != nil {
		return nil, echoRun{}, err
	}
	// Shorter than the run (about 2.5 s at 200,000 tasks/s), or the fetch is
	// cut off when the run ends.
	const masterSeconds = 2
	masterProf := filepath.Join(dir, "master.pprof")
	fetched := make(chan error, 1)
	submit := httpSubmit(m, body, submitters)
	start := time.Now()
	r, err := measureEcho(ctx, m, "HTTP batch (profiled)", "memory", 500_000, 30*time.Second,
		func(ctx context.Context, batches int) (loadResult, error) {
			if pprofAddr != "" {
				go func() { fetched <- fetchProfile(ctx, pprofAddr, masterSeconds, masterProf) }()
			}
			return submit(ctx, batches)
		})
	if err != nil {
		return nil, r, err
	}
	run := time.Since(start)
	pids := map[string][]int{"workers": m.WorkerPIDs()}
	if !ownPprof {
		pids["master"] = []int{m.PID}
	}
	for _, ps := range pids {
		for _, p := range ps {
			_ = syscall.Kill(p, syscall.SIGUSR1)
		}
	}
	var tops []profileTop
	for _, kind := range []string{"master", "workers"} {
		bin, window := mbin, fmt.Sprintf("profiling copy, from process start through a 500,000-task run of %.1f s", run.Seconds())
		if kind == "workers" {
			bin = wbin
		}
		var files []string
		if kind == "master" && ownPprof {
			if err := <-fetched; err != nil {
				return nil, r, err
			}
			bin, files = opt.MasterBin, []string{masterProf}
			window = fmt.Sprintf("bin/master's own --pprof-listen, the first %d s of a 500,000-task run of %.1f s", masterSeconds, run.Seconds())
		} else {
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

// fetchProfile saves a CPU profile of seconds from the pprof listener at
// addr (loopback) to path.
func fetchProfile(ctx context.Context, addr string, seconds int, path string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(seconds+30) * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %w", url, resp.StatusCode, errHTTP)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return os.WriteFile(path, b, 0o600)
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
