package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// copyFile copies a binary; the reload test swaps the worker on disk.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	tmp := to + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	// rename: the running workers keep their old inode, as in a deploy
	if err := os.Rename(tmp, to); err != nil {
		t.Fatal(err)
	}
}

// reloadLoad shapes reloadUnderLoad: workers × capacity tasks fit on the
// workers at once, n (far more) are submitted, each sleeping sleepMs.
type reloadLoad struct {
	workers, capacity, n, sleepMs int
}

// reloadUnderLoad runs the reload scenario: a master on a copy of
// the default worker with a small --capacity, and far more sleep tasks
// than fit on the workers, so tasks keep queuing and dispatching while
// each slot's old worker drains. Meanwhile the worker binary is replaced
// on disk (the test worker), and reload (SIGHUP, flowctl, …) replaces
// every worker. Then: nothing failed, was redelivered or lost, every slot
// has a new pid and generation, and the new processes run the new binary.
// reload starts the reload and returns a func the test calls once the
// master logged that it is done (to check what the trigger printed), or
// nil. It returns the master, idle and reloaded.
func reloadUnderLoad(t *testing.T, load reloadLoad, reload func(m *master) (finish func())) *master {
	t.Helper()
	dir := shortTemp(t)
	bin := filepath.Join(dir, "worker")
	copyFile(t, bins.worker, bin)
	workers, capacity, n := load.workers, load.capacity, load.n
	m := startMaster(t, options{workers: workers, args: []string{"--worker-bin", bin, "--capacity", itoa(capacity)}})
	before := m.waitReady(workers)
	// The old binary does not know the test worker's kinds.
	var refused apiError
	if code, body := m.do("POST", "/api/v1/tasks", map[string]any{"kind": "alloc", "payload": map[string]any{"mib": 0}}, &refused); code != http.StatusBadRequest || refused.Error.Code != "unknown_kind" {
		t.Fatalf("alloc before the reload: %d %s, want 400 unknown_kind", code, body)
	}
	ids := m.submit(sleepTasks(n, load.sleepMs))
	waitFor(t, 10*time.Second, "the workers full", func() bool { return m.workersInFlight() == int64(workers*capacity) })
	// Deploy a new binary (the test worker), then reload.
	copyFile(t, bins.testworker, bin)
	at := m.stats()
	if at["queued"] == 0 {
		t.Fatalf("nothing queued when the reload starts: %v", at)
	}
	finish := reload(m)
	// Until the reload is done, tasks wait in the queue and keep being
	// dispatched: the old workers drain while new tasks go elsewhere.
	minQueued := at["queued"]
	reloadDone := regexMust(`rolling reload done`)
	deadline := time.Now().Add(60 * time.Second)
	for !reloadDone.MatchString(m.logs.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no rolling reload done in 60s; stats %v", m.stats())
		}
		minQueued = min(minQueued, m.stats()["queued"])
		time.Sleep(20 * time.Millisecond)
	}
	done := m.stats()
	minQueued = min(minQueued, done["queued"])
	if finish != nil {
		finish()
	}
	t.Logf("reload started with %d queued and %d dispatched, done with %d queued and %d dispatched (fewest queued meanwhile %d)",
		at["queued"], at["dispatched"], done["queued"], done["dispatched"], minQueued)
	if minQueued == 0 || done["dispatched"] <= at["dispatched"] {
		t.Fatalf("the reload did not run under load: queued ran down to %d, dispatched %d → %d",
			minQueued, at["dispatched"], done["dispatched"])
	}
	after := m.waitReady(workers)
	for i := range after {
		if after[i].PID == before[i].PID || after[i].Generation != before[i].Generation+1 {
			t.Fatalf("slot %d not reloaded: before %+v after %+v", i, before[i], after[i])
		}
	}
	m.waitStat("completed", int64(n), 60*time.Second)
	waitFor(t, 10*time.Second, "the master to settle", func() bool {
		st := m.stats()
		return st["in_flight"] == 0 && st["queued"] == 0
	})
	for _, v := range m.allSucceeded(ids, 30*time.Second) {
		if v.Attempts != 1 {
			t.Fatalf("task after reload: %+v (a reload must not fail or redeliver a task)", v)
		}
	}
	st := m.stats()
	for name, want := range map[string]int{"submitted": n, "dispatched": n, "completed": n, "failed": 0, "retried": 0, "redelivered": 0} {
		if st[name] != int64(want) {
			t.Errorf("stats %s = %d, want %d: the reload lost, failed or redelivered tasks (all: %v)", name, st[name], want, st)
		}
	}
	// The new processes run the new binary: their executable is the test
	// worker, and a kind only the test worker has now runs.
	newIno := inode(t, bins.testworker)
	for _, w := range after {
		if got := inode(t, "/proc/"+itoa(w.PID)+"/exe"); got != newIno && !sameContent(t, "/proc/"+itoa(w.PID)+"/exe", bins.testworker) {
			t.Fatalf("slot %d (pid %d) runs the old binary", w.Slot, w.PID)
		}
	}
	var alloc struct{ ID string }
	if code, body := m.do("POST", "/api/v1/tasks", map[string]any{"kind": "alloc", "payload": map[string]any{"mib": 0}}, &alloc); code != http.StatusAccepted {
		t.Fatalf("alloc after the reload: %d %s", code, body)
	}
	var v taskView
	m.getJSON("/api/v1/tasks/"+alloc.ID+"?wait=10s", &v)
	if v.State != "succeeded" || string(v.Result) != `{"held":true}` {
		t.Fatalf("alloc after the reload: %+v", v)
	}
	return m
}

// TestSIGHUPRollingReloadLosesNothing: the 5,000 sleep tasks of
// 1 s on 3 workers of capacity 200: 600 run at once, the rest queue
// through the whole reload.
func TestSIGHUPRollingReloadLosesNothing(t *testing.T) {
	reloadUnderLoad(t, reloadLoad{workers: 3, capacity: 200, n: 5000, sleepMs: 1000}, func(m *master) func() {
		m.signal(syscall.SIGHUP)
		return nil
	})
}

func TestScaleBySignalsAndAPI(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	m.signal(syscall.SIGTTIN)
	m.waitReady(3)
	ids := m.submit(sleepTasks(300, 800))
	m.waitStat("in_flight", 300, 10*time.Second)
	m.signal(syscall.SIGTTOU)
	waitFor(t, 20*time.Second, "2 workers", func() bool { return len(m.workers()) == 2 })
	if code, body := m.do("POST", "/api/v1/scale", map[string]any{"workers": 4}, nil); code != 202 {
		t.Fatalf("scale: %d %s", code, body)
	}
	m.waitReady(4)
	if code, _ := m.do("POST", "/api/v1/scale", map[string]any{"workers": 0}, nil); code != 400 {
		t.Fatalf("scale to 0: %d, want 400", code)
	}
	m.waitStat("completed", 300, 30*time.Second)
	for _, v := range m.tasks(ids) {
		// The removed worker finished its tasks before it stopped.
		if v.State != "succeeded" || v.Attempts != 1 {
			t.Fatalf("task %+v", v)
		}
	}
}

func TestRecycleAfterMaxTasks(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--max-tasks-per-worker", "100"}})
	before := m.waitReady(1)
	ids := m.submit(echoTasks(500))
	m.waitStat("completed", 500, 30*time.Second)
	m.logs.waitFor(t, regexMust(`msg="worker recycling" slot=0`), 10*time.Second)
	waitFor(t, 10*time.Second, "a recycled worker", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != before[0].PID
	})
	for _, v := range m.tasks(ids) {
		if v.State != "succeeded" {
			t.Fatalf("task %+v", v)
		}
	}
}

func TestRecycleAboveMaxRSS(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--worker-bin", bins.testworker, "--max-worker-rss", "100MiB"}})
	before := m.waitReady(1)
	var id struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "alloc", "payload": map[string]any{"mib": 150}}, &id)
	var v taskView
	m.getJSON("/api/v1/tasks/"+id.ID+"?wait=10s", &v)
	if v.State != "succeeded" {
		t.Fatalf("alloc task %+v", v)
	}
	m.logs.waitFor(t, regexMust(`msg="worker recycling" slot=0 pid=\d+ reason="recycle: rss`), 10*time.Second)
	waitFor(t, 10*time.Second, "a recycled worker", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != before[0].PID
	})
}

func TestTaskIgnoringItsTimeoutGetsWorkerReplaced(t *testing.T) {
	m := startMaster(t, options{workers: 2, args: []string{"--worker-bin", bins.testworker, "--heartbeat-timeout", "1s"}})
	before := m.waitReady(2)
	var id struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "stubborn", "timeout_ms": 200, "max_attempts": 1}, &id)
	m.logs.waitFor(t, regexMust(`worker hung: a task ignores its timeout`), 10*time.Second)
	var v taskView
	m.getJSON("/api/v1/tasks/"+id.ID+"?wait=10s", &v)
	if v.State != "dead" {
		t.Fatalf("stubborn task: %+v", v)
	}
	ws := m.waitReady(2)
	replaced := 0
	for i := range ws {
		if ws[i].PID != before[i].PID {
			replaced++
		}
	}
	if replaced != 1 {
		t.Fatalf("want exactly the hung worker replaced: before %+v after %+v", before, ws)
	}
}
