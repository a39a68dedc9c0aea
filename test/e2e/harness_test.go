// Package e2e drives the real binaries: it builds bin/master and the
// workers, starts real master processes with real worker processes, sends
// real signals and asserts on what happened, through the HTTP API, the
// shared region, the logs and /proc.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bins holds the binaries built once for all tests.
var bins struct {
	dir, master, worker, testworker, custom string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "afbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.master = filepath.Join(dir, "master")
	bins.worker = filepath.Join(dir, "worker")
	bins.testworker = filepath.Join(dir, "testworker")
	bins.custom = filepath.Join(dir, "custom-worker")
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The master is built with the race detector (its concurrency is the
	// product's core); workers without it, because the race runtime caps
	// a process at 8128 live goroutines and a worker runs 10,000 tasks.
	builds := [][]string{
		{"build", "-race", "-o", bins.master, "./cmd/master"},
		{"build", "-o", bins.worker, "./cmd/worker"},
		{"build", "-o", bins.testworker, "./test/e2e/testdata/testworker"},
		{"build", "-o", bins.custom, "./examples/custom-worker"},
		{"build", "-race", "-o", filepath.Join(dir, "flowctl"), "./cmd/flowctl"},
	}
	for _, b := range builds {
		cmd := exec.Command("go", b...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n", strings.Join(b, " "), err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// master is one running master process.
type master struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string
	RunDir string
	Data   string
	logs   *logBuffer
	exited chan struct{}
	err    error
}

type options struct {
	workers int
	args    []string
	env     []string
	runDir  string
	dataDir string
	store   string
}

// shortTemp makes a directory with a short path: Unix socket paths are
// limited to 108 bytes.
func shortTemp(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "af")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

var listenRE = regexp.MustCompile(`listening on (http://\S+)`)

func startMaster(t *testing.T, o options) *master {
	t.Helper()
	m, err := launchMaster(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func launchMaster(t *testing.T, o options) (*master, error) {
	t.Helper()
	if o.workers == 0 {
		o.workers = 2
	}
	if o.runDir == "" {
		o.runDir = filepath.Join(shortTemp(t), "run")
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(shortTemp(t), "data")
	}
	if o.store == "" {
		o.store = "memory"
	}
	args := []string{
		"--workers", strconv.Itoa(o.workers), "--listen", "127.0.0.1:0",
		"--run-dir", o.runDir, "--data-dir", o.dataDir, "--store", o.store,
		"--worker-bin", bins.worker, "--env-file", "",
	}
	args = append(args, o.args...)
	cmd := exec.Command(bins.master, args...)
	cmd.Env = append(os.Environ(), o.env...)
	logs := newLogBuffer()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &master{t: t, cmd: cmd, RunDir: o.runDir, Data: o.dataDir, logs: logs, exited: make(chan struct{})}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
			if mm := listenRE.FindStringSubmatch(sc.Text()); mm != nil {
				select {
				case urlCh <- mm[1]:
				default:
				}
			}
		}
	}()
	go func() {
		m.err = cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
		}
		if t.Failed() {
			t.Logf("master log:\n%s", m.logs.String())
		}
	})
	select {
	case u := <-urlCh:
		m.URL = u
		return m, nil
	case <-m.exited:
		return m, fmt.Errorf("master exited at start: %v\n%s", m.err, logs.String())
	case <-time.After(60 * time.Second):
		return m, fmt.Errorf("master did not start in 60s\n%s", logs.String())
	}
}

// waitExit waits for the master to exit and returns its exit code.
func (m *master) waitExit(timeout time.Duration) int {
	m.t.Helper()
	select {
	case <-m.exited:
	case <-time.After(timeout):
		m.t.Fatalf("master still running after %v", timeout)
	}
	if m.cmd.ProcessState == nil {
		return -1
	}
	return m.cmd.ProcessState.ExitCode()
}

func (m *master) signal(sig syscall.Signal) {
	m.t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		m.t.Fatal(err)
	}
}

// worker is the JSON view of one slot.
type worker struct {
	Slot       int    `json:"slot"`
	PID        int    `json:"pid"`
	Generation uint64 `json:"generation"`
	State      string `json:"state"`
	Capacity   int64  `json:"capacity"`
	InFlight   int64  `json:"in_flight"`
	Completed  int64  `json:"completed"`
	Restarts   int64  `json:"restarts"`
	BackoffMs  int64  `json:"backoff_ms"`
}

func (m *master) workers() []worker {
	m.t.Helper()
	var out struct {
		Workers []worker `json:"workers"`
	}
	m.getJSON("/api/v1/workers", &out)
	return out.Workers
}

func (m *master) stats() map[string]int64 {
	m.t.Helper()
	out := map[string]int64{}
	m.getJSON("/api/v1/stats", &out)
	return out
}

func (m *master) getJSON(path string, v any) int {
	m.t.Helper()
	resp, err := http.Get(m.URL + path)
	if err != nil {
		m.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			m.t.Fatalf("GET %s: %d %s: %v", path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode
}

// do sends a request and decodes the JSON answer into v (if not nil).
func (m *master) do(method, path string, body any, v any) (int, []byte) {
	m.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			m.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, m.URL+path, r)
	if err != nil {
		m.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if v != nil && len(out) > 0 {
		if err := json.Unmarshal(out, v); err != nil {
			m.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, out, err)
		}
	}
	return resp.StatusCode, out
}

// submit posts a batch (split to the API's limit) and returns the ids.
func (m *master) submit(tasks []map[string]any) []string {
	m.t.Helper()
	var ids []string
	for start := 0; start < len(tasks); start += 10000 {
		end := min(start+10000, len(tasks))
		var out struct {
			IDs []string `json:"ids"`
		}
		code, body := m.do("POST", "/api/v1/tasks/batch", map[string]any{"tasks": tasks[start:end]}, &out)
		if code != http.StatusAccepted {
			m.t.Fatalf("batch submit: %d %s", code, body)
		}
		ids = append(ids, out.IDs...)
	}
	return ids
}

type taskView struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	State      string          `json:"state"`
	Attempts   int             `json:"attempts"`
	WorkerSlot *int            `json:"worker_slot"`
	Result     json.RawMessage `json:"result"`
	Error      string          `json:"error"`
}

func (m *master) task(id string) taskView {
	m.t.Helper()
	var v taskView
	if code := m.getJSON("/api/v1/tasks/"+id, &v); code != http.StatusOK {
		m.t.Fatalf("GET task %s: %d", id, code)
	}
	return v
}

// tasks fetches many tasks concurrently.
func (m *master) tasks(ids []string) []taskView {
	m.t.Helper()
	out := make([]taskView, len(ids))
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	next := make(chan int)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				resp, err := client.Get(m.URL + "/api/v1/tasks/" + ids[i])
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				err = json.NewDecoder(resp.Body).Decode(&out[i])
				resp.Body.Close()
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		m.t.Fatalf("fetch tasks: %v", err)
	default:
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (m *master) waitReady(n int) []worker {
	m.t.Helper()
	var ws []worker
	waitFor(m.t, 30*time.Second, fmt.Sprintf("%d ready workers", n), func() bool {
		ws = m.workers()
		ready := 0
		for _, w := range ws {
			if w.State == "ready" {
				ready++
			}
		}
		return ready == n
	})
	return ws
}

// waitStat waits until a global counter reaches want.
func (m *master) waitStat(name string, want int64, timeout time.Duration) {
	m.t.Helper()
	var got int64
	deadline := time.Now().Add(timeout)
	for {
		got = m.stats()[name]
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("stat %s = %d after %v, want %d", name, got, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// logBuffer is a concurrency-safe log sink that tests can wait on.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLogBuffer() *logBuffer { return &logBuffer{} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) waitFor(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(l.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("log never matched %s in %v", re, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
