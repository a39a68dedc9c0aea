package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

const killHelp = `
Kill the worker process in a slot with SIGKILL, as a crash would; the
master notices, hands its tasks to other workers and forks a new process
into the slot. With --wait, wait until the new one is ready.`

const restartHelp = `
Restart the worker in a slot gracefully: it finishes its tasks and runs its
stop hooks, and a new process takes the slot. With --wait, wait until the
new one is ready.`

const scaleHelp = `
Run N workers: the master starts or drains workers until N are running.
With --wait, wait until exactly N are ready.`

const reloadHelp = `
Replace every worker, one slot at a time (a rolling reload, like SIGHUP to
the master): start the new process, wait for it to be ready, drain the old
one. No task fails because of a reload. With --wait, wait until every slot
runs a new process.`

// pollEvery is how often --wait reads the workers.
const pollEvery = 50 * time.Millisecond

// waitFlags adds --wait and --timeout to a control command.
func waitFlags(fs *flag.FlagSet) (wait *bool, timeout *time.Duration) {
	return fs.Bool("wait", false, "wait until the workers are ready"),
		fs.Duration("timeout", time.Minute, "with --wait, give up after this long")
}

func cmdControl(action string) func(context.Context, *app, *command, []string) error {
	return func(ctx context.Context, a *app, cmd *command, args []string) error {
		fs := a.flags(cmd)
		wait, timeout := waitFlags(fs)
		pos, err := a.parse(cmd, fs, args)
		if err != nil {
			return err
		}
		if err := exactArgs(cmd, pos, 1); err != nil {
			return err
		}
		slot, err := strconv.Atoi(pos[0])
		if err != nil || slot < 0 {
			return usagef(cmd, "slot %q is not a slot number", pos[0])
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		defer c.close()
		before, err := c.workers(ctx)
		if err != nil {
			return err
		}
		old := -1
		for _, w := range before {
			if w.Slot == slot {
				old = w.PID
			}
		}
		start := time.Now()
		if err := c.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/workers/%d/%s", slot, action), nil, nil, 0); err != nil {
			return err
		}
		if !*wait {
			fmt.Fprintf(a.stdout, "slot %d: %s sent to pid %d; the master forks a new worker\n", slot, action, old)
			return nil
		}
		var now worker
		err = c.pollWorkers(ctx, *timeout, func(ws []worker) bool {
			for _, w := range ws {
				if w.Slot == slot && w.State == "ready" && w.PID != old {
					now = w
					return true
				}
			}
			return false
		})
		if err != nil {
			return fmt.Errorf("slot %d after %s: %w", slot, action, err)
		}
		fmt.Fprintf(a.stdout, "slot %d: pid %d replaced by pid %d (generation %d) in %.2fs\n",
			slot, old, now.PID, now.Generation, time.Since(start).Seconds())
		return nil
	}
}

func cmdScale(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	wait, timeout := waitFlags(fs)
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 1); err != nil {
		return err
	}
	n, err := strconv.Atoi(pos[0])
	if err != nil || n < 1 {
		return usagef(cmd, "N must be a number of workers >= 1, got %q", pos[0])
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	start := time.Now()
	body := []byte(fmt.Sprintf(`{"workers":%d}`, n))
	if err := c.do(ctx, http.MethodPost, "/api/v1/scale", body, nil, 0); err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintf(a.stdout, "scaling to %s\n", plural(n, "worker"))
		return nil
	}
	err = c.pollWorkers(ctx, *timeout, func(ws []worker) bool {
		ready, moving := count(ws)
		return ready == n && moving == 0
	})
	if err != nil {
		return fmt.Errorf("scale to %d: %w", n, err)
	}
	fmt.Fprintf(a.stdout, "%s ready in %.2fs\n", plural(n, "worker"), time.Since(start).Seconds())
	return nil
}

func cmdReload(ctx context.Context, a *app, cmd *command, args []string) error {
	fs := a.flags(cmd)
	wait, timeout := waitFlags(fs)
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
	before, err := c.workers(ctx)
	if err != nil {
		return err
	}
	old := map[int]bool{}
	for _, w := range before {
		if w.PID > 0 {
			old[w.PID] = true
		}
	}
	want, _ := count(before)
	start := time.Now()
	if err := c.do(ctx, http.MethodPost, "/api/v1/reload", nil, nil, 0); err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintln(a.stdout, "rolling reload started")
		return nil
	}
	err = c.pollWorkers(ctx, *timeout, func(ws []worker) bool {
		ready, moving := count(ws)
		if ready < want || moving > 0 {
			return false
		}
		for _, w := range ws {
			if w.State == "ready" && old[w.PID] {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	fmt.Fprintf(a.stdout, "reloaded %s in %.2fs\n", plural(want, "worker"), time.Since(start).Seconds())
	return nil
}

// count returns how many workers are ready and how many are starting or
// draining.
func count(ws []worker) (ready, moving int) {
	for _, w := range ws {
		switch w.State {
		case "ready":
			ready++
		case "starting", "draining":
			moving++
		}
	}
	return ready, moving
}

// pollWorkers reads the workers until done holds or timeout passes.
func (c *client) pollWorkers(ctx context.Context, timeout time.Duration, done func([]worker) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		ws, err := c.workers(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("workers not ready after --timeout %v", timeout)
		}
		if err != nil {
			return err
		}
		if done(ws) {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("workers not ready after --timeout %v (now %s)", timeout, summary(ws))
			}
			return ctx.Err()
		}
	}
}

// summary is a short line of worker states: "2 ready, 1 starting".
func summary(ws []worker) string {
	states := map[string]int{}
	var order []string
	for _, w := range ws {
		if states[w.State] == 0 {
			order = append(order, w.State)
		}
		states[w.State]++
	}
	s := ""
	for i, st := range order {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", states[st], st)
	}
	if s == "" {
		return "no workers"
	}
	return s
}
