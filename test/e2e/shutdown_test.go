package e2e

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A second SIGTERM stops the master at once, killing workers whose tasks
// are still running. Those attempts were interrupted by the master, not
// failed by a crash: the tasks stay queued in the store, keep their
// attempts, and run after the next start — a task allowed one attempt
// does not go dead.
func TestSecondSIGTERMLeavesRunningTasksQueued(t *testing.T) {
	runDir := filepath.Join(shortTemp(t), "run")
	dataDir := filepath.Join(shortTemp(t), "data")
	o := options{workers: 1, store: "bolt", runDir: runDir, dataDir: dataDir,
		args: []string{"--shutdown-timeout", "60s"}}
	m := startMaster(t, o)
	m.waitReady(1)
	tasks := make([]map[string]any, 20)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 8000}, "max_attempts": 1}
	}
	ids := m.submit(tasks)
	m.waitStat("in_flight", int64(len(ids)), 5*time.Second)
	m.signal(syscall.SIGTERM)
	// The master ignores a repeat within a second (one keypress can
	// deliver the signal twice).
	time.Sleep(1500 * time.Millisecond)
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(20 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	states := storeStates(t, dataDir, ids)
	t.Logf("after two SIGTERMs: %v", states)
	if states["queued"]+states["succeeded"] != len(ids) {
		t.Fatalf("every task must be queued or succeeded after a forced stop, got %v", states)
	}

	m2 := startMaster(t, o)
	m2.waitReady(1)
	for _, id := range ids {
		var v taskView
		m2.getJSON("/api/v1/tasks/"+id+"?wait=20s", &v)
		if v.State != "succeeded" || v.Attempts != 1 {
			t.Fatalf("task %s after restart: state %q attempts %d error %q; want succeeded in its one attempt", id, v.State, v.Attempts, v.Error)
		}
	}
}
