package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const topHelp = `
A live view of the master: the global counters, their rates per second and
one line per worker slot, refreshed every --interval. It maps the shared
region the master links at <run-dir>/shm read-only and makes no server
call, so it works while the HTTP API is busy or down. Ctrl-C quits.

--once prints one frame and exits: it reads the region twice, --interval
apart, so that rates and CPU are filled in (--interval 0: one read).`

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\033[H\033[2J"

func cmdTop(ctx context.Context, a *app, cmd *command, args []string) error {
	flags := a.flags(cmd)
	once := flags.Bool("once", false, "print one frame and exit")
	interval := flags.Duration("interval", 500*time.Millisecond, "time between frames")
	pos, err := a.parse(cmd, flags, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 0); err != nil {
		return err
	}
	if *interval < 0 || (!*once && *interval < 10*time.Millisecond) {
		return usagef(cmd, "--interval must be at least 10ms, got %v", *interval)
	}
	r, err := openRegion(a.runDir)
	if err != nil {
		return err
	}
	defer r.Close()
	v := &topView{region: r, runDir: a.runDir, cpu: map[int]cpuBase{}}
	prev := v.sample()

	if *once {
		cur := prev
		if *interval > 0 {
			select {
			case <-time.After(*interval):
			case <-ctx.Done():
				return ctx.Err()
			}
			cur = v.sample()
		}
		if err := v.masterGone(); err != nil {
			return err
		}
		v.render(a.stdout, prev, cur)
		return nil
	}

	clear := isTerminal(a.stdout)
	frame := func(prev, cur *topSample) {
		if clear {
			fmt.Fprint(a.stdout, clearScreen)
		} else {
			fmt.Fprintln(a.stdout)
		}
		v.render(a.stdout, prev, cur)
	}
	frame(nil, prev)
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // Ctrl-C is how top ends
		case <-t.C:
		}
		if err := v.masterGone(); err != nil {
			return err
		}
		cur := v.sample()
		frame(prev, cur)
		prev = cur
	}
}

// openRegion maps the region of the master whose run directory is dir.
func openRegion(dir string) (*shm.Region, error) {
	path := filepath.Join(dir, "shm")
	r, err := shm.Open(path, shm.OpenOptions{Slot: -1, ReadOnly: true})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no master running with run dir %s (no shared region at %s); give the master's --run-dir with --run-dir or %s", dir, path, envRunDir)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("the shared region at %s is not readable by this user: run flowctl as the master's user (%w)", path, err)
	case errors.Is(err, shm.ErrVersion):
		return nil, fmt.Errorf("the master's shared region at %s has another layout than this flowctl understands: use the flowctl built with the master (%w)", path, err)
	case err != nil:
		return nil, err
	}
	v := &topView{region: r, runDir: dir}
	if err := v.masterGone(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// topView renders frames of one region. It keeps each slot's CPU baseline.
type topView struct {
	region *shm.Region
	runDir string
	cpu    map[int]cpuBase // by slot
}

// cpuBase is the heartbeat a slot's CPU percentage was last computed from.
type cpuBase struct {
	pid     int
	gen     uint64
	at      time.Time
	cpu     time.Duration
	percent float64
	valid   bool // percent was computed
}

type topSample struct {
	at       time.Time
	counters map[string]int64
	slots    []shm.SlotSnapshot
	cpu      map[int]float64 // by slot, for running slots with two heartbeats seen
}

// sample reads the region and advances the CPU baselines.
func (v *topView) sample() *topSample {
	s := &topSample{at: time.Now(), counters: v.region.CounterValues(), slots: v.region.Snapshots(), cpu: map[int]float64{}}
	for _, snap := range s.slots {
		if snap.State == shm.StateEmpty {
			continue
		}
		running := snap.State == shm.StateStarting || snap.State == shm.StateReady || snap.State == shm.StateDraining
		if pct, ok := v.cpuPercent(snap); ok && running {
			s.cpu[snap.Slot] = pct
		}
	}
	return s
}

// masterGone reports a master that is no longer running: its region stays
// mapped here after it exits, frozen.
func (v *topView) masterGone() error {
	pid := v.region.Header().MasterPID
	if pid <= 0 {
		return nil
	}
	if err := unix.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("no master running with run dir %s (the shared region at %s belongs to pid %d, which has exited)",
			v.runDir, filepath.Join(v.runDir, "shm"), pid)
	}
	return nil
}

// cpuPercent updates slot s's baseline and returns its CPU percentage, or
// false before two heartbeats of one process were seen.
func (v *topView) cpuPercent(s shm.SlotSnapshot) (float64, bool) {
	b := v.cpu[s.Slot]
	at := s.Heartbeat.At
	switch {
	case b.pid != s.PID || b.gen != s.Generation || b.at.IsZero() || s.CPUTime < b.cpu:
		b = cpuBase{pid: s.PID, gen: s.Generation, at: at, cpu: s.CPUTime}
	case at.After(b.at):
		b.percent = float64(s.CPUTime-b.cpu) / float64(at.Sub(b.at)) * 100
		b.valid = true
		b.at, b.cpu = at, s.CPUTime
	}
	v.cpu[s.Slot] = b
	return b.percent, b.valid
}

func (v *topView) render(w io.Writer, prev, cur *topSample) {
	h := v.region.Header()
	var b strings.Builder
	fmt.Fprintf(&b, "atomicflow top  master pid %d  up %s  %d slots  %s\n",
		h.MasterPID, humanMs(cur.at.Sub(h.Created).Milliseconds()), h.Slots, cur.at.Format("15:04:05"))
	fmt.Fprintf(&b, "run dir %s  region %s\n\n", v.runDir, v.region.Path())

	// Counters in layout order, four to a line, then the rates.
	names := counterOrder(cur.counters)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for i, name := range names {
		sep := "\t"
		if i%4 == 3 || i == len(names)-1 {
			sep = "\n"
		}
		fmt.Fprintf(tw, "%s %d%s", strings.ReplaceAll(name, "_", " "), cur.counters[name], sep)
	}
	tw.Flush()
	fmt.Fprint(&b, "per second:")
	for _, name := range []string{"submitted", "dispatched", "completed", "failed", "retried"} {
		fmt.Fprintf(&b, "  %s %s", name, perSecond(prev, cur, name))
	}
	fmt.Fprint(&b, "\n\n")

	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tIN FLIGHT/CAP\tCOMPLETED\tFAILED\tRSS\tCPU\tHEARTBEAT")
	used := 0
	for _, s := range cur.slots {
		if s.State == shm.StateEmpty {
			continue
		}
		used++
		cpu := "-"
		if pct, ok := cur.cpu[s.Slot]; ok {
			cpu = fmt.Sprintf("%.1f%%", pct)
		}
		hb := "-"
		if !s.Heartbeat.At.IsZero() {
			hb = humanMs(max(0, cur.at.Sub(s.Heartbeat.At).Milliseconds()))
		}
		state := s.State.String()
		if s.State == shm.StateBackoff && s.BackoffUntil.After(cur.at) {
			state += " " + humanMs(s.BackoffUntil.Sub(cur.at).Milliseconds())
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d/%d\t%d\t%d\t%s\t%s\t%s\n",
			s.Slot, s.PID, s.Generation, state, s.InFlight, s.Capacity, s.Completed, s.Failed,
			humanBytes(s.RSSBytes), cpu, hb)
	}
	tw.Flush()
	if used == 0 {
		fmt.Fprintln(&b, "(no worker has started yet)")
	}
	io.WriteString(w, b.String())
}

// perSecond is a counter's rate between two samples, "-" without two.
func perSecond(prev, cur *topSample, name string) string {
	if prev == nil || !cur.at.After(prev.at) {
		return "-"
	}
	d := cur.counters[name] - prev.counters[name]
	if d < 0 {
		d = 0
	}
	return fmt.Sprintf("%.1f", float64(d)/cur.at.Sub(prev.at).Seconds())
}
