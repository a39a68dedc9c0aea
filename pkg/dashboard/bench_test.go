package dashboard_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// BenchmarkFrameEncode samples a busy 8-worker region and encodes the frame,
// as the hub does once per tick, with and without events and progress; it
// reports the frame's size.
func BenchmarkFrameEncode(b *testing.B) {
	r := newRegion(b, 8)
	now := time.Now()
	for i := range 8 {
		r.Slot(i).SetIdentity(shm.Identity{PID: 40000 + i, Generation: 3, State: shm.StateReady, Restarts: 2, Started: now.Add(-time.Hour)})
		worker(r, i).SetCapacity(10000)
		worker(r, i).InFlight().Store(1234)
		worker(r, i).Completed().Store(12345678)
		worker(r, i).Failed().Store(1234)
		worker(r, i).Beat(shm.Heartbeat{At: now, RSSBytes: 123 << 20, CPUTime: time.Duration(i) * time.Minute})
	}
	for _, c := range shm.Counters() {
		r.Counter(c).Store(98765432)
	}
	full := dashboard.NewEventLog(0)
	kinds := []string{"started", "ready", "exited", "restarting", "backoff", "killed", "restart", "draining", "stopped"}
	for i := range dashboard.DefaultEventLogSize {
		slot := i % 8
		full.Add(slot, kinds[i%len(kinds)], fmt.Sprintf("worker %d %s pid=%d gen=%d", slot, kinds[i%len(kinds)], 40000+slot, 3))
	}
	progress := make([]dashboard.TaskProgress, dashboard.MaxProgress)
	for i := range progress {
		progress[i] = dashboard.TaskProgress{ID: fmt.Sprintf("01JQ7Z%020d", i), Kind: "resize", Slot: i % 8, Fraction: float64(i) / 20, Message: fmt.Sprintf("%d of 20 images", i)}
	}
	withKinds := dashboard.WithKinds(func() []string { return []string{"cpu", "echo", "fail", "sleep"} })
	for _, bc := range []struct {
		name string
		log  *dashboard.EventLog
		opts []dashboard.SamplerOption
		// add, when set, adds events before each sample
		add func(l *dashboard.EventLog, i int)
		// full encodes Frame.Full, as for a client's first frame
		full bool
	}{
		// The frame of every tick: the 50 events of the log are older than
		// EventWindow frames, so it carries none of them.
		{name: "events=50", log: full},
		// A client's first frame (or one that fell behind): all 50.
		{name: "events=50/full", log: full, full: true},
		// A crash loop: one new event every tick, so each frame carries
		// the EventWindow newest.
		{name: "events=1-per-tick", log: full, add: func(l *dashboard.EventLog, i int) {
			l.Add(i%8, "restarting", fmt.Sprintf("worker %d restarting pid=%d gen=%d", i%8, 40000+i%8, 3))
		}},
		{name: "events=0", log: dashboard.NewEventLog(0)},
		// Kinds and 20 tasks reporting progress, with no events.
		{name: "progress=20", log: dashboard.NewEventLog(0), opts: []dashboard.SamplerOption{withKinds,
			dashboard.WithProgress(func(int) []dashboard.TaskProgress { return progress })}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := dashboard.NewSampler(r, bc.log, bc.opts...)
			for i := range dashboard.EventWindow { // past the first frames, which carry every event
				if bc.add != nil {
					bc.add(bc.log, i)
				}
				s.Sample(now.Add(time.Duration(i-dashboard.EventWindow) * 100 * time.Millisecond))
			}
			var size int
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if bc.add != nil {
					bc.add(bc.log, i)
				}
				f := s.Sample(now.Add(time.Duration(i) * 100 * time.Millisecond))
				if bc.full {
					f = f.Full()
				}
				buf, err := json.Marshal(f)
				if err != nil {
					b.Fatal(err)
				}
				size = len(buf)
			}
			b.ReportMetric(float64(size), "bytes/frame")
		})
	}
}
