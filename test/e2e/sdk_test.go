package e2e

import (
	"os"
	"path/filepath"
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
