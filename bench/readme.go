package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// The README's performance table lives between these markers; a full
// `make bench` run rewrites what is between them.
const (
	readmeStart = "<!-- bench:start -->"
	readmeEnd   = "<!-- bench:end -->"
)

// updateReadme puts the report's table, its machine and date, and a link
// to the full report into the README at path.
func (r *report) updateReadme(path, mdPath string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("readme: %w", err)
	}
	i := bytes.Index(old, []byte(readmeStart))
	j := bytes.Index(old, []byte(readmeEnd))
	if i < 0 || j < i {
		return fmt.Errorf("readme: %s has no %s … %s section", path, readmeStart, readmeEnd)
	}
	m := r.Machine
	var b strings.Builder
	b.WriteString(readmeStart + "\n")
	fmt.Fprintf(&b, "From `%s` on %s: %s, %d cores, %.1f GiB RAM, Linux %s, %s; %s in all. The load generator shares the two cores with the master and the workers; CPU percentages are of one core. Full report with notes and profiles: [%s](%s).\n\n",
		r.Command, r.Started.UTC().Format("2006-01-02"), m.CPU, m.Cores, float64(m.RAMBytes)/(1<<30), m.Kernel, m.GoVersion,
		(time.Duration(r.Seconds) * time.Second).String(), mdPath, mdPath)
	b.WriteString(r.table())
	var out bytes.Buffer
	out.Write(old[:i])
	out.WriteString(b.String())
	out.Write(old[j:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}

// readmeFromJSON rewrites the README's table from a saved full report.
func readmeFromJSON(jsonPath, readme string) error {
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("report %s: %w", jsonPath, err)
	}
	return r.updateReadme(readme, strings.TrimSuffix(jsonPath, ".json")+".md")
}
