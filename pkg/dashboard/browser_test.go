package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/web"
)

const chromiumPath = "/usr/bin/chromium"

// screenshotPath is where TestPageInBrowser leaves a picture of the page.
const screenshotPath = "/tmp/dashboard.png"

// TestPageInBrowser serves the embedded page and a real hub over a real
// region and drives headless Chromium: the cards, the task field's level of
// detail and the connection banner must follow the region.
func TestPageInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the browser test needs %s: %v", chromiumPath, err)
		}
		t.Skipf("no browser at %s: %v", chromiumPath, err)
	}

	// Six slots: four running workers, two never used (no cards for them).
	r := newRegion(t, 6)
	started := time.Now().Add(-95 * time.Second)
	for i := range 4 {
		r.Slot(i).SetIdentity(shm.Identity{PID: 4100 + i, Generation: 1, State: shm.StateReady, Started: started})
		worker(r, i).SetCapacity(10000)
	}
	log := dashboard.NewEventLog(0)
	for i := range 4 {
		log.Add(i, "started", fmt.Sprintf("worker %d started pid=%d", i, 4100+i))
		log.Add(i, "ready", fmt.Sprintf("worker %d ready gen=1 capacity=10000", i))
	}
	setInFlight(r, 4, 3, 2, 1) // 10 in flight

	feeder := startFeeder(r, 4)
	defer feeder.stop()

	hub := dashboard.NewHub(dashboard.HubConfig{Sampler: dashboard.NewSampler(r, log), Region: r, Interval: 50 * time.Millisecond})
	mux := http.NewServeMux()
	mux.Handle("/ws", hub)
	mux.Handle("/", http.FileServerFS(web.FS()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	hubCtx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hubCtx) }()
	var stopOnce sync.Once
	var runErr error
	stop := func() error { // ends Run and waits for it, once
		stopOnce.Do(func() { stopHub(); runErr = <-hubDone })
		return runErr
	}
	defer stop()

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	// Uncaught exceptions and console.error calls of the page fail the test.
	var mu sync.Mutex
	var pageErrors []string
	consoleDone := make(chan struct{})
	messages := chromedp.Console(bctx)
	go func() {
		defer close(consoleDone)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || (m.Type == chromedp.ConsoleError && len(m.Args) > 0) {
				mu.Lock()
				pageErrors = append(pageErrors, m.Text)
				mu.Unlock()
			}
		}
	}()
	defer func() { cancelBrowser(); <-consoleDone }()

	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatalf("navigate: %v", err)
	}
	waitJS(t, bctx, "four worker cards", `document.querySelectorAll('.worker-card').length === 4`)
	waitJS(t, bctx, "connected", `document.querySelector('#conn-status').textContent === 'connected' &&
		!document.querySelector('#conn-status').classList.contains('disconnected')`)
	waitJS(t, bctx, "40px cells for 10 tasks", `document.querySelector('#task-field').dataset.cellSize === '40' &&
		document.querySelector('#task-field').dataset.drawn === '10'`)
	waitJS(t, bctx, "card fields", `(() => {
		const c = document.querySelector('.worker-card[data-slot="2"]');
		return c.dataset.state === 'ready' && c.querySelector('.pid').textContent === '4102' &&
			c.querySelector('.generation').textContent === '1' && c.querySelector('.state').textContent === 'ready' &&
			c.querySelector('button.kill') && c.querySelector('button.restart');
	})()`)
	waitJS(t, bctx, "events newest first", `(() => {
		const li = [...document.querySelectorAll('#events li')].map(e => Number(e.dataset.seq));
		return li.length === 8 && li.every((s, i) => i === 0 || s < li[i - 1]);
	})()`)
	shot(t, bctx, "/tmp/dashboard-blocks.png")

	setInFlight(r, 5000, 5000, 5000, 5000) // 20,000 in flight
	waitJS(t, bctx, "4px star dust for 20,000 tasks", `document.querySelector('#task-field').dataset.cellSize === '4' &&
		document.querySelector('#task-field').dataset.total === '20000'`)
	time.Sleep(200 * time.Millisecond) // a few twinkling frames
	ds, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]string](`({...document.querySelector('#task-field').dataset})`))
	t.Logf("20,000 in flight: %s cells drawn, last draw %s ms", ds["drawn"], ds["drawMs"])
	if err != nil || ds["drawn"] == "0" {
		t.Errorf("field = %v (%v), want cells drawn", ds, err)
	}
	// On a high-density screen the backing store follows devicePixelRatio
	// and the level of detail (in CSS pixels) stays.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1440, 1000, chromedp.EmulateScale(2))); err != nil {
		t.Fatalf("emulate dpr 2: %v", err)
	}
	waitJS(t, bctx, "a 2x backing store", `(() => {
		const c = document.querySelector('#task-field');
		return window.devicePixelRatio === 2 && c.width === Math.round(c.clientWidth * 2) && c.dataset.cellSize === '4';
	})()`)
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(1440, 1000)); err != nil {
		t.Fatalf("emulate dpr 1: %v", err)
	}
	// A control call against a server without the API shows its error.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`.worker-card[data-slot="1"] button.kill`))); err != nil {
		t.Fatalf("click kill: %v", err)
	}
	waitJS(t, bctx, "the failed kill's message", `(() => {
		const e = document.querySelector('.worker-card[data-slot="1"] .wc-error');
		return !e.hidden && e.textContent.includes('404');
	})()`)
	time.Sleep(300 * time.Millisecond) // let the sparkline and cpu figures settle
	shot(t, bctx, screenshotPath)

	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	waitJS(t, bctx, "reconnecting banner", `document.querySelector('#conn-status').textContent.includes('reconnecting') &&
		document.querySelector('#conn-status').classList.contains('disconnected')`)

	mu.Lock()
	defer mu.Unlock()
	for _, e := range pageErrors {
		t.Errorf("page error: %s", e)
	}
}

// waitJS polls a JavaScript predicate until it is true, failing after 5s.
func waitJS(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+predicate+")", chromedp.WithPollingTimeout(5*time.Second),
		chromedp.WithPollingInterval(25*time.Millisecond))); err != nil {
		dump, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[string](`JSON.stringify({
			conn: document.querySelector('#conn-status').textContent,
			cards: document.querySelectorAll('.worker-card').length,
			field: {...document.querySelector('#task-field').dataset}})`))
		t.Fatalf("waiting for %s: %v; page: %s", what, err, dump)
	}
}

func shot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

func setInFlight(r *shm.Region, n ...int64) {
	var total int64
	for i, v := range n {
		worker(r, i).InFlight().Store(v)
		total += v
	}
	r.Counter(shm.InFlight).Store(total)
}

// feeder plays the workers: it completes tasks and beats heartbeats, so the
// page has rates, CPU and RSS to show.
type feeder struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startFeeder(r *shm.Region, slots int) *feeder {
	ctx, cancel := context.WithCancel(context.Background())
	f := &feeder{cancel: cancel}
	f.wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		cpu := make([]time.Duration, slots)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				for s := range slots {
					done := int64(20 + 7*s + i%13)
					worker(r, s).Completed().Add(done)
					r.Counter(shm.Completed).Add(done)
					r.Counter(shm.Submitted).Add(done + 3)
					if (i+s)%9 == 0 {
						worker(r, s).Failed().Add(1)
						r.Counter(shm.Failed).Add(1)
					}
					cpu[s] += time.Duration(4+3*s) * time.Millisecond
					worker(r, s).Beat(shm.Heartbeat{At: now, RSSBytes: int64(38+9*s) << 20, CPUTime: cpu[s], Goroutines: 40})
				}
				r.Counter(shm.Queued).Store(int64(1200 + (i*37)%400))
			}
		}
	})
	return f
}

func (f *feeder) stop() {
	f.cancel()
	f.wg.Wait()
}
