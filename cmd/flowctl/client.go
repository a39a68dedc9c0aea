package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// requestTimeout bounds a call that does not wait for anything.
const requestTimeout = 30 * time.Second

// client calls the master's HTTP JSON API.
type client struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

func newClient(base, token string) *client {
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        128,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     30 * time.Second,
	}
	return &client{base: base, token: token, http: &http.Client{Transport: tr}}
}

// close releases idle connections.
func (c *client) close() { c.http.CloseIdleConnections() }

// apiError is an answer of the master outside 2xx: {"error":{"code","message"}}.
type apiError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *apiError) Error() string {
	hint := ""
	if e.Status == http.StatusUnauthorized {
		hint = "; pass --token or set " + envToken
	}
	return fmt.Sprintf("%s (%s, HTTP %d%s)", e.Message, e.Code, e.Status, hint)
}

// unreachableError is a master that could not be reached at all.
type unreachableError struct {
	base string
	err  error
}

func (e *unreachableError) Error() string {
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case errors.Is(e.err, syscall.ECONNREFUSED):
		return fmt.Sprintf("no master at %s (connection refused) — start one with make run", e.base)
	case errors.As(e.err, &dns):
		return fmt.Sprintf("no master at %s (%v)", e.base, dns)
	case errors.As(e.err, &nerr) && nerr.Timeout():
		return fmt.Sprintf("the master at %s did not answer in time (%v)", e.base, e.err)
	}
	return fmt.Sprintf("cannot reach the master at %s: %v", e.base, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// do sends a request with a JSON body (nil for none) and decodes a 2xx JSON
// answer into out (nil to drop it). timeout 0 means requestTimeout.
func (c *client) do(ctx context.Context, method, path string, body []byte, out any, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = requestTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return perr // interrupted, or the caller's deadline
		}
		return &unreachableError{base: c.base, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answerError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: the master's answer is not the expected JSON (%v): %.200s", method, path, err, data)
	}
	return nil
}

// answerError turns a non-2xx answer into an apiError.
func answerError(resp *http.Response, data []byte) error {
	e := &apiError{Status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &body) == nil && body.Error.Message != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	} else {
		e.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "_"))
		e.Message = strings.TrimSpace(string(data))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// task is the API's view of a task.
type task struct {
	ID              string          `json:"id"`
	Kind            string          `json:"kind"`
	State           string          `json:"state"`
	Attempts        int             `json:"attempts"`
	MaxAttempts     int             `json:"max_attempts"`
	WorkerSlot      *int            `json:"worker_slot"`
	Key             string          `json:"key"`
	Result          json.RawMessage `json:"result"`
	Error           string          `json:"error"`
	Progress        float64         `json:"progress"`
	ProgressMessage string          `json:"progress_message"`
	CreatedAt       *time.Time      `json:"created_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	DurationMs      *float64        `json:"duration_ms"`
}

// terminal reports whether a task in state s is finished.
func terminal(s string) bool {
	switch s {
	case "succeeded", "failed", "dead", "canceled":
		return true
	}
	return false
}

// worker is the API's view of a worker slot.
type worker struct {
	Slot           int     `json:"slot"`
	PID            int     `json:"pid"`
	Generation     uint64  `json:"generation"`
	State          string  `json:"state"`
	Capacity       int64   `json:"capacity"`
	InFlight       int64   `json:"in_flight"`
	Completed      int64   `json:"completed"`
	Failed         int64   `json:"failed"`
	Restarts       int64   `json:"restarts"`
	RSSBytes       int64   `json:"rss_bytes"`
	CPUPercent     float64 `json:"cpu_percent"`
	UptimeMs       int64   `json:"uptime_ms"`
	HeartbeatAgeMs int64   `json:"heartbeat_age_ms"`
	BackoffMs      int64   `json:"backoff_ms"`
}

func (c *client) workers(ctx context.Context) ([]worker, error) {
	var out struct {
		Workers []worker `json:"workers"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/workers", nil, &out, 0); err != nil {
		return nil, err
	}
	return out.Workers, nil
}

// waitPoll is how long one GET ?wait= long-polls (the master caps it at
// its --max-wait, 60s by default).
const waitPoll = 30 * time.Second

// getTask reads a task; wait > 0 long-polls up to that long for it to
// finish.
func (c *client) getTask(ctx context.Context, id string, wait time.Duration) (*task, error) {
	path := "/api/v1/tasks/" + id
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var t task
	if err := c.do(ctx, http.MethodGet, path, nil, &t, wait+requestTimeout); err != nil {
		return nil, err
	}
	return &t, nil
}

// waitTask polls until the task is finished or ctx ends.
func (c *client) waitTask(ctx context.Context, id string) (*task, error) {
	for {
		t, err := c.getTask(ctx, id, waitPoll)
		if err != nil {
			return nil, err
		}
		if terminal(t.State) {
			return t, nil
		}
		if err := ctx.Err(); err != nil {
			return t, err
		}
	}
}
