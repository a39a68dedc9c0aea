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
	Queued    int64   `json:"queued"`
	// SlotInFlight is what each worker's slot says it runs.
	SlotInFlight [2]int64  `json:"slot_in_flight"`
	SlotState    [2]string `json:"slot_state"`
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
			sm := sample{At: now.Sub(start).Seconds(), Completed: c,
				Rate: float64(c-prev) / now.Sub(prevAt).Seconds(), Queued: m.Counter(shm.Queued)}
			for i := range sm.SlotInFlight {
				sl := m.Region.Slot(i)
				sm.SlotInFlight[i] = sl.Current().InFlight().Load()
				sm.SlotState[i] = sl.Identity().State.String()
			}
			samples = append(samples, sm)
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
	backlog := m.Counter(shm.Queued) + m.Counter(shm.InFlight)
	drainStart := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil &&
		(m.Counter(shm.Queued) > 0 || m.Counter(shm.InFlight) > 0) {
		time.Sleep(5 * time.Millisecond)
	}
	unfinished := m.Counter(shm.Queued) + m.Counter(shm.InFlight)
	drain := time.Since(drainStart)
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
	stall, at := longestStall(samples)
	o.add("longest stretch with no task completed (while the load ran)", stall*1000, "ms", nil,
		fmt.Sprintf("from t = %.1f s", at))
	for _, sm := range samples {
		if sm.At > at && sm.At <= at+stall {
			o.note("in that stretch, at t = %.1f s: %s queued; slot 0 %s with %s in flight, slot 1 %s with %s in flight (last kill before it at t = %.1f s)",
				sm.At, group(float64(sm.Queued)), sm.SlotState[0], group(float64(sm.SlotInFlight[0])),
				sm.SlotState[1], group(float64(sm.SlotInFlight[1])), lastBefore(kills, at+0.001))
			break
		}
	}
	o.note("when the load stopped %s tasks were queued or in flight; they took %.1f s to finish (%s tasks/s)",
		group(float64(backlog)), drain.Seconds(), group(float64(backlog)/drain.Seconds()))
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

// longestStall is the longest run of samples with no completion, and when
// it began (seconds).
func longestStall(s []sample) (length, from float64) {
	for i := 0; i < len(s); {
		if s[i].Rate > 0 {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j].Rate == 0 {
			j++
		}
		start := 0.0
		if i > 0 {
			start = s[i-1].At
		}
		if d := s[j-1].At - start; d > length {
			length, from = d, start
		}
		i = j
	}
	return length, from
}

// lastBefore is the last of ts at or before t, or -1.
func lastBefore(ts []float64, t float64) float64 {
	last := -1.0
	for _, x := range ts {
		if x <= t {
			last = x
		}
	}
	return last
}
