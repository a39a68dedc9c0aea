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
	m.submit(echoTasks(300))
	var dead struct{ ID string }
	m.do("POST", "/api/v1/tasks", map[string]any{"kind": "fail", "max_attempts": 2}, &dead)
	m.waitStat("completed", 300, 10*time.Second)
	var v taskView
	m.getJSON("/api/v1/tasks/"+dead.ID+"?wait=10s", &v)
	if err := syscall.Kill(ws[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "slot 1 replaced", func() bool {
		w := m.workers()[1]
		return w.State == "ready" && w.PID != ws[1].PID
	})
	fams := scrape(t, m)
	st := m.stats()
	for name, stat := range map[string]string{
		"atomicflow_tasks_submitted_total":   "submitted",
		"atomicflow_tasks_completed_total":   "completed",
		"atomicflow_tasks_dispatched_total":  "dispatched",
		"atomicflow_tasks_retried_total":     "retried",
		"atomicflow_tasks_redelivered_total": "redelivered",
		"atomicflow_tasks_in_flight":         "in_flight",
		"atomicflow_queue_depth":             "queued",
		"atomicflow_dashboard_clients":       "ws_clients",
	} {
		if got := value(fams[name], nil); got != float64(st[stat]) {
			t.Errorf("%s = %v, API %s = %d", name, got, stat, st[stat])
		}
	}
	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"atomicflow_tasks_total", map[string]string{"kind": "echo", "outcome": "succeeded"}, 300},
		{"atomicflow_tasks_total", map[string]string{"kind": "fail", "outcome": "retry"}, 1},
		{"atomicflow_tasks_total", map[string]string{"kind": "fail", "outcome": "dead"}, 1},
		{"atomicflow_task_duration_seconds", map[string]string{"kind": "echo"}, 300},
		{"atomicflow_workers", map[string]string{"state": "ready"}, 2},
		{"atomicflow_worker_restarts_total", map[string]string{"cause": "crash"}, 1},
		{"atomicflow_tasks_dead", nil, 1},
	}
	for _, c := range checks {
		if got := value(fams[c.family], c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
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
