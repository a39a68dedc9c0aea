package dashboard_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// BenchmarkFrameEncode samples a busy 8-worker region with a full event log
// and encodes the frame, as the hub does once per tick; it reports the
// frame's size.
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
	for _, bc := range []struct {
		name string
		log  *dashboard.EventLog
	}{
		{"events=50", full},
		{"events=0", dashboard.NewEventLog(0)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := dashboard.NewSampler(r, bc.log)
			var size int
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				buf, err := json.Marshal(s.Sample(now.Add(time.Duration(i) * 100 * time.Millisecond)))
				if err != nil {
					b.Fatal(err)
				}
				size = len(buf)
			}
			b.ReportMetric(float64(size), "bytes/frame")
		})
	}
}
