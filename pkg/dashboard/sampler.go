package dashboard

import (
	"math"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// FrameEvents is how many of the newest events a full frame carries (see
// Frame.Full): the first frame a client gets, and a frame for a client that
// fell more than EventWindow frames behind.
const FrameEvents = 50

// EventWindow is how many consecutive frames carry a new event: an event
// added before sample n is in frames n to n+EventWindow-1 (2 s at 10 Hz),
// then no more. A client that got frame a and then frame b, with
// b-a <= EventWindow, has been sent every event added in between (up to
// FrameEvents of them); the hub sends any other client a full frame.
const EventWindow = 20

// MaxProgress is how many running tasks' progress a frame lists at most.
const MaxProgress = 20

// MaxProgressMessage bounds a progress message in a frame, in bytes: a longer
// one is cut (at a rune boundary) and ends in "…".
const MaxProgressMessage = 80

// Worker is the JSON view of one worker slot. The master serves the same
// shape at GET /api/v1/workers.
type Worker struct {
	Slot       int    `json:"slot"`
	PID        int    `json:"pid"`
	Generation uint64 `json:"generation"`
	State      string `json:"state"`
	Capacity   int64  `json:"capacity"`
	InFlight   int64  `json:"in_flight"`
	Completed  int64  `json:"completed"`
	Failed     int64  `json:"failed"`
	Restarts   int64  `json:"restarts"`
	RSSBytes   int64  `json:"rss_bytes"`
	// CPUPercent is the CPU time the worker used between its last two
	// heartbeats over the wall time between them, ×100 (one busy core is
	// 100). It is 0 for a slot that is not running a process.
	CPUPercent float64 `json:"cpu_percent"`
	// UptimeMs is the time since the process was started, 0 when no process
	// is running in the slot.
	UptimeMs int64 `json:"uptime_ms"`
	// HeartbeatAgeMs is the time since the worker's last heartbeat, 0 when it
	// has not beaten yet.
	HeartbeatAgeMs int64 `json:"heartbeat_age_ms"`
	// LastExit is the last exit: >= 0 an exit code, < 0 a signal number
	// negated.
	LastExit int64 `json:"last_exit"`
	// BackoffMs is the time until a slot in backoff forks again.
	BackoffMs int64 `json:"backoff_ms"`
}

// Rates are per-second rates of the global counters between two samples.
type Rates struct {
	CompletedPerS float64 `json:"completed_per_s"`
	FailedPerS    float64 `json:"failed_per_s"`
	SubmittedPerS float64 `json:"submitted_per_s"`
}

// TaskProgress is the progress a running task last reported (sdk
// Task.Progress), as a frame lists it.
type TaskProgress struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Slot is the worker slot the task runs on.
	Slot int `json:"slot"`
	// Fraction is in [0, 1].
	Fraction float64 `json:"fraction"`
	Message  string  `json:"message,omitempty"`
}

// Frame is one sample of the whole system, as streamed on /ws.
type Frame struct {
	Seq uint64 `json:"seq"`
	// TimeMs is the sample time in unix milliseconds.
	TimeMs int64 `json:"time_ms"`
	// Counters holds every shm counter by its String() name.
	Counters   map[string]int64 `json:"counters"`
	Rates      Rates            `json:"rates"`
	QueueDepth int64            `json:"queue_depth"`
	Workers    []Worker         `json:"workers"`
	// Kinds are the task kinds the master accepts, sorted (WithKinds);
	// absent when the sampler has no such source or it knows none yet.
	Kinds []string `json:"kinds,omitempty"`
	// Progress lists up to MaxProgress running tasks that reported
	// progress, the most recently updated first (WithProgress); absent
	// when there are none.
	Progress []TaskProgress `json:"progress,omitempty"`
	// Events are the events added during the last EventWindow samples
	// (at most FrameEvents), oldest first. Full returns the frame with the
	// FrameEvents newest instead.
	Events []Event `json:"events"`

	recent []Event // the FrameEvents newest events, oldest first
}

// Full returns a copy of f whose Events are the FrameEvents newest events of
// the log at sample time, not only the recent ones: what a client that has
// seen no earlier frame, or missed more than EventWindow of them, needs. It
// returns f itself when f already carries all of them.
func (f *Frame) Full() *Frame {
	if len(f.Events) == len(f.recent) {
		return f
	}
	full := *f
	full.Events = f.recent
	return &full
}

// Sampler reads a shm.Region and builds Frames. Its methods are safe for
// concurrent use: the hub calls Sample on its ticks while HTTP handlers call
// Workers.
type Sampler struct {
	region   *shm.Region
	log      *EventLog
	kinds    func() []string
	progress func(max int) []TaskProgress

	mu  sync.Mutex
	seq uint64
	// newest[n % EventWindow] is the seq of the newest event at sample n.
	newest  [EventWindow]uint64
	prev    counterSample
	hasPrev bool
	rates   Rates
	cpu     []cpuSample // by slot
}

// counterSample is the part of a sample that rates are computed from.
type counterSample struct {
	at                           time.Time
	completed, failed, submitted int64
}

// cpuSample is the CPU baseline of one slot: the heartbeat the last
// percentage was computed at, for the process it was computed for.
type cpuSample struct {
	valid   bool
	pid     int
	gen     uint64
	at      time.Time // heartbeat time (or sample time when the worker sets none)
	cpu     time.Duration
	percent float64
}

// A SamplerOption gives a Sampler a source of what the shared region does
// not hold: the master's engine knows the task kinds and the running tasks'
// progress.
type SamplerOption func(*Sampler)

// WithKinds makes every frame carry the task kinds the master accepts (the
// page's load panel offers them); kinds returns them sorted. A nil kinds
// adds nothing.
func WithKinds(kinds func() []string) SamplerOption {
	return func(s *Sampler) { s.kinds = kinds }
}

// WithProgress makes every frame list the progress of up to MaxProgress
// running tasks: progress(max) returns at most max running tasks that
// reported progress, the most recently updated first. The sampler clamps
// fractions to [0, 1], cuts messages to MaxProgressMessage bytes and keeps
// the first MaxProgress entries. It is called once per sample, so it should
// be cheap. A nil progress adds nothing.
func WithProgress(progress func(max int) []TaskProgress) SamplerOption {
	return func(s *Sampler) { s.progress = progress }
}

// NewSampler returns a sampler of r that attaches the recent events of log
// to every frame. r must not be nil; log may be nil (frames carry no
// events). Options add sources beyond the region; without them frames carry
// no kinds and no progress.
func NewSampler(r *shm.Region, log *EventLog, opts ...SamplerOption) *Sampler {
	s := &Sampler{region: r, log: log, cpu: make([]cpuSample, r.Slots())}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Sample reads the region at time now and returns the next frame. Rates and
// CPU percentages are computed against the previous call; the first frame has
// zero rates. The frame's events are those added during the last EventWindow
// calls (Frame.Full has the FrameEvents newest).
func (s *Sampler) Sample(now time.Time) *Frame {
	recent := []Event{}
	if s.log != nil {
		recent = s.log.Recent(FrameEvents)
	}
	var kinds []string
	if s.kinds != nil {
		kinds = s.kinds()
	}
	var progress []TaskProgress
	if s.progress != nil {
		progress = cleanProgress(s.progress(MaxProgress))
	}
	counters := s.region.CounterValues()
	snaps := s.region.Snapshots()
	cur := counterSample{
		at:        now,
		completed: counters[shm.Completed.String()],
		failed:    counters[shm.Failed.String()],
		submitted: counters[shm.Submitted.String()],
	}

	s.mu.Lock()
	s.seq++
	seq := s.seq
	// The newest event as of EventWindow samples ago (0 before that): this
	// frame carries every event after it.
	since := s.newest[seq%EventWindow]
	newest := s.newest[(seq-1)%EventWindow]
	if n := len(recent); n > 0 {
		newest = recent[n-1].Seq
	}
	s.newest[seq%EventWindow] = newest
	if !s.hasPrev {
		s.prev, s.hasPrev = cur, true
	} else if dt := now.Sub(s.prev.at).Seconds(); dt > 0 {
		s.rates = Rates{
			CompletedPerS: perSecond(s.prev.completed, cur.completed, dt),
			FailedPerS:    perSecond(s.prev.failed, cur.failed, dt),
			SubmittedPerS: perSecond(s.prev.submitted, cur.submitted, dt),
		}
		s.prev = cur
	} // else: a clock that did not move keeps the last rates and baseline
	rates := s.rates
	workers := make([]Worker, 0, len(snaps))
	for _, snap := range snaps {
		pct := s.updateCPU(snap, now)
		if snap.State == shm.StateEmpty {
			continue
		}
		workers = append(workers, view(snap, pct, now))
	}
	s.mu.Unlock()

	first := len(recent)
	for first > 0 && recent[first-1].Seq > since {
		first--
	}
	return &Frame{
		Seq:        seq,
		TimeMs:     now.UnixMilli(),
		Counters:   counters,
		Rates:      rates,
		QueueDepth: counters[shm.Queued.String()],
		Workers:    workers,
		Kinds:      kinds,
		Progress:   progress,
		Events:     recent[first:],
		recent:     recent,
	}
}

// cleanProgress bounds what a progress source returned: MaxProgress
// entries, fractions in [0, 1] with 3 decimals, messages of at most
// MaxProgressMessage bytes. It returns nil for none.
func cleanProgress(in []TaskProgress) []TaskProgress {
	if len(in) == 0 {
		return nil
	}
	out := make([]TaskProgress, min(len(in), MaxProgress))
	for i := range out {
		p := in[i]
		p.Fraction = round(math.Min(1, math.Max(0, p.Fraction)), 3)
		if len(p.Message) > MaxProgressMessage {
			const ellipsis = "…"
			cut := MaxProgressMessage - len(ellipsis)
			for cut > 0 && !utf8.RuneStart(p.Message[cut]) {
				cut--
			}
			p.Message = p.Message[:cut] + ellipsis
		}
		out[i] = p
	}
	return out
}

// Workers reads the slots now and returns the view of every slot in use, by
// slot number, with the CPU percentages of the last Sample. It never
// returns nil.
func (s *Sampler) Workers() []Worker {
	now := time.Now()
	snaps := s.region.Snapshots()
	out := make([]Worker, 0, len(snaps))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, snap := range snaps {
		if snap.State == shm.StateEmpty {
			continue
		}
		var pct float64
		if c := s.cpu[snap.Slot]; c.valid && c.pid == snap.PID && c.gen == snap.Generation && alive(snap.State) {
			pct = c.percent
		}
		out = append(out, view(snap, pct, now))
	}
	return out
}

// updateCPU advances slot snap.Slot's CPU baseline and returns its
// percentage. s.mu must be held.
func (s *Sampler) updateCPU(snap shm.SlotSnapshot, now time.Time) float64 {
	c := &s.cpu[snap.Slot]
	at := snap.Heartbeat.At
	if at.IsZero() {
		at = now // a worker that does not stamp its beats: use the sample clock
	}
	switch {
	case !c.valid || c.pid != snap.PID || c.gen != snap.Generation || snap.CPUTime < c.cpu:
		// A new process (or a reset slot): start a new baseline.
		*c = cpuSample{valid: true, pid: snap.PID, gen: snap.Generation, at: at, cpu: snap.CPUTime}
	case at.After(c.at):
		wall := at.Sub(c.at)
		c.percent = round(float64(snap.CPUTime-c.cpu)/float64(wall)*100, 1)
		c.at, c.cpu = at, snap.CPUTime
	}
	// else: no new heartbeat since the last sample; keep the last percentage.
	if !alive(snap.State) {
		return 0
	}
	return c.percent
}

// view builds the JSON view of one slot at time now.
func view(snap shm.SlotSnapshot, cpuPercent float64, now time.Time) Worker {
	w := Worker{
		Slot:       snap.Slot,
		PID:        snap.PID,
		Generation: snap.Generation,
		State:      snap.State.String(),
		Capacity:   snap.Capacity,
		InFlight:   snap.InFlight,
		Completed:  snap.Completed,
		Failed:     snap.Failed,
		Restarts:   snap.Restarts,
		RSSBytes:   snap.RSSBytes,
		CPUPercent: cpuPercent,
		LastExit:   snap.LastExit,
	}
	if alive(snap.State) && !snap.Started.IsZero() {
		w.UptimeMs = max(0, now.Sub(snap.Started).Milliseconds())
	}
	if !snap.Heartbeat.At.IsZero() {
		w.HeartbeatAgeMs = max(0, now.Sub(snap.Heartbeat.At).Milliseconds())
	}
	if snap.State == shm.StateBackoff && snap.BackoffUntil.After(now) {
		w.BackoffMs = snap.BackoffUntil.Sub(now).Milliseconds()
	}
	return w
}

// alive reports whether a slot in state st has a process running.
func alive(st shm.State) bool {
	return st == shm.StateStarting || st == shm.StateReady || st == shm.StateDraining
}

// perSecond is the rate of a counter that went from prev to cur over dt
// seconds; a counter that went backwards (a new region) counts as 0.
func perSecond(prev, cur int64, dt float64) float64 {
	if cur < prev {
		return 0
	}
	return round(float64(cur-prev)/dt, 2)
}

// round rounds x to the given number of decimals, keeping JSON frames short;
// NaN and infinities (which JSON cannot carry) become 0.
func round(x float64, decimals int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	p := math.Pow10(decimals)
	return math.Round(x*p) / p
}
