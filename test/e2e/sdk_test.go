package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPanickingHandlerFailsOnlyItsTask(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--worker-bin", bins.testworker}})
	before := m.waitReady(1)
	var bad, good struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "panic", "max_attempts": 1}, &bad)
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "echo", "payload": 7}, &good)
	var v taskView
	m.getJSON("/api/v1/tasks/"+bad.ID+"?wait=10s", &v)
	if v.State != "dead" || !strings.Contains(v.Error, "panic: handler blew up") {
		t.Fatalf("panicking task: %+v", v)
	}
	m.getJSON("/api/v1/tasks/"+good.ID+"?wait=10s", &v)
	if v.State != "succeeded" || string(v.Result) != "7" {
		t.Fatalf("other task: %+v", v)
	}
	if w := m.workers()[0]; w.PID != before[0].PID || w.Restarts != 0 {
		t.Fatalf("the worker died of a handler panic: %+v", w)
	}
}

func TestProgressShowsInTheAPI(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--worker-bin", bins.testworker}})
	m.waitReady(1)
	var id struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "progress"}, &id)
	var v struct {
		State           string  `json:"state"`
		Progress        float64 `json:"progress"`
		ProgressMessage string  `json:"progress_message"`
	}
	waitFor(t, 5*time.Second, "progress 0.5", func() bool {
		m.getJSON("/api/v1/tasks/"+id.ID, &v)
		return v.Progress == 0.5 && v.ProgressMessage == "halfway" && v.State == "running"
	})
	m.getJSON("/api/v1/tasks/"+id.ID+"?wait=10s", &v)
	if v.State != "succeeded" || v.Progress != 1 {
		t.Fatalf("finished task: %+v", v)
	}
}

func stopLines(t *testing.T, file string) map[int]bool {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, l := range strings.Fields(strings.ReplaceAll(string(b), "stop", "")) {
		pid, _ := strconv.Atoi(l)
		out[pid] = true
	}
	return out
}

func TestStopHookRunsOnDrainAndSIGTERM(t *testing.T) {
	stopFile := filepath.Join(shortTemp(t), "stops")
	m := startMaster(t, options{workers: 2, args: []string{"--worker-bin", bins.testworker}, env: []string{"TESTWORKER_STOP_FILE=" + stopFile}})
	ws := m.waitReady(2)
	// Drain (graceful restart from the API).
	if code, body := m.do("POST", "/api/v1/workers/0/restart", nil, nil); code != 202 {
		t.Fatalf("restart: %d %s", code, body)
	}
	waitFor(t, 10*time.Second, "stop hook of the drained worker", func() bool { return stopLines(t, stopFile)[ws[0].PID] })
	// SIGTERM sent to a worker itself.
	if err := syscall.Kill(ws[1].PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "stop hook of the SIGTERMed worker", func() bool { return stopLines(t, stopFile)[ws[1].PID] })
	// SIGTERM to the master: every worker's hook runs before it exits.
	now := m.waitReady(2)
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	got := stopLines(t, stopFile)
	for _, w := range now {
		if !got[w.PID] {
			t.Fatalf("stop hook did not run for pid %d on master SIGTERM: %v", w.PID, got)
		}
	}
}

// A worker runs at most the smaller of its own Config.Capacity and the
// master's --capacity (default 10,000), announces that figure, and the
// master keeps no more than that in flight on it.
func TestWorkerCapacityIsTheSmallerFigure(t *testing.T) {
	tests := []struct {
		name           string
		master, worker string // "" leaves the flag or the env var out
		want           int64
	}{
		{"the worker's below the master's default", "", "7", 7},
		{"the master's below the worker's", "3", "7", 3},
		{"the master's when the worker sets none", "5", "", 5},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := options{workers: 1, args: []string{"--worker-bin", bins.testworker}}
			if tt.master != "" {
				o.args = append(o.args, "--capacity", tt.master)
			}
			if tt.worker != "" {
				o.env = []string{"TESTWORKER_CAPACITY=" + tt.worker}
			}
			m := startMaster(t, o)
			w := m.waitReady(1)[0]
			if w.Capacity != tt.want {
				t.Fatalf("GET /api/v1/workers: capacity %d, want %d", w.Capacity, tt.want)
			}
			if i > 0 {
				return
			}
			// The master's credit follows the worker's figure: 20 tasks,
			// 7 run, 13 wait.
			m.submit(sleepTasks(20, 1500))
			waitFor(t, 10*time.Second, "7 in flight and 13 queued", func() bool {
				st := m.stats()
				return st["in_flight"] == tt.want && st["queued"] == 20-tt.want
			})
			time.Sleep(200 * time.Millisecond)
			if st, w := m.stats(), m.workers()[0]; st["in_flight"] != tt.want || w.InFlight != tt.want {
				t.Fatalf("in flight %d (worker: %d), want %d", st["in_flight"], w.InFlight, tt.want)
			}
		})
	}
}

func hookLines(t *testing.T, file, word string) []int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var pids []int
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == word {
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		}
	}
	return pids
}

// OnStart runs in the new process before its slot is ready: while the
// hook runs the slot shows "starting" and gets no task.
func TestStartHookRunsBeforeReady(t *testing.T) {
	dir := shortTemp(t)
	startFile, hold := filepath.Join(dir, "starts"), filepath.Join(dir, "hold")
	m := startMaster(t, options{workers: 1, args: []string{"--worker-bin", bins.testworker},
		env: []string{"TESTWORKER_START_FILE=" + startFile, "TESTWORKER_START_HOLD=" + hold}})
	old := m.waitReady(1)[0]
	if got := hookLines(t, startFile, "start"); !slices.Equal(got, []int{old.PID}) {
		t.Fatalf("start hook ran for %v, want once, for the first worker (pid %d)", got, old.PID)
	}

	// Hold the next start hook, and replace the worker.
	if err := os.WriteFile(hold, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := m.do("POST", "/api/v1/workers/0/kill", nil, nil); code != 202 {
		t.Fatalf("kill: %d %s", code, body)
	}
	var pid int
	waitFor(t, 10*time.Second, "the replacement's start hook", func() bool {
		got := hookLines(t, startFile, "start")
		if len(got) == 2 {
			pid = got[1]
		}
		return pid != 0
	})
	var id struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "echo", "payload": 1}, &id)
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		w := m.workers()[0]
		if w.State != "starting" || w.Generation != old.Generation+1 {
			t.Fatalf("while the start hook of pid %d runs, the slot is %s (gen %d), want starting (gen %d)", pid, w.State, w.Generation, old.Generation+1)
		}
		if v := m.task(id.ID); v.State != "queued" {
			t.Fatalf("a task is %s while the only worker's start hook runs, want queued", v.State)
		}
	}

	if err := os.Remove(hold); err != nil {
		t.Fatal(err)
	}
	w := m.waitReady(1)[0]
	if w.PID != pid {
		t.Fatalf("ready worker pid %d, the start hook ran in pid %d", w.PID, pid)
	}
	var v taskView
	m.getJSON("/api/v1/tasks/"+id.ID+"?wait=10s", &v)
	if v.State != "succeeded" {
		t.Fatalf("task after the start hook: %+v", v)
	}
	if got := hookLines(t, startFile, "start"); len(got) != 2 {
		t.Fatalf("start hook ran %d times, want 2: %v", len(got), got)
	}
}

// An OnStart that fails makes the worker exit; the master says why, backs
// the slot off and forks it again, and stays up, with its other workers
// undisturbed. The slot recovers when the hook succeeds again.
func TestStartHookErrorBacksTheSlotOff(t *testing.T) {
	dir := shortTemp(t)
	startFile, fail := filepath.Join(dir, "starts"), filepath.Join(dir, "fail")
	m := startMaster(t, options{workers: 2, args: []string{"--worker-bin", bins.testworker},
		env: []string{"TESTWORKER_START_FILE=" + startFile, "TESTWORKER_START_FAIL=" + fail}})
	before := m.waitReady(2)

	if err := os.WriteFile(fail, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := m.do("POST", "/api/v1/workers/0/kill", nil, nil); code != 202 {
		t.Fatalf("kill: %d %s", code, body)
	}
	line := m.logs.waitFor(t, regexp.MustCompile(`msg="worker failed to start" slot=0 .*`), 15*time.Second)[0]
	t.Logf("master log: %s", line)
	for _, want := range []string{"exit status 6", "start hook: testworker refuses to start: " + fail + " exists"} {
		if !strings.Contains(line, want) {
			t.Errorf("the log line does not say %q: %s", want, line)
		}
	}
	m.logs.waitFor(t, regexp.MustCompile(`msg="worker backoff" slot=0 `), 15*time.Second)
	waitFor(t, 10*time.Second, "slot 0 in backoff", func() bool { return m.workers()[0].State == "backoff" })
	if n := len(hookLines(t, startFile, "start")); n < 3 {
		t.Errorf("start hook ran %d times, want the 2 first starts and at least one failed one", n)
	}

	// The master and the other worker go on.
	if code := m.getJSON("/healthz", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	if w := m.workers()[1]; w.PID != before[1].PID || w.State != "ready" {
		t.Errorf("slot 1 disturbed: %+v, was %+v", w, before[1])
	}
	var id struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "echo", "payload": 2}, &id)
	var v taskView
	m.getJSON("/api/v1/tasks/"+id.ID+"?wait=10s", &v)
	if v.State != "succeeded" || v.WorkerSlot == nil || *v.WorkerSlot != 1 {
		t.Errorf("task while slot 0 backs off: %+v", v)
	}

	// The hook succeeds again: the slot comes back.
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}
	ws := m.waitReady(2)
	if ws[0].PID == before[0].PID || ws[0].Generation <= before[0].Generation+1 {
		t.Errorf("slot 0 after recovery: %+v, want a new process a few generations on from %+v", ws[0], before[0])
	}
}
