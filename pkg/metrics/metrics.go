// Package metrics exposes the master's numbers in the Prometheus text
// format. Live counters come from the shared region at scrape time (no RPC
// to any worker); per-kind task outcomes and durations are observed by the
// engine as results arrive.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// Sources are what the collector reads at scrape time.
type Sources struct {
	Region *shm.Region
	// RestartCauses counts worker replacements by cause.
	RestartCauses func() map[string]int64
}

// Metrics owns a registry with the master's metrics.
type Metrics struct {
	reg      *prometheus.Registry
	tasks    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds the registry: process and Go runtime metrics of the master,
// the shared-region collector, and the task observers.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "atomicflow_tasks_total",
			Help: "Task attempts that ended, by kind and outcome (succeeded, retry, dead, timeout, rejected, canceled, unknown_kind).",
		}, []string{"kind", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "atomicflow_task_duration_seconds",
			Help:    "Handler run time of task attempts, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 11), // 100µs .. ~105s
		}, []string{"kind"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.tasks, m.duration,
		&regionCollector{src: src},
	)
	return m
}

// TaskDone records one finished attempt.
func (m *Metrics) TaskDone(kind, outcome string, d time.Duration) {
	m.tasks.WithLabelValues(kind, outcome).Inc()
	if d > 0 {
		m.duration.WithLabelValues(kind).Observe(d.Seconds())
	}
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// regionCollector turns the shared region into metrics on every scrape.
type regionCollector struct{ src Sources }

var (
	descCounters = map[shm.Counter]*prometheus.Desc{
		shm.Submitted:   prometheus.NewDesc("atomicflow_tasks_submitted_total", "Tasks accepted.", nil, nil),
		shm.Dispatched:  prometheus.NewDesc("atomicflow_tasks_dispatched_total", "Task attempts sent to a worker.", nil, nil),
		shm.Completed:   prometheus.NewDesc("atomicflow_tasks_completed_total", "Task attempts that succeeded, counted by the workers.", nil, nil),
		shm.Failed:      prometheus.NewDesc("atomicflow_tasks_failed_total", "Task attempts that failed, counted by the workers.", nil, nil),
		shm.Retried:     prometheus.NewDesc("atomicflow_tasks_retried_total", "Failed attempts queued again with backoff.", nil, nil),
		shm.Redelivered: prometheus.NewDesc("atomicflow_tasks_redelivered_total", "Tasks delivered again because their worker died.", nil, nil),
		shm.Dead:        prometheus.NewDesc("atomicflow_tasks_dead", "Tasks in the dead-letter state.", nil, nil),
		shm.Canceled:    prometheus.NewDesc("atomicflow_tasks_canceled_total", "Tasks canceled.", nil, nil),
	}
	descQueue     = prometheus.NewDesc("atomicflow_queue_depth", "Tasks waiting to run.", nil, nil)
	descInFlight  = prometheus.NewDesc("atomicflow_tasks_in_flight", "Tasks running on workers.", nil, nil)
	descClients   = prometheus.NewDesc("atomicflow_dashboard_clients", "Open dashboard WebSocket connections.", nil, nil)
	descWorkers   = prometheus.NewDesc("atomicflow_workers", "Worker slots by state.", []string{"state"}, nil)
	descRestarts  = prometheus.NewDesc("atomicflow_worker_restarts_total", "Worker processes replaced, by cause.", []string{"cause"}, nil)
	descRSS       = prometheus.NewDesc("atomicflow_worker_rss_bytes", "Resident memory of each worker process.", []string{"slot"}, nil)
	descCPU       = prometheus.NewDesc("atomicflow_worker_cpu_seconds_total", "CPU time of each worker process (user+system); starts again from 0 when the slot's process is replaced.", []string{"slot"}, nil)
	descWInFlight = prometheus.NewDesc("atomicflow_worker_in_flight", "Tasks running on each worker.", []string{"slot"}, nil)
	trackedStates = []shm.State{shm.StateStarting, shm.StateReady, shm.StateDraining, shm.StateStopped, shm.StateDead, shm.StateBackoff}
)

func (c *regionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descCounters {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{descQueue, descInFlight, descClients, descWorkers, descRestarts, descRSS, descCPU, descWInFlight} {
		ch <- d
	}
}

func (c *regionCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.src.Region
	for counter, d := range descCounters {
		kind := prometheus.CounterValue
		if counter == shm.Dead {
			kind = prometheus.GaugeValue
		}
		ch <- prometheus.MustNewConstMetric(d, kind, float64(r.Counter(counter).Load()))
	}
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(r.Counter(shm.Queued).Load()))
	ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(r.Counter(shm.InFlight).Load()))
	ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(r.Counter(shm.WSClients).Load()))
	byState := map[shm.State]int{}
	for _, s := range r.Snapshots() {
		if s.State == shm.StateEmpty {
			continue
		}
		byState[s.State]++
		slot := strconv.Itoa(s.Slot)
		if s.PID > 0 && (s.State == shm.StateReady || s.State == shm.StateDraining) {
			ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(s.RSSBytes), slot)
			ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, s.CPUTime.Seconds(), slot)
			ch <- prometheus.MustNewConstMetric(descWInFlight, prometheus.GaugeValue, float64(s.InFlight), slot)
		}
	}
	for _, st := range trackedStates {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(byState[st]), st.String())
	}
	if c.src.RestartCauses != nil {
		for cause, n := range c.src.RestartCauses() {
			ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), cause)
		}
	}
}
