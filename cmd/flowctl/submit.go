package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const submitHelp = `
Submit one task and print its id; or many: the same task --count times, or
one task JSON object per line of --file ("-" for stdin), for example

  {"kind":"sleep","payload":{"ms":100},"key":"user-7","timeout_ms":1000}

sent in batches of --batch tasks with --concurrency batches in flight. A
batch the master refuses because its queue is full is sent again after a
pause, for up to a minute. Many tasks end with the line
"submitted N tasks in 1.23s (81234 tasks/s)"; a progress bar is drawn on
stderr when it is a terminal.

With --wait, flowctl waits until the tasks are finished and prints the task
(one) or the count of each outcome (many); it exits 1 when a task did not
succeed.`

// queueFullPatience bounds how long one batch is retried while the
// master's queue is full.
const queueFullPatience = time.Minute

type submitOptions struct {
	kind, payload, key, idem string
	timeout                  time.Duration
	maxAttempts              int
	count                    int
	file                     string
	batch, concurrency       int
	wait                     bool
	waitTimeout              time.Duration
	json                     bool
}

// taskInput is the API's task JSON.
type taskInput struct {
	Kind           string          `json:"kind"`
	Payload        json.RawMessage `json:"payload,omitempty"`
	Key            string          `json:"key,omitempty"`
	TimeoutMs      int64           `json:"timeout_ms,omitempty"`
	MaxAttempts    int             `json:"max_attempts,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

func cmdSubmit(ctx context.Context, a *app, cmd *command, args []string) error {
	var o submitOptions
	fs := a.flags(cmd)
	fs.StringVar(&o.kind, "kind", "", "task kind: sleep, cpu, echo, fail, or a custom worker's")
	fs.StringVar(&o.payload, "payload", "", `the payload, as JSON: '{"ms":100}'`)
	fs.StringVar(&o.key, "key", "", "routing key (with key-hash dispatch a key always goes to the same worker)")
	fs.DurationVar(&o.timeout, "timeout", 0, "task timeout, like 1s (0: none)")
	fs.IntVar(&o.maxAttempts, "max-attempts", 0, "attempts before the task is dead (0: the master's default)")
	fs.StringVar(&o.idem, "idempotency-key", "", "submitting again with this key returns the first task's id")
	fs.IntVar(&o.count, "count", 0, "submit the task this many times")
	fs.StringVar(&o.file, "file", "", `submit one task JSON object per line of this file ("-": stdin)`)
	fs.IntVar(&o.batch, "batch", 1000, "tasks per request, with --count or --file")
	fs.IntVar(&o.concurrency, "concurrency", 4, "requests in flight, with --count or --file")
	fs.BoolVar(&o.wait, "wait", false, "wait for the tasks to finish and print the outcome")
	fs.DurationVar(&o.waitTimeout, "wait-timeout", 0, "with --wait, give up after this long (0: no limit)")
	fs.BoolVar(&o.json, "json", false, "print the task as JSON (one task)")
	pos, err := a.parse(cmd, fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(cmd, pos, 0); err != nil {
		return err
	}
	task, err := o.check(cmd, fs)
	if err != nil {
		return err
	}
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.close()
	if o.count == 0 && o.file == "" {
		return a.submitOne(ctx, c, &o, task)
	}
	return a.submitMany(ctx, c, &o, task)
}

// check validates the flags and returns the task JSON of --kind & co.
func (o *submitOptions) check(cmd *command, fs *flag.FlagSet) ([]byte, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case o.count < 0:
		return nil, usagef(cmd, "--count must be >= 1, got %d", o.count)
	case o.batch < 1:
		return nil, usagef(cmd, "--batch must be >= 1, got %d", o.batch)
	case o.concurrency < 1:
		return nil, usagef(cmd, "--concurrency must be >= 1, got %d", o.concurrency)
	case o.timeout < 0:
		return nil, usagef(cmd, "--timeout must be >= 0, got %v", o.timeout)
	case o.file != "" && set["count"]:
		return nil, usagef(cmd, "--count and --file exclude each other")
	case o.file != "":
		for _, name := range []string{"kind", "payload", "key", "timeout", "max-attempts", "idempotency-key"} {
			if set[name] {
				return nil, usagef(cmd, "--%s does not go with --file: each line of the file is a whole task", name)
			}
		}
		return nil, nil
	case o.kind == "":
		return nil, usagef(cmd, "--kind is required (sleep, cpu, echo, fail, …), or give --file")
	case o.count > 1 && o.idem != "":
		return nil, usagef(cmd, "--idempotency-key with --count %d would make a single task", o.count)
	case o.json && o.count > 0:
		return nil, usagef(cmd, "--json prints one task; it does not go with --count")
	}
	in := taskInput{Kind: o.kind, Key: o.key, MaxAttempts: o.maxAttempts, IdempotencyKey: o.idem}
	if o.payload != "" {
		if !json.Valid([]byte(o.payload)) {
			return nil, usagef(cmd, "--payload is not JSON: %s (a string payload is written '\"text\"')", o.payload)
		}
		in.Payload = json.RawMessage(o.payload)
	}
	if o.timeout > 0 {
		in.TimeoutMs = max(1, (o.timeout + time.Millisecond - 1).Milliseconds())
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode the task: %w", err)
	}
	return b, nil
}

func (a *app) submitOne(ctx context.Context, c *client, o *submitOptions, body []byte) error {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/v1/tasks", body, &out, 0); err != nil {
		return err
	}
	if !o.wait {
		if o.json {
			return printJSON(a.stdout, out)
		}
		fmt.Fprintln(a.stdout, out.ID)
		return nil
	}
	if o.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.waitTimeout)
		defer cancel()
	}
	t, err := c.waitTask(ctx, out.ID)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("task %s not finished after --wait-timeout %v", out.ID, o.waitTimeout)
	}
	if err != nil {
		return err
	}
	if o.json {
		if err := printJSON(a.stdout, t); err != nil {
			return err
		}
	} else {
		printTask(a.stdout, t)
	}
	if t.State != "succeeded" {
		return exitCode(exitFailed)
	}
	return nil
}

// batch is one request's worth of tasks.
type batch struct {
	first int    // index of its first task in the run
	n     int    // tasks in it
	body  []byte // {"tasks":[…]}
	lines []int  // --file: the line of each task
}

func (a *app) submitMany(ctx context.Context, c *client, o *submitOptions, task []byte) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	batches := make(chan batch, o.concurrency)
	var producer sync.WaitGroup
	producer.Add(1)
	name := o.file
	go func() {
		defer producer.Done()
		defer close(batches)
		var err error
		if o.file != "" {
			err = a.fileBatches(ctx, o.file, o.batch, batches)
		} else {
			err = countBatches(ctx, task, o.count, o.batch, batches)
		}
		if err != nil {
			cancel(err)
		}
	}()

	var done atomic.Int64
	var mu sync.Mutex
	var ids []string // with --wait
	bar := startProgress(a.stderr, "submitting", int64(o.count), &done)
	start := time.Now()
	var senders sync.WaitGroup
	for range o.concurrency {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for b := range batches {
				if ctx.Err() != nil {
					continue // drain so the producer ends
				}
				got, err := c.postBatch(ctx, b.body, b.n)
				var unreachable *unreachableError
				if errors.As(err, &unreachable) {
					cancel(err) // about the master, not about these tasks
					continue
				}
				if err != nil {
					cancel(b.explain(name, err))
					continue
				}
				done.Add(int64(b.n))
				if o.wait {
					mu.Lock()
					ids = append(ids, got...)
					mu.Unlock()
				}
			}
		}()
	}
	senders.Wait()
	producer.Wait()
	elapsed := time.Since(start)
	bar.finish()

	n := done.Load()
	if err := context.Cause(ctx); err != nil {
		what := "tasks"
		if o.count > 0 {
			what = fmt.Sprintf("of %d tasks", o.count)
		}
		var unreachable *unreachableError
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Fprintf(a.stderr, "flowctl: stopped after submitting %d %s\n", n, what)
			return err
		case errors.As(err, &unreachable) && n == 0:
			return err
		}
		return fmt.Errorf("%w; %d %s were submitted before it", err, n, what)
	}
	fmt.Fprintf(a.stdout, "submitted %s in %.2fs (%.0f tasks/s)\n", plural(int(n), "task"), elapsed.Seconds(), rate(n, elapsed))
	if !o.wait || n == 0 {
		return nil
	}
	return a.waitAll(ctx, c, ids, o)
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// countBatches sends count copies of task in batches of size.
func countBatches(ctx context.Context, task []byte, count, size int, out chan<- batch) error {
	full := batchBody(task, min(size, count))
	for first := 0; first < count; first += size {
		n := min(size, count-first)
		body := full
		if n != size {
			body = batchBody(task, n)
		}
		select {
		case out <- batch{first: first, n: n, body: body}:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

func batchBody(task []byte, n int) []byte {
	b := make([]byte, 0, len(`{"tasks":[]}`)+n*(len(task)+1))
	b = append(b, `{"tasks":[`...)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, task...)
	}
	return append(b, "]}"...)
}

// fileBatches reads one task JSON object per line of path (or stdin for
// "-") and sends them in batches of size. Blank lines are skipped.
func (a *app) fileBatches(ctx context.Context, path string, size int, out chan<- batch) error {
	var r io.Reader = a.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var cur batch
	send := func() bool {
		cur.body = append(cur.body, "]}"...)
		select {
		case out <- cur:
		case <-ctx.Done():
			return false
		}
		cur = batch{first: cur.first + cur.n}
		return true
	}
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if t := bytes.TrimSpace(raw); len(t) > 0 {
			if t[0] != '{' || !json.Valid(t) {
				return fmt.Errorf("%s:%d: not a JSON object: %.80s", path, line, t)
			}
			if cur.n == 0 {
				cur.body = append(cur.body[:0], `{"tasks":[`...)
			} else {
				cur.body = append(cur.body, ',')
			}
			cur.body = append(cur.body, t...)
			cur.lines = append(cur.lines, line)
			cur.n++
			if cur.n == size && !send() {
				return nil
			}
		}
		if err == io.EOF {
			break
		}
	}
	if cur.n > 0 {
		send()
	}
	return nil
}

// postBatch submits one batch, retrying while the queue is full.
func (c *client) postBatch(ctx context.Context, body []byte, n int) ([]string, error) {
	deadline := time.Now().Add(queueFullPatience)
	pause := 50 * time.Millisecond
	for {
		var out struct {
			IDs []string `json:"ids"`
		}
		err := c.do(ctx, http.MethodPost, "/api/v1/tasks/batch", body, &out, 0)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests && time.Now().Add(pause).Before(deadline) {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			pause = min(2*pause, time.Second)
			continue
		}
		if err != nil {
			return nil, err
		}
		if len(out.IDs) != n {
			return nil, fmt.Errorf("the master answered %d ids for %d tasks", len(out.IDs), n)
		}
		return out.IDs, nil
	}
}

// taskIndex finds the "tasks[i]: " the API puts before a task's error.
var taskIndex = regexp.MustCompile(`^tasks\[(\d+)\]: `)

// explain says which tasks a batch error is about: their numbers, or with
// --file the line of the task the master named.
func (b *batch) explain(file string, err error) error {
	var ae *apiError
	if b.lines != nil && errors.As(err, &ae) {
		if m := taskIndex.FindStringSubmatch(ae.Message); m != nil {
			if i, _ := strconv.Atoi(m[1]); i < len(b.lines) {
				return fmt.Errorf("%s:%d: %w", file, b.lines[i], err)
			}
		}
	}
	if b.lines != nil {
		return fmt.Errorf("%s lines %d-%d: %w", file, b.lines[0], b.lines[len(b.lines)-1], err)
	}
	return fmt.Errorf("tasks %d-%d: %w", b.first+1, b.first+b.n, err)
}

// sweepMin is the number of unfinished tasks above which waitAll reads
// finished tasks a page at a time instead of one request per task.
const sweepMin = 256

// listPage is the largest page GET /api/v1/tasks returns.
const listPage = 10000

// waitAll waits for every task and prints how many ended in each state.
//
// One request per task would bound the wait at the API's request rate,
// well below the rate tasks finish at. Tasks run roughly in the order they
// were submitted, so while many are unfinished waitAll long-polls the last
// one, then lists the finished states over the ids' range a page at a time
// and keeps what is still unfinished; it ends with one long-poll per task
// that is left (retried tasks, or tasks a key pinned to a busy worker).
func (a *app) waitAll(ctx context.Context, c *client, ids []string, o *submitOptions) error {
	if o.waitTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.waitTimeout)
		defer cancel()
	}
	w := &waiter{c: c, states: map[string]int{}}
	bar := startProgress(a.stderr, "waiting", int64(len(ids)), &w.done)
	start := time.Now()
	pending := slices.Clone(ids)
	slices.Sort(pending)
	var err error
	for len(pending) > sweepMin && err == nil {
		if _, err = c.waitTask(ctx, pending[len(pending)-1]); err != nil {
			break
		}
		var left []string
		if left, err = w.sweep(ctx, pending); err == nil && len(left) == len(pending) {
			break // the list does not show them finished yet: ask one by one
		}
		pending = left
	}
	if err == nil {
		err = w.each(ctx, pending, min(max(4*o.concurrency, 16), 64))
	}
	bar.finish()
	finished := w.done.Load()
	summary := outcome(w.states)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && o.waitTimeout > 0:
		fmt.Fprintf(a.stdout, "finished %d of %d tasks before --wait-timeout %v: %s\n", finished, len(ids), o.waitTimeout, summary)
		return exitCode(exitFailed)
	case err != nil:
		return fmt.Errorf("waiting for the tasks (%d of %d finished): %w", finished, len(ids), err)
	}
	fmt.Fprintf(a.stdout, "finished %s in %.2fs: %s\n", plural(int(finished), "task"), time.Since(start).Seconds(), summary)
	if w.states["succeeded"] != len(ids) {
		return exitCode(exitFailed)
	}
	return nil
}

// waiter tallies the outcome of the tasks it saw finish.
type waiter struct {
	c      *client
	done   atomic.Int64
	mu     sync.Mutex
	states map[string]int
}

func (w *waiter) finished(state string, n int) {
	w.mu.Lock()
	w.states[state] += n
	w.mu.Unlock()
	w.done.Add(int64(n))
}

// sweep lists every finished state from the first to the last of the
// sorted ids and returns the ids it did not find finished, still sorted.
func (w *waiter) sweep(ctx context.Context, sorted []string) ([]string, error) {
	left := make(map[string]bool, len(sorted))
	for _, id := range sorted {
		left[id] = true
	}
	first, last := sorted[0], sorted[len(sorted)-1]
	for _, state := range []string{"succeeded", "failed", "dead", "canceled"} {
		after := before(first)
		for {
			var page struct {
				Tasks []struct {
					ID string `json:"id"`
				} `json:"tasks"`
			}
			q := url.Values{"state": {state}, "limit": {strconv.Itoa(listPage)}, "after": {after}}
			if err := w.c.do(ctx, http.MethodGet, "/api/v1/tasks?"+q.Encode(), nil, &page, 0); err != nil {
				return nil, err
			}
			n, past := 0, false
			for _, t := range page.Tasks {
				if t.ID > last {
					past = true
					break
				}
				if left[t.ID] {
					delete(left, t.ID)
					n++
				}
			}
			w.finished(state, n)
			if past || len(page.Tasks) < listPage {
				break
			}
			after = page.Tasks[len(page.Tasks)-1].ID
		}
	}
	out := make([]string, 0, len(left))
	for _, id := range sorted {
		if left[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// before is the id just below id, the exclusive cursor that lists from
// id on: ids are 16 hex digits. Any other id lists from the start.
func before(id string) string {
	n, err := strconv.ParseUint(id, 16, 64)
	if err != nil || len(id) != 16 || n == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", n-1)
}

// each long-polls every id, parallel at a time.
func (w *waiter) each(ctx context.Context, ids []string, parallel int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan string)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range next {
				t, err := w.c.waitTask(ctx, id)
				if err != nil {
					cancel(err)
					continue
				}
				w.finished(t.State, 1)
			}
		}()
	}
feed:
	for _, id := range ids {
		select {
		case next <- id:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// outcome lists the count of each state: "1998 succeeded, 2 dead".
func outcome(states map[string]int) string {
	order := []string{"succeeded", "failed", "dead", "canceled"}
	var parts []string
	for _, s := range order {
		if n := states[s]; n > 0 || s == "succeeded" {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	var other []string
	for s := range states {
		if !slices.Contains(order, s) {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	for _, s := range other {
		parts = append(parts, fmt.Sprintf("%d %s", states[s], s))
	}
	return strings.Join(parts, ", ")
}
