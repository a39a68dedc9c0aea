package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const workersHelp = `
List the worker slots in use: pid, generation, state, tasks in flight and
capacity, completed and failed counts, restarts, memory, CPU, uptime and the
age of the last heartbeat.`

const statsHelp = `
Show the master's global counters (GET /api/v1/stats).`

func cmdWorkers(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 0); err != nil {
		return err
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	ws, err := c.workers(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, map[string]any{"workers": ws})
	}
	printWorkers(a.stdout, ws)
	return nil
}

func printWorkers(w io.Writer, ws []worker) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SLOT\tPID\tGEN\tSTATE\tIN FLIGHT\tCAPACITY\tCOMPLETED\tFAILED\tRESTARTS\tRSS\tCPU\tUPTIME\tHEARTBEAT")
	for _, x := range ws {
		state := x.State
		if x.State == "backoff" && x.BackoffMs > 0 {
			state += " " + humanMs(x.BackoffMs)
		}
		hb := "-"
		if x.HeartbeatAgeMs > 0 {
			hb = humanMs(x.HeartbeatAgeMs)
		}
		up := "-"
		if x.UptimeMs > 0 {
			up = humanMs(x.UptimeMs)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%.1f%%\t%s\t%s\n",
			x.Slot, x.PID, x.Generation, state, x.InFlight, x.Capacity, x.Completed, x.Failed,
			x.Restarts, humanBytes(x.RSSBytes), x.CPUPercent, up, hb)
	}
	tw.Flush()
}

func cmdStats(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 0); err != nil {
		return err
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	stats := map[string]int64{}
	if err := c.do(ctx, http.MethodGet, "/api/v1/stats", nil, &stats, 0); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, stats)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	for _, name := range counterOrder(stats) {
		fmt.Fprintf(tw, "%s\t%d\n", strings.ReplaceAll(name, "_", " "), stats[name])
	}
	tw.Flush()
	return nil
}

// counterOrder lists the names of m: the shared region's counters in
// layout order, then any others sorted.
func counterOrder(m map[string]int64) []string {
	var names []string
	for _, c := range shm.Counters() {
		if _, ok := m[c.String()]; ok {
			names = append(names, c.String())
		}
	}
	var rest []string
	for k := range m {
		if !slices.Contains(names, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(names, rest...)
}
