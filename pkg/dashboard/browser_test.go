package dashboard_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/web"
)

const chromiumPath = "/usr/bin/chromium"

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
		r.Slot(i).SetIdentity(shm.Identity{PID: 4100 + i, Generation: 1, State: shm.StateReady, Started: started, Restarts: int64(i * 411)})
		worker(r, i).SetCapacity(10000)
	}
	log := dashboard.NewEventLog(0)
	for i := range 4 {
		log.Add(i, "started", fmt.Sprintf("worker %d started pid=%d", i, 4100+i))
		log.Add(i, "ready", fmt.Sprintf("worker %d ready gen=1 capacity=10000", i))
	}
	setInFlight(r, 4, 3, 2, 1) // 10 in flight
	// Wide figures, which must fit the cards.
	worker(r, 0).Completed().Store(12_345_678)

	feeder := startFeeder(r, 4)
	defer feeder.stop()

	// The engine's part, faked: the kinds the workers serve and the running
	// tasks' progress.
	var progMu sync.Mutex
	progress := []dashboard.TaskProgress{
		{ID: "01JTASKAAAAAAAAAAAAAAAAAAA", Kind: "resize", Slot: 2, Fraction: 0.25, Message: "1 of 4 images"},
		{ID: "01JTASKBBBBBBBBBBBBBBBBBBB", Kind: "sleep", Slot: 0, Fraction: 0.8},
	}
	sampler := dashboard.NewSampler(r, log,
		dashboard.WithKinds(func() []string { return []string{"echo", "resize", "sleep"} }),
		dashboard.WithProgress(func(int) []dashboard.TaskProgress {
			progMu.Lock()
			defer progMu.Unlock()
			return slices.Clone(progress)
		}))
	hub := dashboard.NewHub(dashboard.HubConfig{Sampler: sampler, Region: r, Interval: 50 * time.Millisecond})
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
	// Only the first frame carried the events above; later ones carry none,
	// and the list stays.
	time.Sleep(time.Duration(dashboard.EventWindow+5) * 50 * time.Millisecond)
	log.Add(3, "killed", "killed with SIGKILL on request")
	waitJS(t, bctx, "a new event on top of the others", `(() => {
		const li = [...document.querySelectorAll('#events li')];
		return li.length === 9 && li[0].dataset.kind === 'killed' && li[0].dataset.seq === '9';
	})()`)
	// The load panel offers the kinds the frames carry.
	waitJS(t, bctx, "the workers' kinds in the load panel", `(() => {
		const s = document.querySelector('#load-kind');
		return s.dataset.source === 'master' && [...s.options].map(o => o.value).join() === 'echo,resize,sleep' && s.value === 'sleep';
	})()`)
	// Progress, the most recently updated first.
	waitJS(t, bctx, "two progress rows", `(() => {
		const p = document.querySelector('#progress-panel');
		const rows = [...document.querySelectorAll('#progress li')];
		return !p.hidden && rows.length === 2 && rows[0].dataset.id === '01JTASKAAAAAAAAAAAAAAAAAAA' &&
			rows[0].querySelector('.pg-pct').textContent === '25%' && rows[0].querySelector('.pg-msg').textContent === '1 of 4 images' &&
			rows[0].querySelector('.pg-kind').textContent === 'resize' && rows[0].querySelector('.ev-slot').textContent === 'w2' &&
			rows[1].querySelector('.pg-pct').textContent === '80%';
	})()`)
	progMu.Lock()
	progress = []dashboard.TaskProgress{{ID: "01JTASKBBBBBBBBBBBBBBBBBBB", Kind: "sleep", Slot: 0, Fraction: 0.9, Message: "almost"}}
	progMu.Unlock()
	waitJS(t, bctx, "the progress list following the frames", `(() => {
		const rows = [...document.querySelectorAll('#progress li')];
		return rows.length === 1 && rows[0].querySelector('.pg-pct').textContent === '90%' && rows[0].querySelector('.pg-msg').textContent === 'almost';
	})()`)
	shotDir := t.TempDir()
	if d := os.Getenv("DASHBOARD_SCREENSHOT_DIR"); d != "" { // to look at them
		shotDir = d
	}
	shot(t, bctx, filepath.Join(shotDir, "dashboard-blocks.png"))

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
	if cut, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](cutTextJS)); err != nil || len(cut) > 0 {
		t.Errorf("card text cut off: %v (%v)", cut, err)
	}
	progMu.Lock()
	progress = nil
	progMu.Unlock()
	waitJS(t, bctx, "no progress panel without progress", `document.querySelector('#progress-panel').hidden`)
	shot(t, bctx, filepath.Join(shotDir, "dashboard.png"))

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

// cutTextJS lists the worker-card texts that do not fit their box.
const cutTextJS = `[...document.querySelectorAll('.worker-card dd, .worker-card .inflight, .worker-card .wc-ids b, .worker-card dt')]
	.filter(e => e.scrollWidth > e.clientWidth + 0.5)
	.map(e => e.closest('.worker-card').dataset.slot + ' ' + e.className + ': ' + e.textContent)`

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
					worker(r, s).Beat(shm.Heartbeat{At: now, RSSBytes: int64(38+29*s)<<20 + 734_003, CPUTime: cpu[s], Goroutines: 40})
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
