package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"
)

const statusHelp = `
Show a task: state, attempts, worker, result, error and times. With --wait,
wait up to that long for it to finish first (the master caps a wait at its
--max-wait); the task is shown as it is then, finished or not.`

const cancelHelp = `
Cancel a task: a queued one at once, a running one by canceling its
handler's context (it shows as canceled once the worker reports back).`

func cmdStatus(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	wait := fs.Duration("wait", 0, "wait up to this long for the task to finish, like 5s")
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 1); err != nil {
		return err
	}
	if *wait < 0 {
		return usagef(cmd, "--wait must be >= 0, got %v", *wait)
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	t, err := c.getTask(ctx, url.PathEscape(pos[0]), *wait)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, t)
	}
	printTask(a.stdout, t)
	return nil
}

func cmdCancel(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	asJSON := fs.Bool("json", false, "print the API's JSON")
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 1); err != nil {
		return err
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	var t task
	if err := c.do(ctx, http.MethodDelete, "/api/v1/tasks/"+url.PathEscape(pos[0]), nil, &t, 0); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(a.stdout, t)
	}
	if t.State == "canceled" {
		fmt.Fprintf(a.stdout, "task %s canceled\n", t.ID)
	} else {
		fmt.Fprintf(a.stdout, "task %s is %s: cancel sent to its worker\n", t.ID, t.State)
	}
	return nil
}

// printTask writes a task as aligned "field  value" lines.
func printTask(w io.Writer, t *task) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	row("id", "%s", t.ID)
	row("kind", "%s", t.Kind)
	row("state", "%s", t.State)
	row("attempts", "%d of %d", t.Attempts, t.MaxAttempts)
	if t.WorkerSlot != nil {
		row("worker", "slot %d", *t.WorkerSlot)
	}
	if t.Key != "" {
		row("key", "%s", t.Key)
	}
	if len(t.Result) > 0 && string(t.Result) != "null" {
		row("result", "%s", t.Result)
	}
	if t.Error != "" {
		row("error", "%s", t.Error)
	}
	if !terminal(t.State) && (t.Progress > 0 || t.ProgressMessage != "") {
		row("progress", "%.0f%% %s", t.Progress*100, t.ProgressMessage)
	}
	for _, tm := range []struct {
		name string
		at   *time.Time
	}{{"created", t.CreatedAt}, {"started", t.StartedAt}, {"finished", t.FinishedAt}} {
		if tm.at != nil {
			row(tm.name, "%s", tm.at.Local().Format("2006-01-02 15:04:05.000"))
		}
	}
	if t.DurationMs != nil {
		row("duration", "%s", time.Duration(*t.DurationMs*float64(time.Millisecond)).Round(10*time.Microsecond))
	}
	tw.Flush()
}
