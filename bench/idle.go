package main

import (
	"context"
	"fmt"
	"time"
)

var (
	aimIdleRSS = atMost(60, "≤ 60 MB")
	aimIdleCPU = atMost(0.5, "≤ 0.5 %")
)

const idleWindow = 30 * time.Second

func runIdle(ctx context.Context, env *benchEnv, o *outcome) error {
	// The default store (bolt), as a user starts it.
	m, err := startMaster(ctx, env, masterOptions{Workers: 4, Store: "bolt"})
	if err != nil {
		return err
	}
	defer m.Stop()
	time.Sleep(3 * time.Second) // past start-up
	meter := meterMaster(m).Start()
	var maxTotal int64
	var sum float64
	n := 0
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.Now().Add(idleWindow)
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		_, _, t := rssOf(m)
		maxTotal = max(maxTotal, t)
		sum += float64(t)
		n++
	}
	uses, wall := meter.Stop()
	mr, wr, total := rssOf(m)
	cpu := sumPercent(uses, "master") + sumPercent(uses, "worker")
	o.add("RSS of master + 4 workers, idle (VmRSS; max over 30 one-second samples)", float64(maxTotal)/1e6, "MB", aimIdleRSS,
		fmt.Sprintf("at the end: master %.1f MB, workers %v MB, total %.1f MB", float64(mr)/1e6, mbs(wr), float64(total)/1e6))
	o.add("CPU of master + 4 workers, idle, over 30 s (% of one core)", cpu, "%", aimIdleCPU,
		fmt.Sprintf("master %.2f %%, workers %.2f %%", sumPercent(uses, "master"), sumPercent(uses, "worker")))
	o.note("bolt store (the default); %d RSS samples, mean total %.1f MB", n, sum/float64(max(n, 1))/1e6)
	o.note("%s", cpuSplit(uses, wall))
	o.note("/proc CPU times have a resolution of 10 ms per process: over 30 s that is ±0.03 %% each")
	o.detail("cpu", uses)
	return nil
}

func mbs(bs []int64) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = fmt.Sprintf("%.1f", float64(b)/1e6)
	}
	return out
}
