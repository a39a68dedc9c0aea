package dashboard_test

import (
	"context"
	"encoding/json"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/web"
)

// The master wires the dashboard like this: one event log fed by the
// supervisor, a sampler over the shared region, a hub at /ws beside the
// embedded page, and Run tied to the master's lifetime.
func Example() {
	region, err := shm.Create(filepath.Join(os.TempDir(), "atomicflow-example.shm"), 4)
	if err != nil {
		log.Fatal(err)
	}
	defer region.Close()

	events := dashboard.NewEventLog(0)
	events.Add(0, "started", "worker 0 started")
	// The master's engine also gives the frames the task kinds its workers
	// serve and the progress of running tasks.
	sampler := dashboard.NewSampler(region, events,
		dashboard.WithKinds(func() []string { return []string{"echo", "sleep"} }),
		dashboard.WithProgress(func(max int) []dashboard.TaskProgress { return nil }))
	hub := dashboard.NewHub(dashboard.HubConfig{Sampler: sampler, Region: region})

	mux := http.NewServeMux()
	mux.Handle("GET /ws", hub)
	mux.Handle("GET /", http.FileServerFS(web.FS()))
	mux.HandleFunc("GET /api/v1/workers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string][]dashboard.Worker{"workers": sampler.Workers()})
	})

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	// … serve mux until shutdown …
	stop()
	if err := <-done; err != nil {
		log.Print(err)
	}
}
