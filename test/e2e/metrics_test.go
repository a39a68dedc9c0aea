package e2e

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func scrape(t *testing.T, m *master) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(m.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

func value(f *dto.MetricFamily, labels map[string]string) float64 {
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.Metric {
		ok := true
		for k, v := range labels {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMatchTheAPIAndReadyz(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	ws := m.waitReady(2)
	if code := m.getJSON("/readyz", nil); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	// What the test submits, and so what the metrics must count: echo
	// tasks that succeed, fail tasks that retry once and die, and sleep
	// tasks that time out (no retry after a timeout).
	const echoes, fails, failAttempts, timeouts = 300, 3, 2, 2
	var tasks []map[string]any
	tasks = append(tasks, echoTasks(echoes)...)
	for range fails {
		tasks = append(tasks, map[string]any{"kind": "fail", "max_attempts": failAttempts})
	}
	for range timeouts {
		tasks = append(tasks, map[string]any{"kind": "sleep", "payload": map[string]any{"ms": 5000}, "timeout_ms": 50})
	}
	ids := m.submit(tasks)
	var views []taskView
	waitFor(t, 20*time.Second, "every task terminal", func() bool {
		views = m.tasks(ids)
		for _, v := range views {
			if v.State != "succeeded" && v.State != "failed" && v.State != "dead" {
				return false
			}
		}
		return true
	})
	// What the API says of each task, counted the way the metrics count.
	type kindState struct{ kind, state string }
	api := map[kindState]int{}
	attempts, failedAttempts, retries := 0, 0, 0
	for i, v := range views {
		if v.Kind != tasks[i]["kind"] {
			t.Fatalf("task %d is a %q, submitted as %q", i, v.Kind, tasks[i]["kind"])
		}
		api[kindState{v.Kind, v.State}]++
		attempts += v.Attempts
		if v.State != "succeeded" {
			failedAttempts += v.Attempts
		}
		if v.State == "dead" {
			retries += v.Attempts - 1
		}
	}
	// The API agrees with what was submitted…
	for ks, want := range map[kindState]int{
		{"echo", "succeeded"}: echoes, {"fail", "dead"}: fails, {"sleep", "failed"}: timeouts,
	} {
		if api[ks] != want {
			t.Fatalf("API: %d %s tasks %s, want %d (all: %v)", api[ks], ks.kind, ks.state, want, api)
		}
	}
	if want := fails * (failAttempts - 1); retries != want {
		t.Fatalf("API: dead tasks had %d retries, want %d", retries, want)
	}
	// …and a crash adds a restart (and, with nothing in flight, no
	// redelivery).
	if err := syscall.Kill(ws[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "slot 1 replaced", func() bool {
		w := m.workers()[1]
		return w.State == "ready" && w.PID != ws[1].PID
	})
	// /metrics counts exactly that: every number below comes from the
	// test's own submissions or from the API's view of each task.
	fams := scrape(t, m)
	checks := []struct {
		family string
		labels map[string]string
		want   int
	}{
		{"atomicflow_tasks_submitted_total", nil, len(ids)},
		{"atomicflow_tasks_dispatched_total", nil, attempts},
		{"atomicflow_tasks_completed_total", nil, api[kindState{"echo", "succeeded"}]},
		{"atomicflow_tasks_failed_total", nil, failedAttempts},
		{"atomicflow_tasks_retried_total", nil, retries},
		{"atomicflow_tasks_redelivered_total", nil, 0},
		{"atomicflow_tasks_canceled_total", nil, 0},
		{"atomicflow_tasks_dead", nil, api[kindState{"fail", "dead"}]},
		{"atomicflow_tasks_in_flight", nil, 0},
		{"atomicflow_queue_depth", nil, 0},
		{"atomicflow_dashboard_clients", nil, 0},
		{"atomicflow_tasks_total", map[string]string{"kind": "echo", "outcome": "succeeded"}, api[kindState{"echo", "succeeded"}]},
		{"atomicflow_tasks_total", map[string]string{"kind": "echo"}, echoes},
		{"atomicflow_tasks_total", map[string]string{"kind": "fail", "outcome": "retry"}, retries},
		{"atomicflow_tasks_total", map[string]string{"kind": "fail", "outcome": "dead"}, api[kindState{"fail", "dead"}]},
		{"atomicflow_tasks_total", map[string]string{"kind": "fail"}, fails * failAttempts},
		{"atomicflow_tasks_total", map[string]string{"kind": "sleep", "outcome": "timeout"}, api[kindState{"sleep", "failed"}]},
		{"atomicflow_tasks_total", map[string]string{"kind": "sleep"}, timeouts},
		{"atomicflow_tasks_total", nil, attempts},
		{"atomicflow_task_duration_seconds", map[string]string{"kind": "echo"}, echoes},
		{"atomicflow_workers", map[string]string{"state": "ready"}, 2},
		{"atomicflow_worker_restarts_total", map[string]string{"cause": "crash"}, 1},
	}
	for _, c := range checks {
		if got := value(fams[c.family], c.labels); got != float64(c.want) {
			t.Errorf("%s%v = %v, want %d", c.family, c.labels, got, c.want)
		}
	}
	// The API's stats are the same numbers.
	st := m.stats()
	for stat, want := range map[string]int{
		"submitted": len(ids), "dispatched": attempts, "completed": echoes, "failed": failedAttempts,
		"retried": retries, "redelivered": 0, "dead": fails, "in_flight": 0, "queued": 0,
	} {
		if st[stat] != int64(want) {
			t.Errorf("API stats %s = %d, want %d", stat, st[stat], want)
		}
	}
	for name := range fams {
		if strings.HasPrefix(name, "atomicflow_") && strings.HasSuffix(name, "_total") && fams[name].GetType() != dto.MetricType_COUNTER {
			t.Errorf("%s ends in _total but is a %v", name, fams[name].GetType())
		}
	}
	// Readiness turns false as soon as the drain starts.
	m.submit(sleepTasks(10, 2000))
	m.waitStat("in_flight", 10, 5*time.Second)
	m.signal(syscall.SIGTERM)
	waitFor(t, 5*time.Second, "readyz false while draining", func() bool {
		return m.getJSON("/readyz", nil) == http.StatusServiceUnavailable
	})
	if code := m.getJSON("/healthz", nil); code != 200 {
		t.Fatalf("healthz %d while draining", code)
	}
	if code := m.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
