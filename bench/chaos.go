package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const (
	chaosFor     = 20 * time.Second
	chaosEvery   = 2500 * time.Millisecond // kill alternately slot 0 and 1: each lives ≥ 5 s
	chaosSample  = 100 * time.Millisecond
	chaosBacklog = 100_000 // the load pauses while more than this waits in the queue
)

// sample is one reading of the completed counter.
type sample struct {
	At        float64 `json:"t_s"`
	Completed int64   `json:"completed"`
	Rate      float64 `json:"tasks_per_s"`
}

func runChaos(ctx context.Context, env *benchEnv, o *outcome) error {
	body := batchBody("echo", echoPayload, batchSize)
	m, err := echoMaster(ctx, env, "memory", masterOptions{})
	if err != nil {
		return err
	}
	defer m.Stop()
	if err := warmUp(ctx, m, body); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	base := m.Counter(shm.Completed)
	baseSub := m.Counter(shm.Submitted)
	lctx, cancel := context.WithTimeout(ctx, chaosFor)
	defer cancel()
	start := time.Now()

	// Steady load: submitters keep the queue fed but bounded.
	var wg sync.WaitGroup
	l := newHTTPLoad(m.URL, body, 2)
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lctx.Err() == nil {
				if m.Counter(shm.Queued) > chaosBacklog {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				if _, err := l.post(lctx); err != nil && lctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	// The killer.
	var kills []float64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; ; k++ {
			select {
			case <-lctx.Done():
				return
			case <-time.After(chaosEvery):
			}
			id := m.Region.Slot(k % 2).Identity()
			if id.State == shm.StateReady && id.PID > 0 {
				if syscall.Kill(id.PID, syscall.SIGKILL) == nil {
					kills = append(kills, time.Since(start).Seconds())
				}
			}
		}
	}()
	// The sampler, in this goroutine.
	var samples []sample
	tick := time.NewTicker(chaosSample)
	prev, prevAt := int64(0), start
	for lctx.Err() == nil {
		select {
		case <-lctx.Done():
		case now := <-tick.C:
			c := m.Counter(shm.Completed) - base
			samples = append(samples, sample{At: now.Sub(start).Seconds(), Completed: c,
				Rate: float64(c-prev) / now.Sub(prevAt).Seconds()})
			prev, prevAt = c, now
		}
	}
	tick.Stop()
	wg.Wait()
	elapsed := time.Since(start)
	done := m.Counter(shm.Completed) - base
	// Every accepted task must still finish (at-least-once): wait, bounded,
	// until nothing is queued or in flight. stats.completed is counted by
	// the workers per handler run, so a task run again after a kill that
	// had already finished on the killed worker counts twice there; the
	// master's own view is submitted − queued − in flight.
	submitted := m.Counter(shm.Submitted) - baseSub
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil &&
		(m.Counter(shm.Queued) > 0 || m.Counter(shm.InFlight) > 0) {
		time.Sleep(5 * time.Millisecond)
	}
	unfinished := m.Counter(shm.Queued) + m.Counter(shm.InFlight)
	final := m.Counter(shm.Completed) - base
	dead := m.Counter(shm.Dead)
	redelivered := m.Counter(shm.Redelivered)

	mean := float64(done) / elapsed.Seconds()
	// The slowest one-second window that contains a kill.
	worst := mean
	for _, k := range kills {
		if r, ok := windowRate(samples, k, k+1); ok && r < worst {
			worst = r
		}
	}
	o.add("echo tasks/s over 20 s with a worker killed every 2.5 s, mean", mean, "tasks/s", nil, fmt.Sprintf("%d kills", len(kills)))
	o.add("slowest 1 s after a kill", worst, "tasks/s", nil, "")
	o.add("accepted tasks lost (dead, or not finished 30 s after the load)", float64(unfinished+dead), "tasks", atMost(0, "0"),
		fmt.Sprintf("%s submitted, %s redelivered", group(float64(submitted)), group(float64(redelivered))))
	o.note("handler runs counted in stats.completed minus tasks submitted: %s (at-least-once: tasks that had finished on a killed worker whose result the master had not received, run again)",
		group(float64(final-submitted+dead)))
	o.note("2 workers, memory store, 2 HTTP submitters keeping at most ~%s tasks queued; completed counter sampled every %v from the shared region", group(chaosBacklog), chaosSample)
	png := filepath.Join(env.ResultsDir, env.Date+"-chaos.png")
	if err := plotChaos(png, samples, kills); err != nil {
		o.note("plot not written: %v", err)
	} else {
		o.Plot = filepath.Base(png)
		o.note("plot: %s (light blue: tasks/s per %v, dark blue: 1 s moving average; red: kill -9)", png, chaosSample)
	}
	o.detail("samples", samples)
	o.detail("kills_s", kills)
	return nil
}

// windowRate is the completion rate between times a and b (seconds).
func windowRate(s []sample, a, b float64) (float64, bool) {
	var first, last *sample
	for i := range s {
		if s[i].At >= a && first == nil {
			first = &s[i]
		}
		if s[i].At <= b {
			last = &s[i]
		}
	}
	if first == nil || last == nil || last.At <= first.At {
		return 0, false
	}
	return float64(last.Completed-first.Completed) / (last.At - first.At), true
}
