package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const (
	concurrencyTarget = 1_000_000
	sleepMs           = 30_000
	// memGuard stops submitting when master and workers together pass it
	// (the machine has 24 GiB; the harness keeps to well under it).
	memGuard = 12 << 30
	// submitWindowLeft is what must be left of the first task's sleep when
	// submitting stops: settling (≤ settleFor), the 5 s CPU window, a margin.
	submitWindowLeft = 15 * time.Second
	// settleFor bounds the wait for the workers to take what the master
	// has sent before the CPU window.
	settleFor = 8 * time.Second
)

var (
	aimBytesPerTask = atMost(4, "≤ 4 KiB")
)

// rssOf sums the RSS of the master and its ready workers.
func rssOf(m *masterProc) (master int64, workers []int64, total int64) {
	master, _ = rssBytes(m.PID)
	total = master
	for _, p := range m.WorkerPIDs() {
		w, _ := rssBytes(p)
		workers = append(workers, w)
		total += w
	}
	return master, workers, total
}

// workersInFlight adds the in-flight counters the workers write in their
// slots: tasks their handlers are running.
func workersInFlight(m *masterProc) int64 {
	n := int64(0)
	for i := 0; i < m.Workers; i++ {
		n += m.Region.Slot(i).Current().InFlight().Load()
	}
	return n
}

func runConcurrency(ctx context.Context, env *benchEnv, o *outcome) error {
	m, err := startMaster(ctx, env, masterOptions{
		Workers: 2, Capacity: concurrencyTarget / 2, Store: "memory", MaxQueue: 2 * concurrencyTarget,
		ShutdownTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer m.Stop()
	time.Sleep(2 * time.Second) // let the fresh processes settle
	idleMaster, idleWorkers, idleTotal := rssOf(m)
	o.note("idle before the load: master %.1f MiB, workers %v MiB, total %.1f MiB",
		mib(idleMaster), mibs(idleWorkers), mib(idleTotal))

	body := batchBody("sleep", fmt.Sprintf(`{"ms":%d}`, sleepMs), batchSize)
	l := newHTTPLoad(m.URL, body, submitters)
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loadDone := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := l.submit(lctx, concurrencyTarget/batchSize, submitters)
		loadDone <- err
	}()
	// Wait for the target in flight on the workers, the first sleeps to end
	// (the window is closing), the memory guard, or the scenario's bound.
	why := ""
	var reached time.Time
	peak := int64(0)
	for why == "" {
		select {
		case <-ctx.Done():
			why = "the scenario's time bound"
		case <-time.After(20 * time.Millisecond):
		}
		n := workersInFlight(m)
		peak = max(peak, n)
		switch {
		case n >= concurrencyTarget:
			why, reached = "reached", time.Now()
		case m.Counter(shm.Completed) > 0:
			why = "the first 30 s sleeps ended before the target was in flight"
		case time.Since(start) > sleepMs*time.Millisecond-submitWindowLeft:
			why = fmt.Sprintf("the submit window closed: %v after the first submit, only %v of the first tasks' 30 s sleep were left to settle and measure in",
				(sleepMs*time.Millisecond - submitWindowLeft).Round(time.Second), submitWindowLeft)
		case !m.Alive():
			why = "the master exited: " + m.logTail(500)
		}
		if _, _, t := rssOf(m); t > memGuard {
			why = fmt.Sprintf("master and workers passed the %d GiB memory guard", memGuard>>30)
		}
	}
	cancel()
	<-loadDone
	inflight := workersInFlight(m)
	if why == "reached" {
		o.note("1,000,000 sleep tasks in flight on the workers %.2f s after the first submit (%s tasks/s submitted and dispatched)",
			reached.Sub(start).Seconds(), group(float64(concurrencyTarget)/reached.Sub(start).Seconds()))
	} else {
		o.note("stopped submitting with %s in flight on the workers (peak %s): %s", group(float64(inflight)), group(float64(peak)), why)
	}
	// Let the workers take what the master already sent (bounded), so that
	// the CPU window sees them sleeping, not starting.
	settle := time.Now()
	for time.Since(settle) < settleFor && workersInFlight(m) < m.Counter(shm.InFlight) {
		time.Sleep(20 * time.Millisecond)
	}
	inflight = workersInFlight(m)
	masterInflight := m.Counter(shm.InFlight)
	o.note("after the load stopped: %s in flight on the workers, %s in the master's in_flight counter (settled in %.2f s)",
		group(float64(inflight)), group(float64(masterInflight)), time.Since(settle).Seconds())
	if inflight < masterInflight {
		o.note("the workers had not taken everything the master sent when the CPU window began: their CPU figures include starting %s more tasks", group(float64(masterInflight-inflight)))
	}
	// Measure while they sleep: RSS now, CPU over 5 s.
	meter := meterMaster(m).Start()
	sleepFor := 5 * time.Second
	if left := time.Until(start.Add(sleepMs * time.Millisecond)); left < sleepFor+time.Second {
		sleepFor = max(left-time.Second, time.Second)
	}
	select {
	case <-time.After(sleepFor):
	case <-ctx.Done():
	}
	uses, wall := meter.Stop()
	mr, wr, total := rssOf(m)
	completedInWindow := m.Counter(shm.Completed)
	o.add("sleep tasks in flight on the workers", float64(inflight), "tasks", atLeast(concurrencyTarget, "1,000,000"),
		fmt.Sprintf("master's in_flight counter %s", group(float64(masterInflight))))
	o.add("master RSS with them in flight", mib(mr), "MiB", nil, "")
	for i, w := range wr {
		o.add(fmt.Sprintf("worker %d RSS with them in flight", i), mib(w), "MiB", nil, "")
	}
	if inflight > 0 {
		per := float64(total-idleTotal) / float64(inflight) / 1024
		note := fmt.Sprintf("total %.0f MiB, idle %.0f MiB", mib(total), mib(idleTotal))
		if masterInflight > inflight {
			note += fmt.Sprintf("; ÷ the master's in_flight (%s) it is %.2f KiB", group(float64(masterInflight)),
				float64(total-idleTotal)/float64(masterInflight)/1024)
		}
		o.add("bytes per in-flight task, (total RSS − idle RSS) ÷ in flight on the workers", per, "KiB", aimBytesPerTask, note)
		perMaster := float64(mr-idleMaster) / float64(inflight)
		var idleW, nowW int64
		for _, w := range idleWorkers {
			idleW += w
		}
		for _, w := range wr {
			nowW += w
		}
		o.note("of which master %.0f B/task and workers %.0f B/task", perMaster, float64(nowW-idleW)/float64(inflight))
	}
	for _, u := range uses {
		if u.Name == "bench" || u.Name == "machine" {
			continue
		}
		note := fmt.Sprintf("over %.1f s", wall.Seconds())
		if strings.HasPrefix(u.Name, "worker") && masterInflight > inflight {
			note += fmt.Sprintf("; not only sleeping: the workers were still starting the last %s tasks sent", group(float64(masterInflight-inflight)))
		}
		o.add(fmt.Sprintf("%s CPU while the tasks sleep", u.Name), u.Percent, "%", nil, note)
	}
	if completedInWindow > 0 {
		o.note("%s tasks had already completed by the end of the CPU window: some sleeps ended in it", group(float64(completedInWindow)))
	}
	o.note("%s", cpuSplit(uses, wall))
	cv := m.Region.CounterValues()
	o.note("counters after the CPU window: submitted %d, dispatched %d, in_flight %d, queued %d, completed %d, failed %d, retried %d",
		cv["submitted"], cv["dispatched"], cv["in_flight"], cv["queued"], cv["completed"], cv["failed"], cv["retried"])
	o.detail("counters_end", cv)
	o.detail("rss_idle_total", idleTotal)
	if per, ok := o.find("bytes per in-flight task, (total RSS − idle RSS) ÷ in flight on the workers"); ok && per > aimBytesPerTask.Value && env.profile {
		m.Stop()
		if err := memoryDiagnosis(ctx, env, o); err != nil {
			o.note("memory split not captured: %v", err)
		}
	}
	o.detail("rss_total", total)
	o.detail("cpu", uses)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func mibs(bs []int64) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = fmt.Sprintf("%.1f", mib(b))
	}
	return out
}

// memoryDiagnosis reruns a smaller sleep load against the profiling copies
// and reads the Go runtime's own split of the memory (heap, goroutine
// stacks) per in-flight task, and the top of the workers' heap profiles.
func memoryDiagnosis(ctx context.Context, env *benchEnv, o *outcome) error {
	mbin, wbin, err := env.profilingBins(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "afbench-mem-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	prefix := filepath.Join(dir, "mem")
	m, err := startMaster(ctx, env, masterOptions{
		Workers: 2, Capacity: concurrencyTarget / 2, Store: "memory", MaxQueue: 2 * concurrencyTarget,
		ShutdownTimeout: time.Second, MasterBin: mbin, WorkerBin: wbin,
		Env: []string{"ATOMICFLOW_BENCH_MEMSTATS=" + prefix},
	})
	if err != nil {
		return err
	}
	defer m.Stop()
	pids := append([]int{m.PID}, m.WorkerPIDs()...)
	before := make([]memStats, len(pids))
	for i, p := range pids {
		if before[i], err = dumpMem(prefix, p); err != nil {
			return err
		}
	}
	const n = 200_000
	body := batchBody("sleep", fmt.Sprintf(`{"ms":%d}`, sleepMs), batchSize)
	lctx, cancel := context.WithTimeout(ctx, 12*time.Second)
	defer cancel()
	if _, err := newHTTPLoad(m.URL, body, submitters).submit(lctx, n/batchSize, submitters); err != nil {
		return fmt.Errorf("submit %d: %w", n, err)
	}
	deadline := time.Now().Add(6 * time.Second)
	for workersInFlight(m) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	inflight := workersInFlight(m)
	if inflight == 0 {
		return fmt.Errorf("no task in flight")
	}
	var parts []string
	var heaps []string
	for i, p := range pids {
		after, err := dumpMem(prefix, p)
		if err != nil {
			return err
		}
		// The master holds every task; a worker only its own.
		name, tasks := "master", inflight
		if i > 0 {
			name, tasks = fmt.Sprintf("worker %d", i-1), m.Region.Slot(i-1).Current().InFlight().Load()
		}
		if tasks == 0 {
			continue
		}
		b := before[i]
		parts = append(parts, fmt.Sprintf("%s (%s tasks): heap in use %+.0f B, goroutine stacks %+.0f B, goroutines %+.2f, heap objects %+.1f",
			name, group(float64(tasks)), perTask(after.HeapInuse-b.HeapInuse, tasks), perTask(after.StackInuse-b.StackInuse, tasks),
			float64(after.Goroutines-b.Goroutines)/float64(tasks), float64(after.HeapObjects-b.HeapObjects)/float64(tasks)))
		if i > 0 {
			heaps = append(heaps, fmt.Sprintf("%s-%d.heap", prefix, p))
		}
	}
	o.note("Go runtime's split per in-flight task, per process (profiling copies, %s sleep tasks in flight, read after a forced GC, so without the garbage that the RSS above includes): %s",
		group(float64(inflight)), strings.Join(parts, "; "))
	args := append([]string{"tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", wbin}, heaps...)
	if out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput(); err == nil {
		o.Profiles = append(o.Profiles, profileTop{Process: "workers' heap (in use)", Window: fmt.Sprintf("with %s sleep tasks in flight", group(float64(inflight))), Top: trimPprof(string(out))})
	} else {
		o.note("worker heap profile not read: %v: %s", err, out)
	}
	return nil
}

func perTask(d int64, n int64) float64 { return float64(d) / float64(n) }
