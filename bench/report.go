package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// aim is a figure's target: at least (AtLeast) or at most Value.
type aim struct {
	AtLeast bool    `json:"at_least"`
	Value   float64 `json:"value"`
	Text    string  `json:"text"` // as the issue says it, e.g. "≥ 1,000,000/s"
}

func atLeast(v float64, text string) *aim { return &aim{AtLeast: true, Value: v, Text: text} }
func atMost(v float64, text string) *aim  { return &aim{Value: v, Text: text} }

// figure is one measured number.
type figure struct {
	Scenario string  `json:"scenario"`
	Name     string  `json:"figure"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Aim      *aim    `json:"aim,omitempty"`
	// Met is nil for a figure without an aim or one not measured.
	Met *bool `json:"met,omitempty"`
	// Missing says why there is no value (not available, failed).
	Missing string `json:"missing,omitempty"`
	Note    string `json:"note,omitempty"`
}

// outcome is what one scenario produced.
type outcome struct {
	Name     string         `json:"name"`
	Started  time.Time      `json:"started"`
	Seconds  float64        `json:"seconds"`
	Figures  []figure       `json:"figures"`
	Notes    []string       `json:"notes,omitempty"`
	Details  map[string]any `json:"details,omitempty"`
	Error    string         `json:"error,omitempty"`
	LoadAvg  string         `json:"load_avg_at_start"`
	Profiles []profileTop   `json:"profiles,omitempty"`
	Plot     string         `json:"plot,omitempty"`
}

// add records a measured figure and judges it against its aim.
func (o *outcome) add(name string, v float64, unit string, a *aim, note string) {
	f := figure{Scenario: o.Name, Name: name, Value: v, Unit: unit, Aim: a, Note: note}
	if a != nil && !math.IsNaN(v) {
		met := v <= a.Value
		if a.AtLeast {
			met = v >= a.Value
		}
		f.Met = &met
	}
	o.Figures = append(o.Figures, f)
}

// missing records a figure that could not be measured, and why.
func (o *outcome) missing(name string, a *aim, why string) {
	o.Figures = append(o.Figures, figure{Scenario: o.Name, Name: name, Aim: a, Missing: why, Value: math.NaN()})
}

func (o *outcome) note(format string, args ...any) {
	o.Notes = append(o.Notes, fmt.Sprintf(format, args...))
}

func (o *outcome) detail(k string, v any) {
	if o.Details == nil {
		o.Details = map[string]any{}
	}
	o.Details[k] = v
}

// find returns the value of a figure of this outcome by name.
func (o *outcome) find(name string) (float64, bool) {
	for _, f := range o.Figures {
		if f.Name == name && f.Missing == "" {
			return f.Value, true
		}
	}
	return 0, false
}

// machine describes where the run happened.
type machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	RAMBytes  int64  `json:"ram_bytes"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
}

func describeMachine() machine {
	m := machine{Cores: numCPU(), GoVersion: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
				m.RAMBytes = kb << 10
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func numCPU() int { return runtime.NumCPU() }

// report is the whole run.
type report struct {
	Date     string    `json:"date"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  machine   `json:"machine"`
	Command  string    `json:"command"`
	Outcomes []outcome `json:"scenarios"`
}

// write puts the report in dir as <base>.md and <base>.json.
func (r *report) write(dir, base string) (mdPath, jsonPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("results dir: %w", err)
	}
	jsonPath = filepath.Join(dir, base+".json")
	mdPath = filepath.Join(dir, base+".md")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", jsonPath, err)
	}
	if err := os.WriteFile(mdPath, []byte(r.markdown()), 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", mdPath, err)
	}
	return mdPath, jsonPath, nil
}

// MarshalJSON of a figure writes a missing value as null.
func (f figure) MarshalJSON() ([]byte, error) {
	type plain figure
	p := struct {
		plain
		Value *float64 `json:"value"`
	}{plain: plain(f)}
	if !math.IsNaN(f.Value) && !math.IsInf(f.Value, 0) {
		v := f.Value
		p.Value = &v
	}
	return json.Marshal(p)
}

// table is the markdown table of every figure.
func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| scenario | figure | aim | result |\n|---|---|---|---|\n")
	for _, o := range r.Outcomes {
		if o.Error != "" && len(o.Figures) == 0 {
			fmt.Fprintf(&b, "| %s | (scenario failed) | | **error**: %s |\n", o.Name, mdCell(o.Error))
			continue
		}
		for _, f := range o.Figures {
			aimText := ""
			if f.Aim != nil {
				aimText = f.Aim.Text
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", f.Scenario, mdCell(f.Name), aimText, mdCell(resultText(f)))
		}
		if o.Error != "" {
			fmt.Fprintf(&b, "| %s | (scenario failed part way) | | **error**: %s |\n", o.Name, mdCell(o.Error))
		}
	}
	return b.String()
}

func resultText(f figure) string {
	if f.Missing != "" {
		return "not measured: " + f.Missing
	}
	s := formatValue(f.Value, f.Unit)
	if f.Met != nil {
		if *f.Met {
			s += " — met"
		} else {
			s += " — **miss**"
			if f.Aim.AtLeast && f.Aim.Value > 0 {
				s += fmt.Sprintf(" (%.0f%% of aim)", 100*f.Value/f.Aim.Value)
			} else if !f.Aim.AtLeast && f.Aim.Value > 0 {
				s += fmt.Sprintf(" (%.1f× the aim)", f.Value/f.Aim.Value)
			}
		}
	}
	if f.Note != "" {
		s += " (" + f.Note + ")"
	}
	return s
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// formatValue prints v in its unit with sensible precision.
func formatValue(v float64, unit string) string {
	switch unit {
	case "tasks/s":
		return group(v) + " tasks/s"
	case "ms":
		return fmt.Sprintf("%.2f ms", v)
	case "ns":
		if v >= 1000 {
			return group(v) + " ns"
		}
		return fmt.Sprintf("%.1f ns", v)
	case "%":
		return fmt.Sprintf("%.2f %%", v)
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "KiB":
		return fmt.Sprintf("%.2f KiB", v)
	case "bytes":
		return group(v) + " B"
	case "tasks":
		return group(v) + " tasks"
	case "×":
		return fmt.Sprintf("%.1f×", v)
	case "ratio":
		return fmt.Sprintf("%.3f", v)
	case "":
		return group(v)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

// group prints v rounded, with thousands separators.
func group(v float64) string {
	neg := v < 0
	n := int64(math.Round(math.Abs(v)))
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func (r *report) markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# Atomic Flow benchmark, %s\n\n", r.Date)
	fmt.Fprintf(&b, "Machine: %s, %d cores, %.1f GiB RAM, Linux %s; %s. Command: `%s`; %s in all, started %s.\n\n",
		m.CPU, m.Cores, float64(m.RAMBytes)/(1<<30), m.Kernel, m.GoVersion, r.Command,
		(time.Duration(r.Seconds) * time.Second).String(), r.Started.UTC().Format(time.RFC3339))
	b.WriteString("Every figure is from this run; an aim that was missed says **miss**. ")
	b.WriteString("CPU percentages are of one core (the machine has ")
	fmt.Fprintf(&b, "%d, so 100%% is half of it). The load generator runs on the same two cores as the master and the workers, and the machine was shared with other jobs: each scenario's notes say how busy the whole machine was and how much of that was other processes.\n\n", m.Cores)
	b.WriteString(r.table())
	for _, o := range r.Outcomes {
		fmt.Fprintf(&b, "\n## %s\n\n", o.Name)
		fmt.Fprintf(&b, "%.1f s, load average at start %s.\n\n", o.Seconds, o.LoadAvg)
		if o.Error != "" {
			fmt.Fprintf(&b, "**Error:** %s\n\n", o.Error)
		}
		for _, n := range o.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if o.Plot != "" {
			fmt.Fprintf(&b, "\n![%s](%s)\n", o.Name, o.Plot)
		}
		for _, p := range o.Profiles {
			fmt.Fprintf(&b, "\nProfile of the %s (`go tool pprof -top`, %s):\n\n```\n%s\n```\n", p.Process, p.Window, p.Top)
		}
	}
	return b.String()
}
