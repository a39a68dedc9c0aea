package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// fixed at 100 in the Linux user ABI whatever the kernel's own HZ.
const userHZ = 100

// rssBytes reads VmRSS of pid from /proc/<pid>/status.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %d: %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("rss of %d: no VmRSS line", pid)
}

// cpuTime reads utime+stime of pid from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start past the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu of %d: malformed stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu of %d: short stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("cpu of %d: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// machineCPU reads the busy and total jiffies of all cores from /proc/stat.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest times are already in user and nice
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// cpuMeter measures the CPU use of a set of processes between Start and
// Stop, as a percentage of one core, and the whole machine's.
type cpuMeter struct {
	pids  []int
	names []string
	start []time.Duration
	at    time.Time

	busy0, total0 int64
}

func newCPUMeter() *cpuMeter { return &cpuMeter{} }

// Add names a process to measure.
func (c *cpuMeter) Add(name string, pid int) *cpuMeter {
	c.names = append(c.names, name)
	c.pids = append(c.pids, pid)
	return c
}

// Start reads every process's CPU time now.
func (c *cpuMeter) Start() *cpuMeter {
	c.start = make([]time.Duration, len(c.pids))
	for i, p := range c.pids {
		c.start[i], _ = cpuTime(p)
	}
	c.at = time.Now()
	c.busy0, c.total0 = machineCPU()
	return c
}

// cpuUse is one process's use over a window.
type cpuUse struct {
	Name    string  `json:"name"`
	PID     int     `json:"pid"`
	CPU     float64 `json:"cpu_seconds"`
	Percent float64 `json:"percent_of_one_core"`
	Gone    bool    `json:"gone,omitempty"` // the process ended in the window
}

// Stop returns each process's use since Start; the last entry is the
// whole machine's (all processes, every core; named "machine").
func (c *cpuMeter) Stop() (uses []cpuUse, wall time.Duration) {
	wall = time.Since(c.at)
	defer func() {
		busy, total := machineCPU()
		if total > c.total0 {
			// total jiffies cover every core: busy share × cores = cores busy
			frac := float64(busy-c.busy0) / float64(total-c.total0)
			uses = append(uses, cpuUse{Name: "machine", Percent: 100 * frac * float64(numCPU()),
				CPU: frac * float64(numCPU()) * wall.Seconds()})
		}
	}()
	for i, p := range c.pids {
		t, err := cpuTime(p)
		u := cpuUse{Name: c.names[i], PID: p}
		if err != nil {
			u.Gone = true
		} else {
			d := t - c.start[i]
			u.CPU = d.Seconds()
			u.Percent = 100 * d.Seconds() / wall.Seconds()
		}
		uses = append(uses, u)
	}
	return uses, wall
}

// sumPercent adds the percentages of the uses whose name has prefix.
func sumPercent(uses []cpuUse, prefix string) float64 {
	s := 0.0
	for _, u := range uses {
		if strings.HasPrefix(u.Name, prefix) {
			s += u.Percent
		}
	}
	return s
}

// meterMaster makes a meter over the master, its ready workers and this
// process.
func meterMaster(m *masterProc) *cpuMeter {
	c := newCPUMeter().Add("master", m.PID)
	for i, p := range m.WorkerPIDs() {
		c.Add(fmt.Sprintf("worker-%d", i), p)
	}
	return c.Add("bench", os.Getpid())
}

// cpuSplit says where the CPU of a window went, for the notes.
func cpuSplit(uses []cpuUse, wall time.Duration) string {
	var parts []string
	ours, machine := 0.0, -1.0
	for _, u := range uses {
		if u.Name == "machine" {
			machine = u.Percent
			continue
		}
		ours += u.Percent
		parts = append(parts, pct(u.Name, u.Percent))
	}
	s := fmt.Sprintf("CPU over %.1fs (100%% = one core, the machine has %d): %s",
		wall.Seconds(), numCPU(), strings.Join(parts, ", "))
	if machine >= 0 {
		s += fmt.Sprintf("; the whole machine was %.0f%% busy, %.0f%% of it other processes", machine, max(machine-ours, 0))
	}
	return s
}

// loadAvg is the first line of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return strings.TrimSpace(string(b))
	}
	return strings.Join(f[:3], " ")
}

// pct prints a named percentage, with a decimal below 10 %.
func pct(name string, p float64) string {
	if p < 10 {
		return fmt.Sprintf("%s %.1f%%", name, p)
	}
	return fmt.Sprintf("%s %.0f%%", name, p)
}
