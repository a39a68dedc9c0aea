package dashboard_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

var base = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// at returns a time d after base.
func at(d time.Duration) time.Time { return base.Add(d) }

// step sets region values, then samples at base+t.
type step struct {
	t   time.Duration
	set func(r *shm.Region)
}

func counters(submitted, completed, failed int64) func(r *shm.Region) {
	return func(r *shm.Region) {
		r.Counter(shm.Submitted).Store(submitted)
		r.Counter(shm.Completed).Store(completed)
		r.Counter(shm.Failed).Store(failed)
	}
}

// worker0 puts a ready process in slot 0 with the given pid and heartbeat.
func worker0(pid int, state shm.State, hbAt time.Time, cpu time.Duration) func(r *shm.Region) {
	return func(r *shm.Region) {
		r.Slot(0).SetIdentity(shm.Identity{PID: pid, Generation: uint64(pid), State: state, Started: base})
		worker(r, 0).Beat(shm.Heartbeat{At: hbAt, CPUTime: cpu})
	}
}

func TestSamplerRatesAndCPU(t *testing.T) {
	tests := []struct {
		name      string
		steps     []step
		wantRates dashboard.Rates
		wantCPU   float64
	}{
		{
			name:  "first sample has zero rates",
			steps: []step{{0, counters(100, 50, 5)}},
		},
		{
			name:      "rates over half a second",
			steps:     []step{{0, counters(200, 100, 10)}, {500 * time.Millisecond, counters(700, 300, 15)}},
			wantRates: dashboard.Rates{CompletedPerS: 400, FailedPerS: 10, SubmittedPerS: 1000},
		},
		{
			name:      "rates over three seconds",
			steps:     []step{{0, counters(0, 0, 0)}, {3 * time.Second, counters(10, 1, 0)}},
			wantRates: dashboard.Rates{CompletedPerS: 0.33, FailedPerS: 0, SubmittedPerS: 3.33},
		},
		{
			name:      "rates use the previous sample, not the first",
			steps:     []step{{0, counters(0, 0, 0)}, {time.Second, counters(1000, 1000, 0)}, {2 * time.Second, counters(1100, 1010, 0)}},
			wantRates: dashboard.Rates{CompletedPerS: 10, SubmittedPerS: 100},
		},
		{
			name:      "a clock that did not move keeps the last rates",
			steps:     []step{{0, counters(0, 0, 0)}, {time.Second, counters(50, 20, 2)}, {time.Second, counters(90, 90, 9)}},
			wantRates: dashboard.Rates{CompletedPerS: 20, FailedPerS: 2, SubmittedPerS: 50},
		},
		{
			name:  "a counter that went backwards counts as zero",
			steps: []step{{0, counters(500, 500, 50)}, {time.Second, counters(10, 10, 1)}},
		},
		{
			name: "cpu from heartbeat deltas",
			steps: []step{
				{0, worker0(10, shm.StateReady, at(0), time.Second)},
				{time.Second, worker0(10, shm.StateReady, at(2*time.Second), 2500*time.Millisecond)},
			},
			wantCPU: 75,
		},
		{
			name: "cpu above one core",
			steps: []step{
				{0, worker0(10, shm.StateReady, at(0), 0)},
				{time.Second, worker0(10, shm.StateReady, at(time.Second), 1800*time.Millisecond)},
			},
			wantCPU: 180,
		},
		{
			name: "no new heartbeat keeps the last cpu",
			steps: []step{
				{0, worker0(10, shm.StateReady, at(0), 0)},
				{time.Second, worker0(10, shm.StateReady, at(time.Second), 250*time.Millisecond)},
				{2 * time.Second, worker0(10, shm.StateReady, at(time.Second), 250*time.Millisecond)},
			},
			wantCPU: 25,
		},
		{
			name: "unstamped heartbeats use the sample clock",
			steps: []step{
				{0, worker0(10, shm.StateReady, time.Time{}, 0)},
				{500 * time.Millisecond, worker0(10, shm.StateReady, time.Time{}, 100*time.Millisecond)},
			},
			wantCPU: 20,
		},
		{
			name: "a new process starts a new baseline",
			steps: []step{
				{0, worker0(10, shm.StateReady, at(0), 0)},
				{time.Second, worker0(11, shm.StateReady, at(time.Second), 900*time.Millisecond)},
			},
			wantCPU: 0,
		},
		{
			name: "a dead worker uses no cpu",
			steps: []step{
				{0, worker0(10, shm.StateReady, at(0), 0)},
				{time.Second, worker0(10, shm.StateDead, at(time.Second), 900*time.Millisecond)},
			},
			wantCPU: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegion(t, 2)
			r.Slot(0).SetIdentity(shm.Identity{PID: 1, State: shm.StateReady})
			s := dashboard.NewSampler(r, nil)
			var f *dashboard.Frame
			for _, st := range tt.steps {
				st.set(r)
				f = s.Sample(at(st.t))
			}
			if f.Rates != tt.wantRates {
				t.Errorf("rates = %+v, want %+v", f.Rates, tt.wantRates)
			}
			if len(f.Workers) != 1 {
				t.Fatalf("workers = %+v, want slot 0 only (slot 1 is empty)", f.Workers)
			}
			if got := f.Workers[0].CPUPercent; got != tt.wantCPU {
				t.Errorf("cpu_percent = %v, want %v", got, tt.wantCPU)
			}
			if got := s.Workers()[0].CPUPercent; got != tt.wantCPU {
				t.Errorf("Workers() cpu_percent = %v, want %v (from the last tick)", got, tt.wantCPU)
			}
			if f.Seq != uint64(len(tt.steps)) {
				t.Errorf("seq = %d after %d samples", f.Seq, len(tt.steps))
			}
		})
	}
}

func TestSamplerWorkerView(t *testing.T) {
	r := newRegion(t, 4)
	now := at(time.Minute)
	r.Slot(0).SetIdentity(shm.Identity{PID: 100, Generation: 3, State: shm.StateReady, Restarts: 2, Started: at(0), LastExit: 1})
	worker(r, 0).SetCapacity(64)
	worker(r, 0).InFlight().Store(7)
	worker(r, 0).Completed().Store(1000)
	worker(r, 0).Failed().Store(4)
	worker(r, 0).Beat(shm.Heartbeat{At: now.Add(-250 * time.Millisecond), RSSBytes: 32 << 20})
	r.Slot(2).SetIdentity(shm.Identity{PID: 0, Generation: 5, State: shm.StateBackoff, Started: at(0), BackoffUntil: now.Add(1500 * time.Millisecond), LastExit: -9})
	// slot 1 and 3 are empty and not shown
	r.Counter(shm.Queued).Store(42)
	r.Counter(shm.Dead).Store(3)

	log := dashboard.NewEventLog(100)
	for range dashboard.FrameEvents + 10 {
		log.Add(0, "ready", "worker 0 ready")
	}
	f := dashboard.NewSampler(r, log).Sample(now)

	want := []dashboard.Worker{
		{Slot: 0, PID: 100, Generation: 3, State: "ready", Capacity: 64, InFlight: 7, Completed: 1000, Failed: 4,
			Restarts: 2, RSSBytes: 32 << 20, UptimeMs: 60000, HeartbeatAgeMs: 250, LastExit: 1},
		{Slot: 2, Generation: 5, State: "backoff", LastExit: -9, BackoffMs: 1500},
	}
	if len(f.Workers) != len(want) {
		t.Fatalf("workers = %+v, want %+v", f.Workers, want)
	}
	for i := range want {
		if f.Workers[i] != want[i] {
			t.Errorf("worker %d = %+v\nwant       %+v", i, f.Workers[i], want[i])
		}
	}
	if f.QueueDepth != 42 {
		t.Errorf("queue_depth = %d, want 42", f.QueueDepth)
	}
	for _, c := range shm.Counters() {
		if _, ok := f.Counters[c.String()]; !ok {
			t.Errorf("counters lacks %q", c)
		}
	}
	if f.Counters["dead"] != 3 {
		t.Errorf("counters.dead = %d, want 3", f.Counters["dead"])
	}
	if len(f.Events) != dashboard.FrameEvents || f.Events[len(f.Events)-1].Seq != dashboard.FrameEvents+10 {
		t.Errorf("events: %d, newest %d; want the newest %d", len(f.Events), f.Events[len(f.Events)-1].Seq, dashboard.FrameEvents)
	}
	if f.TimeMs != now.UnixMilli() {
		t.Errorf("time_ms = %d, want %d", f.TimeMs, now.UnixMilli())
	}
}

// The JSON shape is a contract with the browser and GET /api/v1/workers.
func TestFrameJSONShape(t *testing.T) {
	r := newRegion(t, 1)
	r.Slot(0).SetIdentity(shm.Identity{PID: 1, State: shm.StateStarting})
	b, err := json.Marshal(dashboard.NewSampler(r, nil).Sample(base))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"seq", "time_ms", "counters", "rates", "queue_depth", "workers", "events"} {
		if _, ok := m[k]; !ok {
			t.Errorf("frame lacks %q: %s", k, b)
		}
	}
	if string(m["events"]) != "[]" {
		t.Errorf("events = %s, want [] when there is no log", m["events"])
	}
	var rates, worker map[string]any
	_ = json.Unmarshal(m["rates"], &rates)
	for _, k := range []string{"completed_per_s", "failed_per_s", "submitted_per_s"} {
		if _, ok := rates[k]; !ok {
			t.Errorf("rates lacks %q", k)
		}
	}
	var workers []map[string]any
	_ = json.Unmarshal(m["workers"], &workers)
	if len(workers) != 1 {
		t.Fatalf("workers = %s", m["workers"])
	}
	worker = workers[0]
	for _, k := range []string{"slot", "pid", "generation", "state", "capacity", "in_flight", "completed", "failed",
		"restarts", "rss_bytes", "cpu_percent", "uptime_ms", "heartbeat_age_ms", "last_exit", "backoff_ms"} {
		if _, ok := worker[k]; !ok {
			t.Errorf("worker lacks %q", k)
		}
	}
	if len(worker) != 15 {
		t.Errorf("worker has %d fields, want 15: %v", len(worker), worker)
	}
}

func TestSamplerConcurrentWorkers(t *testing.T) {
	r := newRegion(t, 8)
	for i := range 8 {
		r.Slot(i).SetIdentity(shm.Identity{PID: 100 + i, State: shm.StateReady})
	}
	s := dashboard.NewSampler(r, dashboard.NewEventLog(0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			s.Sample(at(time.Duration(i) * time.Millisecond))
		}
	}()
	for range 200 {
		if n := len(s.Workers()); n != 8 {
			t.Errorf("Workers() = %d, want 8", n)
		}
	}
	<-done
}

// An event rides in EventWindow consecutive frames, then drops out; Full
// always has the FrameEvents newest.
func TestSamplerEventWindow(t *testing.T) {
	r := newRegion(t, 1)
	log := dashboard.NewEventLog(0)
	s := dashboard.NewSampler(r, log)
	seqs := func(evs []dashboard.Event) []uint64 {
		out := []uint64{}
		for _, e := range evs {
			out = append(out, e.Seq)
		}
		return out
	}
	const old = dashboard.FrameEvents + 5
	for range old {
		log.Add(0, "ready", "before the first sample")
	}
	// The first EventWindow frames carry what the log held at the start.
	var frames []*dashboard.Frame
	for i := range dashboard.EventWindow {
		frames = append(frames, s.Sample(at(time.Duration(i)*100*time.Millisecond)))
	}
	for i, f := range frames {
		if got := seqs(f.Events); len(got) != dashboard.FrameEvents || got[0] != old-dashboard.FrameEvents+1 {
			t.Fatalf("frame %d: events %v, want the %d newest", i+1, got, dashboard.FrameEvents)
		}
	}
	// Then nothing new: empty, but Full still has the newest.
	f := s.Sample(at(3 * time.Second))
	if len(f.Events) != 0 {
		t.Fatalf("frame %d: events %v, want none", f.Seq, seqs(f.Events))
	}
	if full := f.Full(); len(full.Events) != dashboard.FrameEvents || full.Events[len(full.Events)-1].Seq != old || full.Seq != f.Seq {
		t.Fatalf("full frame %d: events %v", full.Seq, seqs(full.Events))
	}
	if len(f.Events) != 0 {
		t.Fatal("Full changed the frame it was called on")
	}
	// One new event: in exactly EventWindow frames, from the next sample on.
	log.Add(0, "killed", "one new event")
	for i := range 2 * dashboard.EventWindow {
		f := s.Sample(at(4*time.Second + time.Duration(i)*100*time.Millisecond))
		got := seqs(f.Events)
		if i < dashboard.EventWindow && !slices.Equal(got, []uint64{old + 1}) {
			t.Fatalf("frame %d (%d after the event): events %v, want [%d]", f.Seq, i, got, old+1)
		}
		if i >= dashboard.EventWindow && len(got) != 0 {
			t.Fatalf("frame %d (%d after the event): events %v, want none", f.Seq, i, got)
		}
	}
	// The guarantee: any two frames at most EventWindow apart together
	// carry every event added between them.
	s2 := dashboard.NewSampler(r, log)
	var all []*dashboard.Frame
	for i := range 200 {
		if i%3 == 0 {
			log.Add(0, "ready", fmt.Sprint(i))
		}
		all = append(all, s2.Sample(at(time.Duration(i)*time.Millisecond)))
	}
	for a := range all {
		for b := a + 1; b < len(all) && b-a <= dashboard.EventWindow; b++ {
			lastA := uint64(0)
			if evs := all[a].Full().Events; len(evs) > 0 {
				lastA = evs[len(evs)-1].Seq
			}
			full := all[b].Full().Events
			var want []uint64
			for _, e := range full {
				if e.Seq > lastA {
					want = append(want, e.Seq)
				}
			}
			var got []uint64
			for _, e := range all[b].Events {
				if e.Seq > lastA {
					got = append(got, e.Seq)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("frames %d → %d: frame %d carries %v of the new events %v", all[a].Seq, all[b].Seq, all[b].Seq, got, want)
			}
		}
	}
}

// Kinds and progress come from the sampler's options, bounded.
func TestSamplerKindsAndProgress(t *testing.T) {
	r := newRegion(t, 2)
	kinds := []string{"echo", "sleep"}
	var asked []int
	many := make([]dashboard.TaskProgress, 30)
	for i := range many {
		many[i] = dashboard.TaskProgress{ID: fmt.Sprintf("t%02d", i), Kind: "sleep", Slot: i % 2, Fraction: float64(i) / 29, Message: "ok"}
	}
	many[0].Fraction = -0.5
	many[1].Fraction = 1.7
	many[2].Fraction = 0.123456
	many[3].Message = strings.Repeat("é", 100) // 200 bytes of 2-byte runes
	var src []dashboard.TaskProgress
	s := dashboard.NewSampler(r, nil,
		dashboard.WithKinds(func() []string { return kinds }),
		dashboard.WithProgress(func(max int) []dashboard.TaskProgress {
			asked = append(asked, max)
			return src
		}))

	f := s.Sample(base)
	if !slices.Equal(f.Kinds, kinds) || f.Progress != nil {
		t.Fatalf("kinds %v progress %v; want %v and none", f.Kinds, f.Progress, kinds)
	}
	b, _ := json.Marshal(f)
	if strings.Contains(string(b), `"progress"`) {
		t.Errorf("a frame with no progress encodes the field: %s", b)
	}

	src = many
	f = s.Sample(at(time.Second))
	if !slices.Equal(asked, []int{dashboard.MaxProgress, dashboard.MaxProgress}) {
		t.Errorf("progress asked for %v, want MaxProgress each sample", asked)
	}
	if len(f.Progress) != dashboard.MaxProgress {
		t.Fatalf("%d progress entries, want %d", len(f.Progress), dashboard.MaxProgress)
	}
	for i, p := range f.Progress {
		if p.ID != many[i].ID || p.Slot != many[i].Slot || p.Fraction < 0 || p.Fraction > 1 {
			t.Errorf("entry %d = %+v", i, p)
		}
	}
	if f.Progress[0].Fraction != 0 || f.Progress[1].Fraction != 1 || f.Progress[2].Fraction != 0.123 {
		t.Errorf("fractions %v %v %v, want 0, 1, 0.123", f.Progress[0].Fraction, f.Progress[1].Fraction, f.Progress[2].Fraction)
	}
	if m := f.Progress[3].Message; len(m) > dashboard.MaxProgressMessage || !utf8.ValidString(m) || !strings.HasSuffix(m, "…") {
		t.Errorf("long message cut to %d bytes %q, want at most %d, valid UTF-8, ending in …", len(m), m, dashboard.MaxProgressMessage)
	}
	if many[3].Message != strings.Repeat("é", 100) || many[0].Fraction != -0.5 {
		t.Error("the sampler changed the source's entries")
	}
	b, _ = json.Marshal(f)
	var m struct {
		Kinds    []string         `json:"kinds"`
		Progress []map[string]any `json:"progress"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Kinds, kinds) || len(m.Progress) != dashboard.MaxProgress {
		t.Fatalf("JSON: %s", b)
	}
	for _, k := range []string{"id", "kind", "slot", "fraction", "message"} {
		if _, ok := m.Progress[4][k]; !ok {
			t.Errorf("progress entry lacks %q: %v", k, m.Progress[4])
		}
	}
}
