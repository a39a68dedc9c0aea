package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, as in pkg/dashboard's browser test.
const chromiumPath = "/usr/bin/chromium"

// browser is one headless Chromium that the dashboard tests share; each page
// is a tab of it.
type browser struct {
	ctx context.Context // the browser's first tab: parent of every page
}

// newBrowser starts headless Chromium for the test and stops it when the
// test ends. Without Chromium the test fails when CI is set and is skipped
// otherwise.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the browser tests need %s: %v", chromiumPath, err)
		}
		t.Skipf("no browser at %s: %v", chromiumPath, err)
	}
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
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", chromiumPath, err)
	}
	return &browser{ctx: bctx}
}

// page is one tab showing the dashboard.
type page struct {
	t   *testing.T
	ctx context.Context
}

// open opens url in a new tab, closed when the test ends. Uncaught
// exceptions and console.error calls of the page fail the test.
func (b *browser) open(t *testing.T, url string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	var mu sync.Mutex
	var pageErrors []string
	messages := chromedp.Console(ctx)
	consoleDone := make(chan struct{})
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
	t.Cleanup(func() {
		cancel()
		<-consoleDone
		mu.Lock()
		defer mu.Unlock()
		for _, e := range pageErrors {
			t.Errorf("page %s: error: %s", url, e)
		}
	})
	p := &page{t: t, ctx: ctx}
	nctx, ncancel := context.WithTimeout(ctx, 15*time.Second)
	defer ncancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate to %s: %v", url, err)
	}
	return p
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// do runs actions in the page, bounded by 10 s.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// wait polls a JavaScript predicate in the page until it holds, and fails
// the test with a dump of the page when it does not within timeout.
func (p *page) wait(what string, timeout time.Duration, predicate string) {
	p.t.Helper()
	if err := p.poll(timeout, predicate); err != nil {
		p.t.Fatalf("waiting %v for %s: %v; page: %s", timeout, what, err, p.dump())
	}
}

func (p *page) poll(timeout time.Duration, predicate string) error {
	ctx, cancel := context.WithTimeout(p.ctx, timeout+time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+predicate+")",
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond)))
	return err
}

// dump describes what the page shows, for failure messages.
func (p *page) dump() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), 3*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({
		conn: document.querySelector('#conn-status').textContent,
		seq: document.body.dataset.frameSeq,
		counters: Object.fromEntries([...document.querySelectorAll('.stat[data-counter]')].map(e => [e.dataset.counter, e.querySelector('.value').textContent])),
		cards: [...document.querySelectorAll('.worker-card')].map(c => c.dataset.slot + ':' + c.querySelector('.state').textContent +
			' pid ' + c.querySelector('.pid').textContent + ' gen ' + c.querySelector('.generation').textContent),
		field: {...document.querySelector('#task-field').dataset},
		load: document.querySelector('#load-status').textContent})`))
	if err != nil {
		return "(no dump: " + err.Error() + ")"
	}
	return s
}

// card is what a worker card shows.
type card struct {
	Slot       int    `json:"slot"`
	PID        string `json:"pid"`
	Generation string `json:"generation"`
	State      string `json:"state"`
}

const cardsJS = `[...document.querySelectorAll('.worker-card[data-slot]')].map(c => ({
	slot: Number(c.dataset.slot),
	pid: c.querySelector('.pid').textContent,
	generation: c.querySelector('.generation').textContent,
	state: c.querySelector('.state').textContent}))`

// cards reads the worker cards, by slot.
func (p *page) cards() map[int]card {
	p.t.Helper()
	out := map[int]card{}
	for _, c := range eval[[]card](p, cardsJS) {
		out[c.Slot] = c
	}
	return out
}

// counterJS is the value of one of the page's global counters, as a number.
func counterJS(name string) string {
	return `Number(document.querySelector('.stat[data-counter="` + name + `"] .value').textContent.replace(/[^0-9]/g, ''))`
}

// cardsMatchJS is a predicate: the page shows exactly these workers' pids
// and generations, one card per worker.
func cardsMatchJS(ws []worker) string {
	var b strings.Builder
	fmt.Fprintf(&b, "(() => { const c = %s; if (c.length !== %d) return false; const by = Object.fromEntries(c.map(x => [x.slot, x]));", cardsJS, len(ws))
	for _, w := range ws {
		fmt.Fprintf(&b, " if (!by[%d] || by[%d].pid !== '%d' || by[%d].generation !== '%d') return false;", w.Slot, w.Slot, w.PID, w.Slot, w.Generation)
	}
	b.WriteString(" return true; })()")
	return b.String()
}
