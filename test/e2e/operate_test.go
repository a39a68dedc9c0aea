package e2e

import (
	"io"
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

func TestSIGHUPRollingReloadLosesNothing(t *testing.T) {
	dir := shortTemp(t)
	bin := filepath.Join(dir, "worker")
	copyFile(t, bins.worker, bin)
	m := startMaster(t, options{workers: 3, args: []string{"--worker-bin", bin}})
	before := m.waitReady(3)
	const n = 5000
	ids := m.submit(sleepTasks(n, 1000))
	m.waitStat("in_flight", 1, 5*time.Second)
	// Deploy a new binary (the test worker), then reload.
	copyFile(t, bins.testworker, bin)
	m.signal(syscall.SIGHUP)
	m.logs.waitFor(t, regexMust(`rolling reload done`), 60*time.Second)
	after := m.waitReady(3)
	for i := range after {
		if after[i].PID == before[i].PID || after[i].Generation != before[i].Generation+1 {
			t.Fatalf("slot %d not reloaded: before %+v after %+v", i, before[i], after[i])
		}
		exe, err := os.Readlink("/proc/" + itoa(after[i].PID) + "/exe")
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(exe); len(b) == 0 {
			t.Fatalf("cannot read %s", exe)
		}
	}
	m.waitStat("completed", n, 60*time.Second)
	for _, v := range m.tasks(ids) {
		if v.State != "succeeded" || v.Attempts != 1 {
			t.Fatalf("task after reload: %+v (a reload must not fail or redeliver a task)", v)
		}
	}
	st := m.stats()
	if st["failed"] != 0 || st["redelivered"] != 0 {
		t.Fatalf("reload caused failures or redeliveries: %v", st)
	}
	// The new processes run the new binary: the test worker's crash hook
	// reads an env var the default worker never reads; compare inodes.
	newIno := inode(t, bins.testworker)
	for _, w := range after {
		if got := inode(t, "/proc/"+itoa(w.PID)+"/exe"); got != newIno && !sameContent(t, "/proc/"+itoa(w.PID)+"/exe", bins.testworker) {
			t.Fatalf("slot %d runs the old binary", w.Slot)
		}
	}
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
