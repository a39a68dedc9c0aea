package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// These tests drive flowctl the way a shell does, through run(): argv,
// environment, stdin in; exit code, stdout, stderr out.

type result struct {
	code           int
	stdout, stderr string
}

func flowctl(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	code := run(ctx, args, getenv, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (r result) check(t *testing.T, code int, stdout, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Fatalf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Fatalf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
	}{
		{"no command", nil, exitUsage, nil, []string{"Commands:", "submit", "top"}},
		{"help flag", []string{"--help"}, exitOK, []string{"Commands:", "submit", "status", "workers", "stats", "kill", "restart", "scale", "reload", "top", "-addr", "ATOMICFLOW_ADDR"}, nil},
		{"help command", []string{"help", "submit"}, exitOK, []string{"Usage: flowctl submit", "-count", "-concurrency", "Global flags:", "-token"}, nil},
		{"command help", []string{"top", "-h"}, exitOK, []string{"Usage: flowctl top", "-once", "-interval"}, nil},
		{"unknown command", []string{"frobnicate"}, exitUsage, nil, []string{`unknown command "frobnicate"`}},
		{"unknown flag", []string{"--nope"}, exitUsage, nil, []string{"flag provided but not defined: -nope"}},
		{"unknown command flag", []string{"stats", "--nope"}, exitUsage, nil, []string{"flowctl stats:", "not defined: -nope", "flowctl stats --help"}},
		{"no kind", []string{"submit"}, exitUsage, nil, []string{"--kind is required"}},
		{"bad payload", []string{"submit", "--kind", "echo", "--payload", "{nope"}, exitUsage, nil, []string{"--payload is not JSON"}},
		{"count and file", []string{"submit", "--count", "2", "--file", "x"}, exitUsage, nil, []string{"exclude each other"}},
		{"file and kind", []string{"submit", "--file", "x", "--kind", "echo"}, exitUsage, nil, []string{"--kind does not go with --file"}},
		{"idempotent count", []string{"submit", "--kind", "echo", "--count", "2", "--idempotency-key", "k"}, exitUsage, nil, []string{"single task"}},
		{"bad batch", []string{"submit", "--kind", "echo", "--count", "2", "--batch", "0"}, exitUsage, nil, []string{"--batch must be >= 1"}},
		{"status without id", []string{"status"}, exitUsage, nil, []string{"want <id>"}},
		{"extra argument", []string{"workers", "now"}, exitUsage, nil, []string{`unexpected argument "now"`}},
		{"bad slot", []string{"kill", "zero"}, exitUsage, nil, []string{`slot "zero" is not a slot number`}},
		{"bad scale", []string{"scale", "0"}, exitUsage, nil, []string{"N must be a number of workers >= 1"}},
		{"bad addr", []string{"--addr", "ftp://host", "workers"}, exitUsage, nil, []string{"is not an http:// address"}},
		{"addr with path", []string{"--addr", "http://host/x", "workers"}, exitUsage, nil, []string{"without a path"}},
		{"fast top", []string{"top", "--interval", "1ms"}, exitUsage, nil, []string{"--interval must be at least 10ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flowctl(t, nil, "", tt.args...).check(t, tt.code, tt.stdout, tt.stderr)
		})
	}
}

// fakeMaster answers the master's HTTP API from memory.
type fakeMaster struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	requests []request
	batches  []int        // task count of each batch, in arrival order
	full     atomic.Int32 // answer 429 to this many more batches
	state    string       // of every task
	pids     map[int]int  // slot -> pid
	nextID   int
}

type request struct {
	method, path, query, auth string
	body                      []byte
}

func newFakeMaster(t *testing.T) *fakeMaster {
	f := &fakeMaster{t: t, state: "succeeded", pids: map[int]int{0: 1000, 1: 1001}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		writeJSONTest(w, 202, map[string]string{"id": f.ids(1)[0]})
	})
	mux.HandleFunc("POST /api/v1/tasks/batch", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		if err := json.Unmarshal(f.last().body, &req); err != nil {
			writeJSONTest(w, 400, apiErr("bad_json", err.Error()))
			return
		}
		if f.full.Add(-1) >= 0 {
			writeJSONTest(w, 429, apiErr("queue_full", "queue full"))
			return
		}
		for i, task := range req.Tasks {
			if strings.Contains(string(task), `"nope"`) {
				writeJSONTest(w, 400, apiErr("unknown_kind", fmt.Sprintf(`tasks[%d]: unknown task kind "nope"`, i)))
				return
			}
		}
		f.mu.Lock()
		f.batches = append(f.batches, len(req.Tasks))
		f.mu.Unlock()
		writeJSONTest(w, 202, map[string][]string{"ids": f.ids(len(req.Tasks))})
	})
	mux.HandleFunc("GET /api/v1/tasks", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		f.mu.Lock()
		defer f.mu.Unlock()
		out := []task{}
		if q.Get("state") == f.state {
			for n := 1; n <= f.nextID && len(out) < limit; n++ {
				if id := fmt.Sprintf("%016x", n); id > q.Get("after") {
					out = append(out, task{ID: id, State: f.state})
				}
			}
		}
		writeJSONTest(w, 200, map[string]any{"tasks": out})
	})
	mux.HandleFunc("GET /api/v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if id == "ffff" {
			writeJSONTest(w, 404, apiErr("not_found", "task not found: ffff"))
			return
		}
		f.mu.Lock()
		st := f.state
		f.mu.Unlock()
		slot := 1
		writeJSONTest(w, 200, task{ID: id, Kind: "sleep", State: st, Attempts: 1, MaxAttempts: 3, WorkerSlot: &slot,
			Result: json.RawMessage(`{"slept_ms":5}`)})
	})
	mux.HandleFunc("DELETE /api/v1/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		writeJSONTest(w, 202, task{ID: r.PathValue("id"), State: "canceled"})
	})
	mux.HandleFunc("GET /api/v1/workers", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var ws []worker
		for slot := range len(f.pids) {
			ws = append(ws, worker{Slot: slot, PID: f.pids[slot], Generation: 1, State: "ready", Capacity: 10000, RSSBytes: 15 << 20, HeartbeatAgeMs: 20})
		}
		writeJSONTest(w, 200, map[string]any{"workers": ws})
	})
	mux.HandleFunc("GET /api/v1/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSONTest(w, 200, map[string]int64{"submitted": 5, "completed": 4, "in_flight": 1, "zz_new": 9})
	})
	mux.HandleFunc("POST /api/v1/workers/{slot}/{action}", func(w http.ResponseWriter, r *http.Request) {
		slot, _ := strconv.Atoi(r.PathValue("slot"))
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.pids[slot]; !ok {
			writeJSONTest(w, 404, apiErr("not_found", fmt.Sprintf("no slot %d", slot)))
			return
		}
		f.pids[slot] += 100
		writeJSONTest(w, 202, map[string]any{"slot": slot, "action": r.PathValue("action")})
	})
	mux.HandleFunc("POST /api/v1/scale", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Workers int `json:"workers"`
		}
		_ = json.Unmarshal(f.last().body, &req)
		f.mu.Lock()
		defer f.mu.Unlock()
		for slot := range req.Workers {
			if _, ok := f.pids[slot]; !ok {
				f.pids[slot] = 2000 + slot
			}
		}
		writeJSONTest(w, 202, map[string]any{"workers": req.Workers})
	})
	mux.HandleFunc("POST /api/v1/reload", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		for slot := range f.pids {
			f.pids[slot] += 500
		}
		writeJSONTest(w, 202, map[string]any{"reload": "started"})
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, request{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, auth: r.Header.Get("Authorization"), body: body})
		f.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeMaster) ids(n int) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, n)
	for i := range out {
		f.nextID++
		out[i] = fmt.Sprintf("%016x", f.nextID)
	}
	return out
}

// last is the newest request (the one being served, inside a handler).
func (f *fakeMaster) last() request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests[len(f.requests)-1]
}

// find returns the requests with method and path.
func (f *fakeMaster) find(method, path string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.requests {
		if r.method == method && r.path == path {
			out = append(out, r)
		}
	}
	return out
}

func writeJSONTest(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func apiErr(code, msg string) map[string]any {
	return map[string]any{"error": map[string]string{"code": code, "message": msg}}
}

func TestSubmit(t *testing.T) {
	f := newFakeMaster(t)
	env := map[string]string{envAddr: f.srv.URL}
	flowctl(t, env, "", "submit", "--kind", "sleep", "--payload", `{"ms":5}`, "--key", "k", "--timeout", "1500us", "--max-attempts", "2").
		check(t, exitOK, []string{"0000000000000001\n"}, nil)
	var got map[string]any
	if err := json.Unmarshal(f.find("POST", "/api/v1/tasks")[0].body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5.0}, "key": "k", "timeout_ms": 2.0, "max_attempts": 2.0}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("task sent %v, want %v", got, want)
	}

	flowctl(t, env, "", "submit", "--kind", "sleep", "--wait").
		check(t, exitOK, []string{"state     succeeded", "worker    slot 1", `result    {"slept_ms":5}`}, nil)
	if q := f.find("GET", "/api/v1/tasks/0000000000000002"); len(q) != 1 || q[0].query != "wait=30s" {
		t.Fatalf("wait requests %+v", q)
	}
	f.mu.Lock()
	f.state = "dead"
	f.mu.Unlock()
	flowctl(t, env, "", "submit", "--kind", "fail", "--wait", "--json").check(t, exitFailed, []string{`"state": "dead"`}, nil)
}

func TestSubmitMany(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tasks.jsonl")
	if err := os.WriteFile(file, []byte("{\"kind\":\"echo\"}\n\n  {\"kind\":\"sleep\",\"payload\":{\"ms\":1}}\n{\"kind\":\"echo\"}"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"kind\":\"echo\"}\n[1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknown := filepath.Join(dir, "unknown.jsonl")
	if err := os.WriteFile(unknown, []byte("{\"kind\":\"echo\"}\n\n{\"kind\":\"nope\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		args           []string
		stdin          string
		full           int32 // 429s before the master accepts
		code           int
		batches        []int
		stdout, stderr []string
	}{
		{name: "count", args: []string{"--kind", "echo", "--count", "2500", "--batch", "1000", "--concurrency", "3"},
			batches: []int{500, 1000, 1000}, stdout: []string{"submitted 2500 tasks in ", " tasks/s)"}},
		{name: "count and wait", args: []string{"--kind", "echo", "--count", "10", "--batch", "4", "--wait"},
			batches: []int{2, 4, 4}, stdout: []string{"submitted 10 tasks", "finished 10 tasks in", ": 10 succeeded"}},
		{name: "many waited for by pages", args: []string{"--kind", "echo", "--count", "1000", "--batch", "250", "--wait"},
			batches: []int{250, 250, 250, 250}, stdout: []string{"submitted 1000 tasks", ": 1000 succeeded"}},
		{name: "queue full is retried", args: []string{"--kind", "echo", "--count", "3"}, full: 2,
			batches: []int{3}, stdout: []string{"submitted 3 tasks"}},
		{name: "file", args: []string{"--file", file, "--batch", "2"},
			batches: []int{1, 2}, stdout: []string{"submitted 3 tasks"}},
		{name: "stdin", args: []string{"--file", "-"}, stdin: "{\"kind\":\"echo\"}\n{\"kind\":\"echo\"}\n",
			batches: []int{2}, stdout: []string{"submitted 2 tasks"}},
		{name: "bad line", args: []string{"--file", bad}, code: exitFailed, stderr: []string{"bad.jsonl:2: not a JSON object: [1]"}},
		{name: "refused line", args: []string{"--file", unknown}, code: exitFailed,
			stderr: []string{`unknown.jsonl:3: tasks[1]: unknown task kind "nope" (unknown_kind, HTTP 400); 0 tasks were submitted`}},
		{name: "missing file", args: []string{"--file", filepath.Join(dir, "none")}, code: exitFailed, stderr: []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeMaster(t)
			f.full.Store(tt.full)
			r := flowctl(t, map[string]string{envAddr: f.srv.URL}, tt.stdin, append([]string{"submit"}, tt.args...)...)
			r.check(t, tt.code, tt.stdout, tt.stderr)
			f.mu.Lock()
			got := slices.Sorted(slices.Values(f.batches))
			f.mu.Unlock()
			if !slices.Equal(got, tt.batches) {
				t.Fatalf("batches %v, want %v", got, tt.batches)
			}
			// Waiting for many tasks reads them by pages, not one by one.
			f.mu.Lock()
			perTask := 0
			for _, r := range f.requests {
				if r.method == "GET" && strings.HasPrefix(r.path, "/api/v1/tasks/") {
					perTask++
				}
			}
			f.mu.Unlock()
			if tt.name == "many waited for by pages" && perTask > 5 {
				t.Fatalf("%d requests for single tasks while waiting for 1000", perTask)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	f := newFakeMaster(t)
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr []string
		method, path   string // a request the command must have sent
		body           string
	}{
		{name: "status", args: []string{"status", "00ab", "--wait", "5s"}, stdout: []string{"id        00ab", "attempts  1 of 3"},
			method: "GET", path: "/api/v1/tasks/00ab"},
		{name: "status json", args: []string{"status", "--json", "00ab"}, stdout: []string{`"id": "00ab"`, `"worker_slot": 1`}},
		{name: "status unknown", args: []string{"status", "ffff"}, code: exitFailed, stderr: []string{"flowctl: task not found: ffff (not_found, HTTP 404)"}},
		{name: "cancel", args: []string{"cancel", "00cd"}, stdout: []string{"task 00cd canceled"}, method: "DELETE", path: "/api/v1/tasks/00cd"},
		{name: "workers", args: []string{"workers"}, stdout: []string{"SLOT", "PID", "HEARTBEAT", "1000", "1001", "15.0 MiB", "20ms"}},
		{name: "stats", args: []string{"stats"}, stdout: []string{"submitted  5\n", "in flight  1\n", "zz new     9\n"}},
		{name: "kill", args: []string{"kill", "0"}, stdout: []string{"slot 0: kill sent to pid 1000"}, method: "POST", path: "/api/v1/workers/0/kill"},
		{name: "restart and wait", args: []string{"restart", "1", "--wait"}, stdout: []string{"slot 1: pid 1001 replaced by pid 1101"},
			method: "POST", path: "/api/v1/workers/1/restart"},
		{name: "kill unknown slot", args: []string{"kill", "9"}, code: exitFailed, stderr: []string{"no slot 9 (not_found, HTTP 404)"}},
		{name: "scale", args: []string{"scale", "3", "--wait"}, stdout: []string{"3 workers ready in"}, method: "POST", path: "/api/v1/scale", body: `{"workers":3}`},
		{name: "reload", args: []string{"reload", "--wait"}, stdout: []string{"reloaded 3 workers in"}, method: "POST", path: "/api/v1/reload"},
		{name: "token", args: []string{"--token", "s3cret", "cancel", "00ef"}, method: "DELETE", path: "/api/v1/tasks/00ef"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := flowctl(t, map[string]string{envAddr: f.srv.URL}, "", tt.args...)
			r.check(t, tt.code, tt.stdout, tt.stderr)
			if tt.path == "" {
				return
			}
			reqs := f.find(tt.method, tt.path)
			if len(reqs) == 0 {
				t.Fatalf("no %s %s sent", tt.method, tt.path)
			}
			if tt.body != "" && string(reqs[0].body) != tt.body {
				t.Fatalf("body %s, want %s", reqs[0].body, tt.body)
			}
		})
	}
	if r := f.find("DELETE", "/api/v1/tasks/00ef"); r[0].auth != "Bearer s3cret" {
		t.Fatalf("authorization %q", r[0].auth)
	}
	// The environment's token counts when --token is not given.
	flowctl(t, map[string]string{envAddr: f.srv.URL, envToken: "fromenv"}, "", "cancel", "00ff").check(t, exitOK, nil, nil)
	if r := f.find("DELETE", "/api/v1/tasks/00ff"); r[0].auth != "Bearer fromenv" {
		t.Fatalf("authorization %q", r[0].auth)
	}
	// A --help never shows the token.
	if r := flowctl(t, map[string]string{envToken: "fromenv"}, "", "--help"); strings.Contains(r.stdout, "fromenv") {
		t.Fatal("--help shows the token from the environment")
	}
}

func TestNoMaster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	want := fmt.Sprintf("flowctl: no master at http://%s (connection refused) — start one with make run\n", addr)
	for _, args := range [][]string{{"workers"}, {"submit", "--kind", "echo"}, {"submit", "--kind", "echo", "--count", "5"}, {"stats"}, {"reload"}} {
		r := flowctl(t, nil, "", append([]string{"--addr", addr}, args...)...)
		r.check(t, exitFailed, nil, []string{want})
	}
}

func TestTop(t *testing.T) {
	runDir := t.TempDir()
	region, err := shm.Create(filepath.Join(t.TempDir(), "region"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer region.Close()
	if err := os.Symlink(region.Path(), filepath.Join(runDir, "shm")); err != nil {
		t.Fatal(err)
	}
	region.Counter(shm.Submitted).Store(7)
	region.Counter(shm.Completed).Store(5)
	region.Slot(0).SetIdentity(shm.Identity{PID: 424242, Generation: 2, State: shm.StateReady, Started: time.Now()})
	region.Slot(2).SetIdentity(shm.Identity{PID: 434343, Generation: 1, State: shm.StateBackoff, BackoffUntil: time.Now().Add(time.Minute)})

	r := flowctl(t, nil, "", "top", "--once", "--interval", "20ms", "--run-dir", runDir)
	r.check(t, exitOK, []string{
		fmt.Sprintf("master pid %d", os.Getpid()), "3 slots", "submitted 7", "completed 5",
		"per second:  submitted 0.0", "SLOT", "424242", "ready", "434343", "backoff",
	}, nil)
	if strings.Contains(r.stdout, clearScreen) {
		t.Fatal("--once clears the screen")
	}
	// Slot 1 was never used: no line for it.
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "1 ") {
			t.Fatalf("unused slot listed: %q", line)
		}
	}

	missing := filepath.Join(t.TempDir(), "nothing")
	flowctl(t, map[string]string{envRunDir: missing}, "", "top", "--once").check(t, exitFailed, nil,
		[]string{fmt.Sprintf("no master running with run dir %s (no shared region at %s/shm)", missing, missing)})

	// Live mode ends cleanly on Ctrl-C (ctx canceled).
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	code := run(ctx, []string{"top", "--interval", "50ms", "--run-dir", runDir}, func(string) string { return "" }, nil, &out, io.Discard)
	if code != exitOK || strings.Count(out.String(), "atomicflow top") < 3 {
		t.Fatalf("live top: exit %d, %d frames:\n%s", code, strings.Count(out.String(), "atomicflow top"), out.String())
	}
}

func TestFormat(t *testing.T) {
	bytesTests := []struct {
		n    int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {15 << 20, "15.0 MiB"}, {3 << 30, "3.0 GiB"}}
	for _, tt := range bytesTests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
	msTests := []struct {
		ms   int64
		want string
	}{{0, "0ms"}, {45, "45ms"}, {3200, "3.2s"}, {302_000, "5m2s"}, {7_380_000, "2h3m"}}
	for _, tt := range msTests {
		if got := humanMs(tt.ms); got != tt.want {
			t.Errorf("humanMs(%d) = %q, want %q", tt.ms, got, tt.want)
		}
	}
	var done atomic.Int64
	done.Store(50)
	p := &progress{label: "submitting", total: 200, done: &done, start: time.Now().Add(-time.Second)}
	if got := p.line(p.start.Add(time.Second)); got != "submitting [=======                       ] 50/200  25%  50/s" {
		t.Errorf("progress line %q", got)
	}
	p.total = 0
	if got := p.line(p.start.Add(time.Second)); got != "submitting 50 tasks  50/s" {
		t.Errorf("progress line without a total %q", got)
	}
}
