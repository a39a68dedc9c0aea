package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const hitsTable = "hits:4096:count=int,last=string(64)"

// tableView is GET /api/v1/tables/{name}.
type tableView struct {
	Name    string `json:"name"`
	Rows    int    `json:"rows"`
	Columns []struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Size int    `json:"size"`
	} `json:"columns"`
	Entries []struct {
		Key    string         `json:"key"`
		Values map[string]any `json:"values"`
	} `json:"entries"`
}

func (m *master) table(name string) tableView {
	m.t.Helper()
	resp, err := http.Get(m.URL + "/api/v1/tables/" + name)
	if err != nil {
		m.t.Fatalf("GET table %s: %v", name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v tableView
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil {
		m.t.Fatalf("GET /api/v1/tables/%s: %d %s", name, resp.StatusCode, body)
	}
	return v
}

// entry returns the values of key in the table view.
func (v tableView) entry(key string) (map[string]any, bool) {
	for _, e := range v.Entries {
		if e.Key == key {
			return e.Values, true
		}
	}
	return nil, false
}

func hitTasks(n int, key string) []map[string]any {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": "hit", "payload": map[string]any{"key": key}}
	}
	return tasks
}

// settled fetches the tasks until none is queued or running any more (the
// shared "completed" counter moves a moment before the master records a
// result).
func (m *master) settled(ids []string) []taskView {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		views := m.tasks(ids)
		pending := slices.IndexFunc(views, func(v taskView) bool { return v.State == "queued" || v.State == "running" })
		if pending < 0 {
			return views
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("task %d still %s after 30s: %+v", pending, views[pending].State, views[pending])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hitCounts checks that every task succeeded and returns the counts the
// hits returned, sorted, and the slots that ran them.
func hitCounts(t *testing.T, views []taskView) ([]int64, map[int]int) {
	t.Helper()
	counts := make([]int64, 0, len(views))
	slots := map[int]int{}
	for i, v := range views {
		if v.State != "succeeded" {
			t.Fatalf("hit %d: %+v", i, v)
		}
		var r struct {
			Count int64 `json:"count"`
		}
		if err := json.Unmarshal(v.Result, &r); err != nil {
			t.Fatalf("hit %d result %s: %v", i, v.Result, err)
		}
		counts = append(counts, r.Count)
		if v.WorkerSlot != nil {
			slots[*v.WorkerSlot]++
		}
	}
	slices.Sort(counts)
	return counts, slots
}

// exactly checks that counts is 1..n: every Incr landed once and returned
// its own total.
func exactly(t *testing.T, counts []int64, n int) {
	t.Helper()
	for i, c := range counts {
		if c != int64(i+1) {
			t.Fatalf("hit totals are not exactly 1..%d: position %d holds %d (lost or duplicated increments)", n, i, c)
		}
	}
	if len(counts) != n {
		t.Fatalf("%d hits, want %d", len(counts), n)
	}
}

// The example worker under the real master: 20,000 hits on one key spread
// over 4 worker processes count exactly 20,000, and top and the table API
// agree.
func TestTableHitsExactAcrossWorkers(t *testing.T) {
	m := startMaster(t, options{workers: 4, args: []string{
		"--worker-bin", bins.custom, "--dispatch", "round-robin", "--table", hitsTable,
	}})
	m.waitReady(4)
	const n = 20000
	start := time.Now()
	ids := m.submit(hitTasks(n, "/home"))
	m.waitStat("completed", n, 120*time.Second)
	t.Logf("%d hits in %v", n, time.Since(start))
	counts, slots := hitCounts(t, m.settled(ids))
	exactly(t, counts, n)
	if len(slots) != 4 {
		t.Fatalf("hits ran on slots %v, want all 4", slots)
	}
	t.Logf("hits per slot: %v", slots)

	// top ranks the keys from the shared table.
	more := append(hitTasks(3, "/a"), hitTasks(2, "/b")...)
	m.submit(more)
	m.waitStat("completed", n+int64(len(more)), 30*time.Second)
	var created struct {
		ID string `json:"id"`
	}
	if code, body := m.do("POST", "/api/v1/tasks", map[string]any{"kind": "top", "payload": map[string]any{"n": 3}}, &created); code != http.StatusAccepted {
		t.Fatalf("submit top: %d %s", code, body)
	}
	var topView taskView
	m.getJSON("/api/v1/tasks/"+created.ID+"?wait=10s", &topView)
	var top struct {
		Keys int `json:"keys"`
		Top  []struct {
			Key   string `json:"key"`
			Count int64  `json:"count"`
		} `json:"top"`
	}
	if err := json.Unmarshal(topView.Result, &top); err != nil || topView.State != "succeeded" {
		t.Fatalf("top: %+v (%v)", topView, err)
	}
	if top.Keys != 3 || len(top.Top) != 3 || top.Top[0].Key != "/home" || top.Top[0].Count != n ||
		top.Top[1].Key != "/a" || top.Top[1].Count != 3 || top.Top[2].Key != "/b" || top.Top[2].Count != 2 {
		t.Fatalf("top result %s", topView.Result)
	}

	// The master reads the same rows through the API.
	v := m.table("hits")
	if v.Name != "hits" || v.Rows != 4096 || len(v.Columns) != 2 || v.Columns[0].Name != "count" ||
		v.Columns[1].Name != "last" || len(v.Entries) != 3 {
		t.Fatalf("table view %+v", v)
	}
	home, ok := v.entry("/home")
	if !ok || home["count"] != float64(n) {
		t.Fatalf("/home in the table API: %v (present %v), want count %d", home, ok, n)
	}
	if last, _ := home["last"].(string); !slices.Contains(ids, last) {
		t.Fatalf("/home last = %v, want the id of one of its hits", home["last"])
	}
}

// A worker is killed with -9 while it holds the row lock of the hot key
// (the shm test hook, through testworker's table-hold kind). Every other
// worker was waiting for that row; they take the lock over and go on, and
// the total is exact: the dead holder's own update is the only one lost
// (and table-hold makes none), the hits that were queued inside the dead
// worker are redelivered and counted once.
func TestTableRowLockHolderKilled(t *testing.T) {
	m := startMaster(t, options{workers: 4, args: []string{
		"--worker-bin", bins.testworker, "--table", hitsTable,
	}})
	m.waitReady(4)
	pidFile := filepath.Join(shortTemp(t), "holder.pid")
	m.submit([]map[string]any{{
		"kind": "table-hold", "max_attempts": 1,
		"payload": map[string]any{"key": "k", "pid_file": pidFile, "ms": 120000},
	}})
	var holder int
	waitFor(t, 10*time.Second, "the row lock holder's pid file", func() bool {
		b, err := os.ReadFile(pidFile)
		holder, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && holder > 0
	})

	const n = 2000
	ids := m.submit(hitTasks(n, "k"))
	// While the lock is held no hit can finish, on any worker.
	time.Sleep(500 * time.Millisecond)
	if done := m.stats()["completed"]; done != 0 {
		t.Fatalf("%d tasks completed while the row lock was held", done)
	}

	killed := time.Now()
	if err := syscall.Kill(holder, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m.waitStat("completed", n, 60*time.Second)
	t.Logf("%d hits done %v after the holder was killed", n, time.Since(killed))
	views := m.settled(ids)
	counts, slots := hitCounts(t, views)
	exactly(t, counts, n)
	redelivered := 0
	for _, v := range views {
		if v.Attempts > 1 {
			redelivered++
		}
	}
	t.Logf("hits per slot %v; %d redelivered from the dead worker", slots, redelivered)
	if alive(holder) {
		t.Fatalf("holder %d still alive", holder)
	}

	v := m.table("hits")
	if k, ok := v.entry("k"); !ok || k["count"] != float64(n) {
		t.Fatalf("k in the table API: %v (present %v), want count %d", k, ok, n)
	}
}
