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
	if leaked := leakedRegions(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "shared regions left behind by the masters of this run: %s\n", strings.Join(leaked, ", "))
		code = 1
	}
	os.Exit(code)
}

// regionFile is one master's shared-memory file (on /dev/shm), found when
// the master is up; dev and ino tell it apart from a later file at the same
// path (a new master that happens to get the same pid).
type regionFile struct {
	path     string
	dev, ino uint64
}

// exists reports whether the file that was found is still there.
func (r regionFile) exists() bool {
	var st syscall.Stat_t
	if err := syscall.Stat(r.path, &st); err != nil {
		return false
	}
	return uint64(st.Dev) == r.dev && st.Ino == r.ino
}

// regions records every region a master of this run made, for the leak
// check at the end of TestMain.
var regions struct {
	sync.Mutex
	all []regionFile
}

func leakedRegions() []string {
	regions.Lock()
	defer regions.Unlock()
	var out []string
	for _, r := range regions.all {
		if r.exists() {
			out = append(out, r.path)
		}
	}
	return out
}

// findRegion locates the region of the master with pid that runs in
// runDir: the run dir's "shm" link names it (the master falls back to the
// run dir itself when there is no /dev/shm).
func findRegion(runDir string, pid int) (regionFile, bool) {
	path, err := os.Readlink(filepath.Join(runDir, "shm"))
	if err != nil {
		path = filepath.Join("/dev/shm", fmt.Sprintf("atomicflow-%d-%d", os.Getuid(), pid))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return regionFile{}, false
	}
	return regionFile{path: path, dev: uint64(st.Dev), ino: st.Ino}, true
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
	// region is the master's shared-memory file (zero if it never got that
	// far); stop removes it when the master could not.
	region   regionFile
	stopOnce sync.Once
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
	cmd.Env = os.Environ()
	// The master is built with -race: skip the race runtime's 1 s sleep at
	// exit, which every stop would pay (a race still shows in its log and
	// makes it exit 66).
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Env = append(cmd.Env, o.env...)
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
		m.stop()
		if strings.Contains(m.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("master pid %d reported a data race (its log follows)", cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("master log:\n%s", m.logs.String())
		}
	})
	select {
	case u := <-urlCh:
		m.URL = u
		// The region exists before the master prints its address.
		if r, ok := findRegion(o.runDir, cmd.Process.Pid); ok {
			m.region = r
			regions.Lock()
			regions.all = append(regions.all, r)
			regions.Unlock()
		}
		return m, nil
	case <-m.exited:
		return m, fmt.Errorf("master exited at start: %v\n%s", m.err, logs.String())
	case <-time.After(60 * time.Second):
		return m, fmt.Errorf("master did not start in 60s\n%s", logs.String())
	}
}

// How a test's cleanup stops a master that still runs. One with nothing
// in flight exits within well under a second of SIGTERM; one still running
// long tasks would wait for them up to its --shutdown-timeout, so after
// drainGrace it gets a second SIGTERM (the master ignores one within 1 s
// of the first), which stops it at once with its unfinished tasks stored,
// and SIGKILL only if it is still there stopGrace later.
const (
	drainGrace = 1500 * time.Millisecond
	stopGrace  = 5 * time.Second
)

// stop ends the master if it still runs, the way an operator would:
// SIGTERM (the master drains, stops its workers and removes its region
// and sockets itself), a second SIGTERM if it is still draining after
// drainGrace, SIGKILL if it is not gone stopGrace after that. Then it
// removes the master's region if it is still on /dev/shm (a master killed
// with -9, here or by the test, cannot remove it). It reports whether the
// master exited without SIGKILL (true too when it had exited before). Only
// the first call does anything.
func (m *master) stop() (graceful bool) {
	graceful = true
	m.stopOnce.Do(func() {
		pid := m.cmd.Process.Pid
		for i, wait := range []time.Duration{drainGrace, stopGrace} {
			if m.hasExited() {
				break
			}
			if i > 0 {
				m.t.Logf("master pid %d still draining %v after SIGTERM: second SIGTERM", pid, drainGrace)
			}
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(wait):
			}
		}
		if !m.hasExited() {
			graceful = false
			m.t.Logf("master pid %d still running %v after the second SIGTERM: SIGKILL", pid, stopGrace)
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
		}
		if m.region.path != "" && m.region.exists() {
			if err := os.Remove(m.region.path); err != nil && !os.IsNotExist(err) {
				m.t.Errorf("remove the region of master pid %d: %v", pid, err)
			}
		}
	})
	return graceful
}

func (m *master) hasExited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
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
	CreatedAt  *time.Time      `json:"created_at"`
	StartedAt  *time.Time      `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at"`
}

// apiError is the body of every error answer.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// list returns every task in state, by id, paging GET /api/v1/tasks with
// the largest page the API allows: a few requests instead of one per task.
func (m *master) list(state string) map[string]taskView {
	m.t.Helper()
	out := map[string]taskView{}
	after := ""
	for {
		var page struct {
			Tasks []taskView `json:"tasks"`
			Next  string     `json:"next"`
		}
		path := "/api/v1/tasks?limit=10000&state=" + state
		if after != "" {
			path += "&after=" + after
		}
		if code := m.getJSON(path, &page); code != http.StatusOK {
			m.t.Fatalf("GET %s: %d", path, code)
		}
		for _, v := range page.Tasks {
			out[v.ID] = v
		}
		if page.Next == "" {
			return out
		}
		after = page.Next
	}
}

// allSucceeded waits until every one of ids is listed as succeeded and
// returns their views; it fails naming how many are not, and the first of
// them as GET /api/v1/tasks/{id} shows it.
func (m *master) allSucceeded(ids []string, timeout time.Duration) map[string]taskView {
	m.t.Helper()
	var done map[string]taskView
	var left []string
	deadline := time.Now().Add(timeout)
	for {
		done, left = m.list("succeeded"), left[:0]
		for _, id := range ids {
			if _, ok := done[id]; !ok {
				left = append(left, id)
			}
		}
		if len(left) == 0 {
			return done
		}
		if time.Now().After(deadline) {
			missing, notDone := 0, 0
			for _, v := range m.tasks(left) {
				if v.ID == "" {
					missing++
				} else {
					notDone++
				}
			}
			m.t.Fatalf("after %v, of %d tasks %d are missing and %d not succeeded; the first: %+v",
				timeout, len(ids), missing, notDone, m.tasks(left[:1])[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// workersInFlight is the sum of the in_flight counters the workers keep in
// their own slots: tasks whose handlers run, not tasks the master has
// handed over.
func (m *master) workersInFlight() int64 {
	m.t.Helper()
	var sum int64
	for _, w := range m.workers() {
		sum += w.InFlight
	}
	return sum
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
