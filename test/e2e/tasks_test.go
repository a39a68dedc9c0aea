package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func echoTasks(n int) []map[string]any {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": "echo", "payload": map[string]any{"n": i, "s": fmt.Sprintf("task-%d", i)}}
	}
	return tasks
}

func sleepTasks(n int, ms int) []map[string]any {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": "sleep", "payload": map[string]any{"ms": ms}, "max_attempts": 5}
	}
	return tasks
}

func TestFiftyThousandEchoTasks(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	const n = 50000
	start := time.Now()
	ids := m.submit(echoTasks(n))
	if len(ids) != n {
		t.Fatalf("got %d ids, want %d", len(ids), n)
	}
	m.waitStat("completed", n, 60*time.Second)
	t.Logf("%d echo tasks in %v (%.0f tasks/s, submit included)", n, time.Since(start), n/time.Since(start).Seconds())
	// Every task with its result, in a few pages rather than 50,000 GETs.
	done := m.allSucceeded(ids, 60*time.Second)
	for i, id := range ids {
		v := done[id]
		if v.Attempts != 1 {
			t.Fatalf("task %d: %+v, want succeeded at the first attempt", i, v)
		}
		var got struct {
			N int    `json:"n"`
			S string `json:"s"`
		}
		if err := json.Unmarshal(v.Result, &got); err != nil || got.N != i || got.S != fmt.Sprintf("task-%d", i) {
			t.Fatalf("task %d result %s (%v)", i, v.Result, err)
		}
	}
	st := m.stats()
	for name, want := range map[string]int64{"submitted": n, "dispatched": n, "completed": n, "failed": 0, "in_flight": 0, "queued": 0} {
		if st[name] != want {
			t.Errorf("stats %s = %d, want %d (all: %v)", name, st[name], want, st)
		}
	}
	var sum int64
	for _, w := range m.workers() {
		sum += w.Completed
	}
	if sum != n {
		t.Errorf("slots completed sum %d, want %d", sum, n)
	}
}

func TestTwentyThousandSleepsRunAtOnce(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	ws := m.waitReady(2)
	// The 2 s sleeps, stretched to 4 s: submitting 20,000 tasks to
	// a race-detector build on a loaded 2-core machine can itself take a
	// couple of seconds, and the first tasks must not finish before the
	// last are in.
	const n = 20000
	const sleep = 4 * time.Second
	var capacity int64
	for _, w := range ws {
		capacity += w.Capacity
	}
	if capacity < n {
		t.Fatalf("the workers advertise a capacity of %d in all, the test needs %d", capacity, n)
	}
	start := time.Now()
	ids := m.submit(sleepTasks(n, int(sleep/time.Millisecond)))
	submitTime := time.Since(start)
	// The peak is what the workers count in their own slots (handlers
	// running), not the master's global in_flight, which counts a task as
	// soon as it is handed to a worker, before it runs.
	peak := int64(0)
	deadline := start.Add(60 * time.Second)
	for {
		peak = max(peak, m.workersInFlight())
		if m.stats()["completed"] >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: stats %v, peak in flight on the workers %d", time.Since(start), m.stats(), peak)
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	t.Logf("%d sleep(%v) tasks: submitted in %v, peak in flight on the workers %d, all done in %v",
		n, sleep, submitTime, peak, elapsed)
	if peak != n {
		t.Fatalf("peak in flight on the workers %d, want all %d at once", peak, n)
	}
	// Run in two waves or more, some task could start only after another
	// had slept its 4 s: the run would take at least 2 × sleep after the
	// first start, which is after the submit began. Serially it would take
	// 80,000 s. So "under submit time + 2 × sleep" says "all at once", not
	// "fast".
	if bound := submitTime + 2*sleep; elapsed >= bound {
		t.Fatalf("took %v, not under %v (submit %v + 2 × %v): the tasks did not all run at once", elapsed, bound, submitTime, sleep)
	}
	// Every task succeeded at its first attempt: n accepted, n attempts
	// dispatched, n attempts succeeded and nothing else, so each task ran
	// exactly once and succeeded (listing 20,000 tasks from a race-built
	// master would cost seconds; the counters say it for all of them).
	waitFor(t, 10*time.Second, "the master to settle", func() bool {
		st := m.stats()
		return st["in_flight"] == 0 && st["queued"] == 0
	})
	st := m.stats()
	for name, want := range map[string]int64{"submitted": n, "dispatched": n, "completed": n, "failed": 0,
		"retried": 0, "redelivered": 0, "dead": 0, "canceled": 0} {
		if st[name] != want {
			t.Errorf("stats %s = %d, want %d (all: %v)", name, st[name], want, st)
		}
	}
	// A sample spread over the submission, checked one by one: succeeded
	// at the first attempt, and all of them running at one moment (the
	// last to start started before the first to finish finished, by the
	// workers' own timestamps).
	var sample []string
	for i := 0; i < n; i += n / 200 {
		sample = append(sample, ids[i])
	}
	sample = append(sample, ids[n-1])
	var lastStart, firstFinish time.Time
	for _, v := range m.tasks(sample) {
		if v.State != "succeeded" || v.Attempts != 1 || v.StartedAt == nil || v.FinishedAt == nil {
			t.Fatalf("task %+v, want succeeded at the first attempt with its times", v)
		}
		if v.StartedAt.After(lastStart) {
			lastStart = *v.StartedAt
		}
		if firstFinish.IsZero() || v.FinishedAt.Before(firstFinish) {
			firstFinish = *v.FinishedAt
		}
	}
	if !lastStart.Before(firstFinish) {
		t.Fatalf("a sampled task started at %v, %v after another finished (%v): not all ran at once",
			lastStart.Format(time.RFC3339Nano), lastStart.Sub(firstFinish), firstFinish.Format(time.RFC3339Nano))
	}
}

func TestKillWorkerMidLoadLosesNothing(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	const n = 10000
	// 3 s sleeps: every task is still running when the worker is killed,
	// after the test has noted where each one runs.
	ids := m.submit(sleepTasks(n, 3000))
	waitFor(t, 20*time.Second, fmt.Sprintf("%d tasks running on the workers", n), func() bool { return m.workersInFlight() == n })
	before := m.workers()
	// Where each task runs: its record while running names the slot. (On
	// a slow machine a task may finish before the list is read: it is not
	// listed, and must not run again.)
	running := m.list("running")
	victim, survivor := before[0], before[1]
	onSlot := map[int]int{}
	for id, v := range running {
		if v.WorkerSlot == nil {
			t.Fatalf("task %s listed as running on no slot: %+v", id, v)
		}
		onSlot[*v.WorkerSlot]++
	}
	if onSlot[victim.Slot] == 0 || onSlot[survivor.Slot] == 0 {
		t.Fatalf("tasks per slot before the kill %v: want both slots busy", onSlot)
	}
	killedAt := time.Now()
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitStat("completed", n, 60*time.Second)
	waitFor(t, 10*time.Second, "in_flight back to 0", func() bool { return m.stats()["in_flight"] == 0 })
	done := m.allSucceeded(ids, 30*time.Second)

	// The surviving slot is the same process, never restarted.
	after := m.workers()
	if s := after[survivor.Slot]; s.PID != survivor.PID || s.Generation != survivor.Generation || s.Restarts != survivor.Restarts {
		t.Fatalf("surviving slot %d disturbed by the kill: before %+v after %+v", survivor.Slot, survivor, s)
	}
	if v := after[victim.Slot]; v.PID == victim.PID || v.Generation != victim.Generation+1 {
		t.Fatalf("killed slot %d not replaced once: before %+v after %+v", victim.Slot, victim, v)
	}

	redelivered, untouched, endedOnSurvivor := 0, 0, int64(0)
	for _, id := range ids {
		v := done[id]
		if v.WorkerSlot == nil || v.FinishedAt == nil {
			t.Fatalf("succeeded task without slot or finish time: %+v", v)
		}
		pre := -1
		if r, ok := running[id]; ok {
			pre = *r.WorkerSlot
		}
		switch {
		case pre == -1:
			// Done before the list was read, so before the kill.
			if v.Attempts != 1 || !v.FinishedAt.Before(killedAt) {
				t.Fatalf("task %s was not running before the kill, ended %+v: want 1 attempt finished before the kill at %v", id, v, killedAt)
			}
			untouched++
		case pre == survivor.Slot:
			// The survivor's own tasks: one attempt, on the survivor.
			if v.Attempts != 1 || *v.WorkerSlot != survivor.Slot {
				t.Fatalf("task %s ran on the surviving slot %d before the kill, ended %+v: want 1 attempt there", id, survivor.Slot, v)
			}
			untouched++
		case v.Attempts == 1 && *v.WorkerSlot == victim.Slot && v.FinishedAt.Before(killedAt):
			// Finished on the victim before the kill: nothing to redeliver.
			untouched++
		default:
			// Running on the killed worker: delivered exactly once more.
			if v.Attempts != 2 {
				t.Fatalf("task %s ran on the killed slot %d, ended %+v: want 2 attempts", id, victim.Slot, v)
			}
			redelivered++
		}
		if *v.WorkerSlot == survivor.Slot {
			endedOnSurvivor++
		}
	}
	st := m.stats()
	t.Logf("before the kill %v tasks per slot; redelivered %d, untouched %d, %d ended on the survivor; stats %v",
		onSlot, redelivered, untouched, endedOnSurvivor, st)
	if redelivered == 0 {
		t.Fatal("the kill redelivered nothing")
	}
	if st["redelivered"] != int64(redelivered) {
		t.Fatalf("stats redelivered %d, tasks with 2 attempts %d", st["redelivered"], redelivered)
	}
	// The survivor's own counter (the worker writes it) agrees with what
	// the API says ran there.
	if got := after[survivor.Slot].Completed; got != endedOnSurvivor {
		t.Fatalf("surviving slot counts %d completed, the API has %d tasks ending there", got, endedOnSurvivor)
	}
}

func TestKeyHashPinsAKeyToOneSlot(t *testing.T) {
	m := startMaster(t, options{workers: 3, args: []string{"--dispatch", "key-hash"}})
	m.waitReady(3)
	const keys, perKey = 12, 25
	var tasks []map[string]any
	for i := 0; i < keys*perKey; i++ {
		tasks = append(tasks, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5}, "key": fmt.Sprintf("user-%d", i%keys)})
	}
	ids := m.submit(tasks)
	m.waitStat("completed", int64(len(tasks)), 30*time.Second)
	slotOf := map[string]int{}
	perKeyRan := map[string]int{}
	slotsUsed := map[int]int{}
	for i, v := range m.tasks(ids) {
		if v.State != "succeeded" || v.WorkerSlot == nil {
			t.Fatalf("task %+v", v)
		}
		key := tasks[i]["key"].(string)
		if s, ok := slotOf[key]; ok && s != *v.WorkerSlot {
			t.Fatalf("key %s ran on slots %d and %d", key, s, *v.WorkerSlot)
		}
		slotOf[key] = *v.WorkerSlot
		perKeyRan[key]++
		slotsUsed[*v.WorkerSlot]++
	}
	t.Logf("key → slot: %v; tasks per slot: %v", slotOf, slotsUsed)
	if len(slotOf) != keys {
		t.Fatalf("%d keys ran, want %d", len(slotOf), keys)
	}
	for key, n := range perKeyRan {
		if n != perKey {
			t.Fatalf("key %s: %d tasks ran, want %d", key, n, perKey)
		}
	}
	// Pinned, but spread: 12 keys do not all hash to one of 3 slots.
	if len(slotsUsed) < 2 {
		t.Fatalf("all %d keys ran on one slot %v: key-hash does not spread keys", keys, slotsUsed)
	}
}

func TestFailRetriesThenDeadAndTimeoutFails(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	var fail, timeout, ok struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "fail", "payload": map[string]any{"message": "boom"}, "max_attempts": 3}, &fail)
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5000}, "timeout_ms": 100}, &timeout)
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "fail", "payload": map[string]any{"probability": 0}}, &ok)
	// Watch the fail task through its attempts: while it waits for a
	// retry the API shows the start of the attempt that failed.
	starts := map[int]time.Time{}
	var v taskView
	deadline := time.Now().Add(10 * time.Second)
	for {
		v = m.task(fail.ID)
		if v.Attempts > 0 && v.StartedAt != nil {
			starts[v.Attempts] = *v.StartedAt
		}
		if v.State == "dead" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fail task not dead after 10s: %+v", v)
		}
		time.Sleep(2 * time.Millisecond)
	}
	if v.State != "dead" || v.Attempts != 3 || !strings.Contains(v.Error, "boom") {
		t.Fatalf("fail task: %+v", v)
	}
	// Retries back off: base × 2^(n-1) before attempt n+1, base 100ms
	// (the master's default), each delay within ±20%. So attempt 2 starts
	// at least 80ms after attempt 1, attempt 3 at least 160ms after
	// attempt 2, and the task cannot be dead before 240ms. Lower bounds
	// only: a loaded machine can only stretch them.
	const base = 100 * time.Millisecond
	minDelay := func(n int) time.Duration { return time.Duration(float64(base<<(n-1)) * 0.8) }
	if v.CreatedAt == nil || v.FinishedAt == nil {
		t.Fatalf("dead task without times: %+v", v)
	}
	if total, want := v.FinishedAt.Sub(*v.CreatedAt), minDelay(1)+minDelay(2); total < want {
		t.Fatalf("dead %v after it was created, want at least %v of retry backoff", total, want)
	}
	for n := 1; n < 3; n++ {
		a, okA := starts[n]
		b, okB := starts[n+1]
		if !okA || !okB {
			t.Logf("attempt %d or %d not seen while polling (seen %v): spacing unchecked", n, n+1, starts)
			continue
		}
		if gap := b.Sub(a); gap < minDelay(n) {
			t.Fatalf("attempt %d started %v after attempt %d, want at least %v (backoff %v ±20%%)", n+1, gap, n, minDelay(n), base<<(n-1))
		}
	}
	t.Logf("attempt starts %v; dead after %v", starts, v.FinishedAt.Sub(*v.CreatedAt))
	m.getJSON("/api/v1/tasks/"+timeout.ID+"?wait=10s", &v)
	if v.State != "failed" || v.Attempts != 1 || !strings.Contains(v.Error, "timeout") {
		t.Fatalf("timeout task: %+v", v)
	}
	m.getJSON("/api/v1/tasks/"+ok.ID+"?wait=10s", &v)
	if v.State != "succeeded" {
		t.Fatalf("fail with probability 0: %+v", v)
	}
	st := m.stats()
	if st["retried"] != 2 || st["dead"] != 1 {
		t.Fatalf("stats retried %d dead %d, want 2 and 1", st["retried"], st["dead"])
	}
	// Dead letters are listed and can be retried.
	var list struct {
		Tasks []taskView `json:"tasks"`
	}
	m.getJSON("/api/v1/tasks?state=dead", &list)
	if len(list.Tasks) != 1 || list.Tasks[0].ID != fail.ID {
		t.Fatalf("dead letters: %+v", list.Tasks)
	}
	if code, body := m.do("POST", "/api/v1/tasks/"+fail.ID+"/retry", nil, nil); code != http.StatusAccepted {
		t.Fatalf("retry: %d %s", code, body)
	}
	m.getJSON("/api/v1/tasks/"+fail.ID+"?wait=10s", &v)
	if v.State != "dead" || v.Attempts != 3 {
		t.Fatalf("retried fail task: %+v", v)
	}
}

func TestCancel(t *testing.T) {
	m := startMaster(t, options{workers: 1})
	m.waitReady(1)
	var running struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 30000}}, &running)
	waitFor(t, 5*time.Second, "task running", func() bool { return m.task(running.ID).State == "running" })
	if code, body := m.do("DELETE", "/api/v1/tasks/"+running.ID, nil, nil); code != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", code, body)
	}
	var v taskView
	m.getJSON("/api/v1/tasks/"+running.ID+"?wait=5s", &v)
	if v.State != "canceled" {
		t.Fatalf("canceled task: %+v", v)
	}
	if code, _ := m.do("DELETE", "/api/v1/tasks/"+running.ID, nil, nil); code != http.StatusConflict {
		t.Fatalf("second cancel: %d, want 409", code)
	}
}

func TestAPIErrors(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--max-queue", "10", "--max-body", "1KiB", "--max-batch", "20"}})
	m.waitReady(1)
	big := `{"kind":"echo","payload":"` + strings.Repeat("x", 2000) + `"}`
	tooMany := map[string]any{"tasks": echoTasks(11)}
	overBatch := map[string]any{"tasks": echoTasks(21)}
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/api/v1/tasks", `{"kind":`, 400, "bad_json"},
		{"not an object", "POST", "/api/v1/tasks", `[1,2]`, 400, "bad_field"},
		{"trailing data", "POST", "/api/v1/tasks", `{"kind":"echo"} {}`, 400, "bad_json"},
		{"unknown kind", "POST", "/api/v1/tasks", `{"kind":"nope"}`, 400, "unknown_kind"},
		{"missing kind", "POST", "/api/v1/tasks", `{"payload":1}`, 400, "bad_field"},
		{"unknown field", "POST", "/api/v1/tasks", `{"kind":"echo","colour":"red"}`, 400, "bad_field"},
		{"wrong type", "POST", "/api/v1/tasks", `{"kind":"echo","timeout_ms":"soon"}`, 400, "bad_field"},
		{"negative timeout", "POST", "/api/v1/tasks", `{"kind":"echo","timeout_ms":-1}`, 400, "bad_field"},
		{"empty batch", "POST", "/api/v1/tasks/batch", `{"tasks":[]}`, 400, "bad_field"},
		{"batch over limit", "POST", "/api/v1/tasks/batch", overBatch, 400, "bad_field"},
		{"body too large", "POST", "/api/v1/tasks", big, 413, "too_large"},
		{"queue full", "POST", "/api/v1/tasks/batch", tooMany, 429, "queue_full"},
		{"unknown id", "GET", "/api/v1/tasks/ffffffffffffffff", nil, 404, "not_found"},
		{"cancel unknown id", "DELETE", "/api/v1/tasks/ffffffffffffffff", nil, 404, "not_found"},
		{"bad wait", "GET", "/api/v1/tasks/ffffffffffffffff?wait=soon", nil, 400, "bad_field"},
		{"bad state", "GET", "/api/v1/tasks?state=sleepy", nil, 400, "bad_field"},
		{"unknown route", "GET", "/api/v1/nothing", nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out apiError
			status, body := m.do(tt.method, tt.path, tt.body, &out)
			if status != tt.status || out.Error.Code != tt.code || out.Error.Message == "" {
				t.Fatalf("%s %s: %d %s, want %d with code %s", tt.method, tt.path, status, body, tt.status, tt.code)
			}
		})
	}
	// Nothing above was accepted.
	if st := m.stats(); st["submitted"] != 0 {
		t.Fatalf("bad requests submitted %d tasks", st["submitted"])
	}
}

func TestSIGTERMFinishesInFlightTasks(t *testing.T) {
	m := startMaster(t, options{workers: 2, store: "bolt"})
	m.waitReady(2)
	const n = 1000
	ids := m.submit(sleepTasks(n, 1000))
	m.waitStat("in_flight", n, 10*time.Second)
	m.signal(syscall.SIGTERM)
	// While it drains, new work is refused with 503 and a JSON error.
	accepted := 0
	var refused apiError
	var refusedBody []byte
	waitFor(t, 5*time.Second, "503 while draining", func() bool {
		refused = apiError{}
		code, body := m.do("POST", "/api/v1/tasks", map[string]any{"kind": "echo"}, &refused)
		if code == http.StatusAccepted {
			accepted++ // sent before the signal landed: kept for the next start
		}
		refusedBody = body
		return code == http.StatusServiceUnavailable
	})
	if refused.Error.Code != "shutting_down" || strings.TrimSpace(refused.Error.Message) == "" {
		t.Fatalf("503 body %s: want code shutting_down and a message", refusedBody)
	}
	if code := m.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	m.logs.waitFor(t, regexMust(fmt.Sprintf(`msg=stopped finished_during_drain=%d left_unfinished=%d`, n, accepted)), time.Second)
	// The store says every one of them succeeded.
	states := storeStates(t, m.Data, ids)
	if states["succeeded"] != n {
		t.Fatalf("store states after drain: %v", states)
	}
}
