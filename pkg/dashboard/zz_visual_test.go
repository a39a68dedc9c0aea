package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/web"
)

func TestZZVisual(t *testing.T) {
	r := newRegion(t, 8)
	started := time.Now().Add(-3 * time.Hour)
	states := []shm.State{shm.StateReady, shm.StateReady, shm.StateStarting, shm.StateDraining, shm.StateReady, shm.StateBackoff, shm.StateDead, shm.StateStopped}
	for i, st := range states {
		id := shm.Identity{PID: 5100 + i, Generation: uint64(1 + i%3), State: st, Started: started, Restarts: int64(i % 3)}
		if st == shm.StateBackoff {
			id.PID = 0
			id.BackoffUntil = time.Now().Add(30 * time.Second)
			id.LastExit = -9
		}
		if st == shm.StateDead {
			id.LastExit = 2
		}
		r.Slot(i).SetIdentity(id)
		r.Slot(i).SetCapacity(256)
	}
	log := dashboard.NewEventLog(0)
	kinds := []string{"started", "ready", "exited", "restarting", "backoff", "killed", "restart", "draining", "stopped"}
	for i, k := range kinds {
		log.Add(i%8, k, "worker "+k+" with a somewhat long message to see truncation")
	}
	setInFlight(r, 120, 95, 10, 40, 160, 0, 0, 0)
	f := startFeeder(r, 5)
	defer f.stop()
	hub := dashboard.NewHub(dashboard.HubConfig{Sampler: dashboard.NewSampler(r, log), Region: r})
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/", http.FileServerFS(web.FS()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); hub.Run(ctx) }()
	defer func() { cancel(); <-done }()
	allocCtx, ca := chromedp.NewExecAllocator(context.Background(), chromedp.ExecPath(chromiumPath), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1100))
	defer ca()
	b, cb := chromedp.NewContext(allocCtx)
	defer cb()
	if err := chromedp.Do(b, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(12 * time.Second)
	shot(t, b, "/tmp/visual-states.png")
	if err := chromedp.Do(b, chromedp.EmulateViewport(800, 1400)); err != nil {
		t.Log(err)
	}
	time.Sleep(500 * time.Millisecond)
	shot(t, b, "/tmp/visual-narrow.png")
}
