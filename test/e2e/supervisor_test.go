package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFourWorkersReadyWithDistinctPIDs(t *testing.T) {
	m := startMaster(t, options{workers: 4})
	ws := m.waitReady(4)
	seen := map[int]bool{}
	for _, w := range ws {
		if w.PID <= 0 || seen[w.PID] || !alive(w.PID) {
			t.Fatalf("bad or duplicate pid in %+v", ws)
		}
		seen[w.PID] = true
		if w.Generation != 1 || w.Capacity != 10000 {
			t.Fatalf("slot %d: generation %d capacity %d, want 1 and 10000", w.Slot, w.Generation, w.Capacity)
		}
	}
	// The run directory is private and holds only our files.
	st, err := os.Stat(m.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("run dir mode %v, want 0700", st.Mode().Perm())
	}
	target, err := os.Readlink(filepath.Join(m.RunDir, "shm"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(target); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("shared region %s: %v, mode %v; want 0600", target, err, st.Mode())
	}
}

func TestKillNineWorkerIsReplacedOthersUntouched(t *testing.T) {
	m := startMaster(t, options{workers: 4})
	before := m.waitReady(4)
	victim := before[1]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var after []worker
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = m.workers()
		// The other three never leave ready and keep their pids.
		for i, w := range after {
			if i == victim.Slot {
				continue
			}
			if w.State != "ready" || w.PID != before[i].PID || w.Generation != before[i].Generation {
				t.Fatalf("slot %d disturbed: before %+v, now %+v", i, before[i], w)
			}
		}
		v := after[victim.Slot]
		if v.State == "ready" && v.PID != victim.PID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %d not replaced: %+v", victim.Slot, v)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("kill -9 → ready in %v (polled)", time.Since(killed))
	v := after[victim.Slot]
	if v.Generation != victim.Generation+1 || v.Restarts != 1 {
		t.Fatalf("replacement generation %d restarts %d, want %d and 1", v.Generation, v.Restarts, victim.Generation+1)
	}
	if alive(victim.PID) {
		t.Fatalf("killed pid %d still alive", victim.PID)
	}
	m.logs.waitFor(t, regexp.MustCompile(`msg="worker exited" slot=1 pid=`+strconv.Itoa(victim.PID)+`.*status="signal killed"`), 5*time.Second)
	m.logs.waitFor(t, regexp.MustCompile(`msg="worker started" slot=1 pid=`+strconv.Itoa(v.PID)+` gen=2`), 5*time.Second)
}

func TestCrashLoopBacksOffAndRecovers(t *testing.T) {
	crash := filepath.Join(shortTemp(t), "crash")
	m := startMaster(t, options{
		workers: 2,
		args:    []string{"--worker-bin", bins.testworker},
		env:     []string{"TESTWORKER_CRASH_FILE=" + crash},
	})
	ws := m.waitReady(2)
	if err := os.WriteFile(crash, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(ws[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Every fork now exits at once: the slot must show backoff, with
	// delays that grow, while the master keeps answering and slot 1 is
	// untouched.
	waitFor(t, 20*time.Second, "slot 0 in backoff after several quick deaths", func() bool {
		return len(regexp.MustCompile(`msg="worker backoff" slot=0`).FindAllString(m.logs.String(), -1)) >= 4
	})
	sawBackoff := false
	waitFor(t, 10*time.Second, "slot 0 state backoff", func() bool {
		w := m.workers()[0]
		sawBackoff = w.State == "backoff" && w.BackoffMs > 0
		return sawBackoff
	})
	delays := backoffDelays(t, m.logs.String())
	if len(delays) < 4 {
		t.Fatalf("want at least 4 backoff delays, got %v", delays)
	}
	for i := 1; i < len(delays); i++ {
		// Doubling with ±20% jitter: each delay is clearly above the one before.
		if delays[i] <= delays[i-1] && delays[i] < 4*time.Second {
			t.Fatalf("backoff delays do not grow: %v", delays)
		}
	}
	if code := m.getJSON("/healthz", nil); code != 200 {
		t.Fatalf("healthz %d during crash loop", code)
	}
	if w := m.workers()[1]; w.State != "ready" || w.PID != ws[1].PID {
		t.Fatalf("slot 1 disturbed by slot 0's crash loop: %+v", w)
	}
	// Fix the cause: the slot comes back on its next try.
	if err := os.Remove(crash); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "slot 0 ready again", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != ws[0].PID
	})
}

var backoffRE = regexp.MustCompile(`msg="worker backoff" slot=0 delay=(\S+)`)

func backoffDelays(t *testing.T, logs string) []time.Duration {
	var out []time.Duration
	for _, mm := range backoffRE.FindAllStringSubmatch(logs, -1) {
		d, err := time.ParseDuration(mm[1])
		if err != nil {
			t.Fatalf("parse delay %q: %v", mm[1], err)
		}
		out = append(out, d)
	}
	return out
}

func TestKillNineMasterTakesWorkersDown(t *testing.T) {
	m := startMaster(t, options{workers: 4})
	ws := m.waitReady(4)
	m.signal(syscall.SIGKILL)
	m.waitExit(5 * time.Second)
	deadline := time.Now().Add(time.Second)
	for {
		var left []int
		for _, w := range ws {
			if alive(w.PID) {
				left = append(left, w.PID)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("workers %v outlived the master by more than 1s", left)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSIGTERMExitsCleanly(t *testing.T) {
	m := startMaster(t, options{workers: 3})
	ws := m.waitReady(3)
	shmPath, err := os.Readlink(filepath.Join(m.RunDir, "shm"))
	if err != nil {
		t.Fatal(err)
	}
	m.signal(syscall.SIGTERM)
	if code := m.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	for _, w := range ws {
		if alive(w.PID) {
			t.Fatalf("worker %d still running", w.PID)
		}
	}
	if _, err := os.Stat(shmPath); !os.IsNotExist(err) {
		t.Fatalf("shared region %s left behind: %v", shmPath, err)
	}
	if entries, err := os.ReadDir(m.RunDir); err == nil && len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("run dir not empty: %v", names)
	}
	if !strings.Contains(m.logs.String(), `msg="worker exited" slot=0`) {
		t.Fatal("no exit logged for slot 0")
	}
}

func TestBadInputFailsClearly(t *testing.T) {
	dir := shortTemp(t)
	notExec := filepath.Join(dir, "notexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notOurs := filepath.Join(dir, "notours")
	if err := os.WriteFile(notOurs, []byte("#!/bin/sh\necho hello\nsleep 30\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing worker binary", []string{"--worker-bin", filepath.Join(dir, "nope")}, "bad worker binary"},
		{"worker binary not executable", []string{"--worker-bin", notExec}, "not executable"},
		{"worker binary not ours", []string{"--worker-bin", notOurs}, "bad worker binary"},
		{"zero workers", []string{"--workers", "0"}, "--workers"},
		{"absurd workers", []string{"--workers", "100000"}, "--workers"},
		{"port in use", []string{"--listen", busy.Addr().String()}, "address already in use"},
		{"unwritable run dir", []string{"--run-dir", filepath.Join(aFile, "run")}, "run directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--workers", "2", "--listen", "127.0.0.1:0", "--run-dir", filepath.Join(shortTemp(t), "run"),
				"--store", "memory", "--worker-bin", bins.worker, "--env-file", ""}
			args = append(args, tt.args...)
			cmd := exec.Command(bins.master, args...)
			start := time.Now()
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("master started with %v:\n%s", tt.args, out)
			}
			if time.Since(start) > 20*time.Second {
				t.Fatalf("took %v to fail", time.Since(start))
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output does not mention %q:\n%s", tt.want, out)
			}
			errLines := 0
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "master: ") {
					errLines++
				}
			}
			if errLines != 1 {
				t.Fatalf("want exactly one 'master: ' error line, got %d:\n%s", errLines, out)
			}
			if starts := strings.Count(string(out), "worker restarting"); starts > 0 {
				t.Fatalf("restart storm on bad input:\n%s", out)
			}
		})
	}
}

func TestWorkerRefusesMismatchedRegion(t *testing.T) {
	dir := shortTemp(t)
	garbage := filepath.Join(dir, "region")
	if err := os.WriteFile(garbage, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.worker)
	cmd.Env = append(os.Environ(), "ATOMICFLOW_PLUGIN=5c1a6a52-worker-v1", "ATOMICFLOW_WORKER_SLOT=0",
		"ATOMICFLOW_WORKER_GENERATION=1", "ATOMICFLOW_WORKER_SHM="+garbage)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 4 {
		t.Fatalf("exit %d (%v), want 4:\n%s", code, err, out)
	}
	if !strings.Contains(string(out), "bad magic") {
		t.Fatalf("no clear error:\n%s", out)
	}
	// Run by hand, the worker explains itself.
	out, err = exec.Command(bins.worker).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the master starts it") {
		t.Fatalf("worker run by hand: %v\n%s", err, out)
	}
}

func TestKillRestartAPI(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	ws := m.waitReady(2)
	if code, body := m.do("POST", "/api/v1/workers/0/restart", nil, nil); code != 202 {
		t.Fatalf("restart: %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "slot 0 restarted", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != ws[0].PID
	})
	m.logs.waitFor(t, regexp.MustCompile(`msg="worker exited" slot=0 pid=`+strconv.Itoa(ws[0].PID)+`.*graceful=true`), 5*time.Second)
	if code, body := m.do("POST", "/api/v1/workers/1/kill", nil, nil); code != 202 {
		t.Fatalf("kill: %d %s", code, body)
	}
	waitFor(t, 15*time.Second, "slot 1 replaced", func() bool {
		w := m.workers()[1]
		return w.State == "ready" && w.PID != ws[1].PID
	})
	for _, tc := range []struct {
		path string
		code int
	}{{"/api/v1/workers/7/kill", 404}, {"/api/v1/workers/x/kill", 400}} {
		if code, body := m.do("POST", tc.path, nil, nil); code != tc.code {
			t.Fatalf("%s: %d %s, want %d", tc.path, code, body, tc.code)
		}
	}
	pids := []int{}
	for _, w := range m.workers() {
		pids = append(pids, w.PID)
	}
	sort.Ints(pids)
	if slices.Contains(pids, ws[0].PID) || slices.Contains(pids, ws[1].PID) {
		t.Fatalf("old pids still listed: %v", pids)
	}
}

func TestHungWorkerIsKilledAndItsTasksFinishElsewhere(t *testing.T) {
	m := startMaster(t, options{workers: 2, args: []string{"--heartbeat-timeout", "1s"}})
	ws := m.waitReady(2)
	ids := m.submit(sleepTasks(200, 300))
	m.waitStat("in_flight", 1, 5*time.Second)
	// SIGSTOP freezes the worker: its heartbeat stops, the process lives.
	if err := syscall.Kill(ws[0].PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	m.logs.waitFor(t, regexp.MustCompile(`worker hung: heartbeat stale, killing it" slot=0 pid=`+strconv.Itoa(ws[0].PID)), 10*time.Second)
	waitFor(t, 15*time.Second, "slot 0 replaced", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != ws[0].PID
	})
	m.waitStat("completed", 200, 30*time.Second)
	for _, v := range m.tasks(ids) {
		if v.State != "succeeded" {
			t.Fatalf("task %+v", v)
		}
	}
}
