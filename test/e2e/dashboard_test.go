package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// screenshotFile is where TestDashboard/UnderLoad leaves its picture of the
// dashboard: the README's docs/dashboard.png with UPDATE_SCREENSHOT=1
// (`UPDATE_SCREENSHOT=1 CI=1 go test -race -run 'TestDashboard/UnderLoad'
// ./test/e2e/`), else a temp file, so an ordinary test run leaves the work
// tree clean.
func screenshotFile(t *testing.T) string {
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		return filepath.Join("..", "..", "docs", "dashboard.png")
	}
	return filepath.Join(t.TempDir(), "dashboard.png")
}

const connectedJS = `document.querySelector('#conn-status').textContent === 'connected' &&
	!document.querySelector('#conn-status').classList.contains('disconnected')`

const reconnectingJS = `document.querySelector('#conn-status').textContent.includes('reconnecting') &&
	document.querySelector('#conn-status').classList.contains('disconnected')`

// TestDashboard drives the dashboard of real masters, with real workers, in
// one headless Chromium: every subtest starts its own master and opens its
// own tabs, and reads the page's DOM against the master's API.
func TestDashboard(t *testing.T) {
	b := newBrowser(t)
	t.Run("Cards", func(t *testing.T) { testDashboardCards(t, b) })
	t.Run("Kill", func(t *testing.T) { testDashboardKill(t, b) })
	t.Run("LoadPanel", func(t *testing.T) { testDashboardLoadPanel(t, b) })
	t.Run("LevelOfDetail", func(t *testing.T) { testDashboardLevelOfDetail(t, b) })
	t.Run("ProgressAndKinds", func(t *testing.T) { testDashboardProgressAndKinds(t, b) })
	t.Run("UnderLoad", func(t *testing.T) { testDashboardUnderLoad(t, b) })
	t.Run("TwoPagesAgree", func(t *testing.T) { testDashboardTwoPagesAgree(t, b) })
	t.Run("Reconnect", func(t *testing.T) { testDashboardReconnect(t, b) })
}

// The page shows one card per worker, with the pid the API reports.
func testDashboardCards(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 3})
	ws := m.waitReady(3)
	p := b.open(t, m.URL+"/")
	p.wait("connected", 10*time.Second, connectedJS)
	p.wait("3 cards with the API's pids", 10*time.Second, cardsMatchJS(ws))

	cards := p.cards()
	api := m.workers()
	if len(cards) != 3 || len(api) != 3 {
		t.Fatalf("page shows %d cards, API lists %d workers; want 3 and 3: %v", len(cards), len(api), cards)
	}
	for _, w := range api {
		c, ok := cards[w.Slot]
		if !ok {
			t.Fatalf("no card for slot %d: %v", w.Slot, cards)
		}
		if c.PID != strconv.Itoa(w.PID) || c.Generation != strconv.FormatUint(w.Generation, 10) || c.State != w.State {
			t.Errorf("slot %d: card %+v, API pid %d gen %d state %s", w.Slot, c, w.PID, w.Generation, w.State)
		}
	}
	if n := eval[int](p, `document.querySelectorAll('.worker-card button.kill, .worker-card button.restart').length`); n != 6 {
		t.Errorf("%d kill/restart buttons, want 6", n)
	}
}

// Kill on a card replaces that worker, shown within 2 s; the other cards
// keep their pids and generations.
func testDashboardKill(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 3})
	before := m.waitReady(3)
	p := b.open(t, m.URL+"/")
	p.wait("the API's pids", 10*time.Second, cardsMatchJS(before))
	shown := p.cards()
	const slot = 1
	victim := before[slot]

	p.do("click Kill", chromedp.Click(chromedp.CSS(fmt.Sprintf(`.worker-card[data-slot="%d"] button.kill`, slot))))
	clicked := time.Now()
	err := p.poll(2*time.Second, fmt.Sprintf(`(() => {
		const c = document.querySelector('.worker-card[data-slot="%d"]');
		const pid = c.querySelector('.pid').textContent;
		return /^[0-9]+$/.test(pid) && pid !== '%d' && c.querySelector('.generation').textContent === '%d';
	})()`, slot, victim.PID, victim.Generation+1))
	if err != nil {
		t.Fatalf("within 2 s of Kill the card does not show a new pid and generation %d: %v; page: %s",
			victim.Generation+1, err, p.dump())
	}
	t.Logf("Kill → new pid on the card in %v", time.Since(clicked).Round(time.Millisecond))

	after := p.cards()
	api := m.workers()
	if got := after[slot]; got.PID != strconv.Itoa(api[slot].PID) || got.Generation != strconv.FormatUint(api[slot].Generation, 10) {
		t.Errorf("slot %d: card %+v, API %+v", slot, got, api[slot])
	}
	if api[slot].PID == victim.PID || api[slot].Generation != victim.Generation+1 {
		t.Errorf("slot %d in the API: %+v, want a new pid and generation %d", slot, api[slot], victim.Generation+1)
	}
	for _, w := range before {
		if w.Slot == slot {
			continue
		}
		if after[w.Slot] != shown[w.Slot] {
			t.Errorf("slot %d card changed: %+v → %+v", w.Slot, shown[w.Slot], after[w.Slot])
		}
		if api[w.Slot].PID != w.PID || api[w.Slot].Generation != w.Generation {
			t.Errorf("slot %d disturbed in the API: %+v → %+v", w.Slot, w, api[w.Slot])
		}
	}
	if alive(victim.PID) {
		t.Errorf("killed pid %d still alive", victim.PID)
	}
	// The replacement becomes ready, and the page says so.
	p.wait("the replacement ready", 10*time.Second, fmt.Sprintf(
		`document.querySelector('.worker-card[data-slot="%d"]').dataset.state === 'ready'`, slot))
	if n := eval[int](p, `document.querySelectorAll('#events li[data-kind]').length`); n == 0 {
		t.Errorf("no events listed after the kill; page: %s", p.dump())
	}
}

// The load panel submits tasks through the API and the counters follow.
func testDashboardLoadPanel(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	p := b.open(t, m.URL+"/")
	p.wait("connected", 10*time.Second, connectedJS)

	p.do("fill in the load panel",
		chromedp.SetValue(chromedp.CSS(`#load-kind`), "echo"),
		chromedp.SetValue(chromedp.CSS(`#load-count`), "500"),
	)
	// SetValue sets the property; a person's choice also fires change.
	eval[bool](p, `document.querySelector('#load-kind').dispatchEvent(new Event('change', {bubbles: true}))`)
	if d := eval[bool](p, `document.querySelector('#load-duration').disabled`); !d {
		t.Errorf("duration input enabled for kind echo")
	}
	p.do("click Submit", chromedp.Click(chromedp.CSS(`#load-submit`)))
	p.wait("submitted 500", 10*time.Second, `document.querySelector('#load-status').textContent === 'submitted 500'`)
	p.wait("completed ≥ 500", 10*time.Second, counterJS("completed")+` >= 500`)

	// The page and the API agree once the load is done.
	var st map[string]int64
	waitFor(t, 10*time.Second, "the API's stats to settle at 500", func() bool {
		st = m.stats()
		return st["completed"] == 500 && st["in_flight"] == 0
	})
	p.wait("the page's counters equal the API's", 10*time.Second, fmt.Sprintf("%s === %d && %s === %d && %s === 0",
		counterJS("completed"), st["completed"], counterJS("submitted"), st["submitted"], counterJS("failed")))
	if st["submitted"] != 500 || st["failed"] != 0 {
		t.Errorf("API stats %v, want 500 submitted and none failed", st)
	}
	var sum int64
	for _, w := range m.workers() {
		sum += w.Completed
	}
	if sum != 500 {
		t.Errorf("workers completed %d in all, want 500", sum)
	}
}

// The task field draws 40 px cells for a few tasks and 4 px star dust for
// 20,000.
func testDashboardLevelOfDetail(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 2, args: []string{"--capacity", "10000"}})
	m.waitReady(2)
	p := b.open(t, m.URL+"/")
	p.do("1400x900 viewport", chromedp.EmulateViewport(1400, 900))
	p.wait("connected", 10*time.Second, connectedJS)

	// Some finished work first, so the screenshot has numbers to show.
	echo := make([]map[string]any, 3000)
	for i := range echo {
		echo[i] = map[string]any{"kind": "echo", "payload": map[string]any{"n": i}}
	}
	m.submit(echo)
	m.waitStat("completed", 3000, 20*time.Second)

	m.submit(sleepTasks(10, 20000))
	waitFor(t, 10*time.Second, "10 in flight", func() bool { return m.stats()["in_flight"] == 10 })
	p.wait("40 px cells for 10 tasks", 10*time.Second, `(() => {
		const d = document.querySelector('#task-field').dataset;
		return d.cellSize === '40' && d.drawn === '10' && d.total === '10';
	})()`)

	// 20,000 more: each worker's 10,000 slots fill, ten wait in the queue.
	start := time.Now()
	m.submit(sleepTasks(20000, 20000))
	t.Logf("20,000 submitted in %v", time.Since(start).Round(time.Millisecond))
	waitFor(t, 15*time.Second, "20,000 in flight", func() bool { return m.stats()["in_flight"] == 20000 })
	t.Logf("20,000 in flight %v after the submit began", time.Since(start).Round(time.Millisecond))
	p.wait("4 px star dust for 20,000 tasks", 10*time.Second, `(() => {
		const d = document.querySelector('#task-field').dataset;
		return d.cellSize === '4' && d.total === '20000' && Number(d.drawn) > 0;
	})()`)
	p.wait("the cards' loads", 10*time.Second, `[...document.querySelectorAll('.worker-card .inflight')].every(e => e.textContent === '10,000 / 10,000')`)
	time.Sleep(300 * time.Millisecond) // a few twinkling frames
	ds := eval[map[string]string](p, `({...document.querySelector('#task-field').dataset})`)
	t.Logf("20,000 in flight: %s cells drawn, last draw %s ms", ds["drawn"], ds["drawMs"])
	if st := m.stats(); st["in_flight"] != 20000 {
		t.Errorf("in flight %d, want 20000", st["in_flight"])
	}
	p.wait("still 4 px", 5*time.Second, `document.querySelector('#task-field').dataset.cellSize === '4'`)
}

// The load panel offers the kinds the workers serve, and the progress panel
// lists the running tasks that report progress. Both come from the engine
// through the frames (dashboard.WithKinds, dashboard.WithProgress).
func testDashboardProgressAndKinds(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 2, args: []string{"--worker-bin", bins.testworker}})
	m.waitReady(2)
	p := b.open(t, m.URL+"/")
	p.wait("connected", 10*time.Second, connectedJS)
	if err := p.poll(5*time.Second, `document.querySelector('#load-kind').dataset.source === 'master'`); err != nil {
		t.Fatalf("the load panel never took its kinds from the master's frames: %v", err)
	}
	kinds := eval[[]string](p, `[...document.querySelector('#load-kind').options].map(o => o.value)`)
	if !slices.IsSorted(kinds) {
		t.Errorf("kinds not sorted: %v", kinds)
	}
	for _, k := range []string{"cpu", "echo", "fail", "sleep", "panic", "progress"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("the load panel lacks kind %q of the test worker: %v", k, kinds)
		}
	}
	if v := eval[string](p, `document.querySelector('#load-kind').value`); v != "sleep" {
		t.Errorf("selected kind %q, want sleep", v)
	}

	// "progress" reports 0.5 "halfway", then sleeps 2 s.
	ids := m.submit([]map[string]any{{"kind": "progress"}, {"kind": "progress"}, {"kind": "progress"}})
	p.wait("three progress rows at 50%", 5*time.Second, `(() => {
		const rows = [...document.querySelectorAll('#progress li')];
		return !document.querySelector('#progress-panel').hidden && rows.length === 3 &&
			rows.every(r => r.querySelector('.pg-pct').textContent === '50%' &&
				r.querySelector('.pg-msg').textContent === 'halfway' && r.querySelector('.pg-kind').textContent === 'progress');
	})()`)
	rows := eval[map[string]string](p, `Object.fromEntries([...document.querySelectorAll('#progress li')].map(r => [r.dataset.id, r.querySelector('.ev-slot').textContent]))`)
	for _, id := range ids {
		v := m.task(id)
		if v.WorkerSlot == nil || rows[id] != fmt.Sprintf("w%d", *v.WorkerSlot) {
			t.Errorf("task %s runs on %v; the progress row says %q", id, v.WorkerSlot, rows[id])
		}
	}
	p.wait("no progress panel once they finished", 10*time.Second, `document.querySelector('#progress-panel').hidden`)
}

// The page under a steady load on 4 workers, after one was killed from its
// card: rates, thousands of tasks in flight, the kill in the event log, and
// every figure on the cards in full. It leaves the README's screenshot.
func testDashboardUnderLoad(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 4, args: []string{"--capacity", "10000"}})
	m.waitReady(4)
	p := b.open(t, m.URL+"/")
	p.do("1440x900 viewport", chromedp.EmulateViewport(1440, 900))
	p.wait("connected", 10*time.Second, connectedJS)

	// Every 50 ms: 60 sleeps of 2.5 s (~3,000 in flight), 20 echoes and a
	// failing task.
	batch := sleepTasks(60, 2500)
	for i := range 20 {
		batch = append(batch, map[string]any{"kind": "echo", "payload": map[string]any{"n": i}})
	}
	batch = append(batch, map[string]any{"kind": "fail", "payload": map[string]any{"message": "bad input"}, "max_attempts": 1})
	ctx, stop := context.WithCancel(context.Background())
	var loadErr error
	var wg sync.WaitGroup
	wg.Go(func() { loadErr = submitEvery(ctx, m.URL, batch, 50*time.Millisecond) })
	defer func() {
		stop()
		wg.Wait()
	}()
	waitFor(t, 20*time.Second, "2,000 in flight", func() bool { return m.stats()["in_flight"] >= 2000 })
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		time.Sleep(10 * time.Second) // for the docs: a longer sparkline, older workers
	}

	// Kill one worker from its card; it comes back with a new pid.
	const slot = 2
	victim := m.workers()[slot]
	p.do("click Kill", chromedp.Click(chromedp.CSS(fmt.Sprintf(`.worker-card[data-slot="%d"] button.kill`, slot))))
	p.wait("the replacement ready on the card", 10*time.Second, fmt.Sprintf(`(() => {
		const c = document.querySelector('.worker-card[data-slot="%d"]');
		return c.dataset.state === 'ready' && c.querySelector('.generation').textContent === '%d';
	})()`, slot, victim.Generation+1))
	p.wait("the kill in the event log", 5*time.Second, `document.querySelector('#events li[data-kind="killed"]') !== null`)
	waitFor(t, 20*time.Second, "2,500 in flight again", func() bool { return m.stats()["in_flight"] >= 2500 })
	p.wait("non-zero rates", 10*time.Second, `Number(document.querySelector('#rate-completed').textContent.replace(/,/g, '')) > 500 &&
		Number(document.querySelector('#rate-submitted').textContent.replace(/,/g, '')) > 500`)
	time.Sleep(2 * time.Second) // a few seconds of sparkline
	p.wait("the kill's toast gone", 5*time.Second, `document.querySelector('#toast').hidden`)

	cut := eval[[]string](p, `[...document.querySelectorAll('.worker-card dd, .worker-card dt, .worker-card .inflight, .worker-card .wc-ids b, .stat .value')]
		.filter(e => e.scrollWidth > e.clientWidth + 0.5)
		.map(e => (e.closest('[data-slot]') ? 'card ' + e.closest('[data-slot]').dataset.slot + ' ' : '') + e.className + ': ' + e.textContent)`)
	if len(cut) > 0 {
		t.Errorf("text cut off: %v", cut)
	}
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	st := m.stats()
	t.Logf("at the screenshot: %d in flight, %d completed, %d failed, %d redelivered, %d restarts", st["in_flight"], st["completed"], st["failed"], st["redelivered"], st["restarts"])
	screenshotPath := screenshotFile(t)
	if err := os.MkdirAll(filepath.Dir(screenshotPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(screenshotPath)
	t.Logf("screenshot: %s (%d bytes)", abs, len(png))
	stop()
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("load: %v", loadErr)
	}
}

// Two pages show the same completed count for the same frame.
func testDashboardTwoPagesAgree(t *testing.T, b *browser) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	pages := []*page{b.open(t, m.URL+"/"), b.open(t, m.URL+"/")}
	for _, p := range pages {
		p.wait("connected", 10*time.Second, connectedJS)
	}

	// A steady load: 50 echo tasks every 25 ms.
	ctx, stop := context.WithCancel(context.Background())
	var loadErr error
	var wg sync.WaitGroup
	wg.Go(func() { loadErr = steadyLoad(ctx, m.URL, 50, 25*time.Millisecond) })
	defer func() {
		stop()
		wg.Wait()
	}()
	for _, p := range pages {
		p.wait("completed counting", 10*time.Second, counterJS("completed")+` > 500`)
	}

	type sample struct {
		Seq       int64 `json:"seq"`
		Completed int64 `json:"completed"`
	}
	sampleJS := `({seq: Number(document.body.dataset.frameSeq), completed: ` + counterJS("completed") + `})`
	read := func(p *page, out *sample) error {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[sample](sampleJS))
		*out = v
		return err
	}
	seen := []map[int64]int64{{}, {}} // by page: seq → completed shown
	var same, apart, far int
	var first, last sample
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		var s [2]sample
		var errs [2]error
		var rg sync.WaitGroup
		for i := range pages {
			rg.Go(func() { errs[i] = read(pages[i], &s[i]) })
		}
		rg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("page %d: %v", i, err)
			}
			if c, ok := seen[i][s[i].Seq]; ok && c != s[i].Completed {
				t.Fatalf("page %d shows frame %d with completed %d and %d", i, s[i].Seq, c, s[i].Completed)
			}
			seen[i][s[i].Seq] = s[i].Completed
		}
		if first.Seq == 0 {
			first = s[0]
		}
		last = s[0]
		switch d := s[0].Seq - s[1].Seq; {
		case d == 0:
			same++
			if s[0].Completed != s[1].Completed {
				t.Errorf("frame %d: page 0 shows completed %d, page 1 shows %d", s[0].Seq, s[0].Completed, s[1].Completed)
			}
		case d == 1 || d == -1:
			apart++
		default:
			far++
			t.Logf("pages %d frames apart: %+v %+v", d, s[0], s[1])
		}
		time.Sleep(15 * time.Millisecond)
	}
	stop()
	wg.Wait()
	if loadErr != nil {
		t.Fatalf("load: %v", loadErr)
	}

	// Every frame both pages showed carries the same count on both.
	common := 0
	for seq, c0 := range seen[0] {
		if c1, ok := seen[1][seq]; ok {
			common++
			if c0 != c1 {
				t.Errorf("frame %d: page 0 showed completed %d, page 1 %d", seq, c0, c1)
			}
		}
	}
	total := same + apart + far
	t.Logf("%d simultaneous reads: %d on the same frame, %d one frame apart, %d further; %d frames seen by both; completed %d → %d over frames %d → %d",
		total, same, apart, far, common, first.Completed, last.Completed, first.Seq, last.Seq)
	if common < 10 || same < total/4 {
		t.Errorf("too few reads of a common frame (%d frames, %d of %d reads): the pages do not show the same frames", common, same, total)
	}
	if far > total/10 {
		t.Errorf("%d of %d reads were more than one frame apart", far, total)
	}
	if last.Seq-first.Seq < 20 || last.Completed <= first.Completed {
		t.Errorf("frames %d → %d, completed %d → %d: the page did not follow a steady load", first.Seq, last.Seq, first.Completed, last.Completed)
	}
}

// steadyLoad submits n echo tasks every period until ctx ends.
func steadyLoad(ctx context.Context, url string, n int, period time.Duration) error {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{"kind": "echo", "payload": map[string]any{"n": i}}
	}
	return submitEvery(ctx, url, tasks, period)
}

// submitEvery submits the batch tasks every period until ctx ends.
func submitEvery(ctx context.Context, url string, tasks []map[string]any, period time.Duration) error {
	body, err := json.Marshal(map[string]any{"tasks": tasks})
	if err != nil {
		return err
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, "POST", url+"/api/v1/tasks/batch", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("batch submit: %s", resp.Status)
		}
	}
}

// A page whose master goes away says it is reconnecting, and comes back
// when a new master listens on the same address.
func testDashboardReconnect(t *testing.T, b *browser) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	runDir := filepath.Join(shortTemp(t), "run")
	o := options{workers: 2, runDir: runDir, args: []string{"--listen", addr}}

	m1 := startMaster(t, o)
	if m1.URL != "http://"+addr {
		t.Fatalf("master listens on %s, want http://%s", m1.URL, addr)
	}
	old := m1.waitReady(2)
	p := b.open(t, m1.URL+"/")
	p.wait("connected", 10*time.Second, connectedJS)
	p.wait("the first master's pids", 10*time.Second, cardsMatchJS(old))

	m1.signal(syscall.SIGTERM)
	p.wait("reconnecting", 10*time.Second, reconnectingJS)
	if code := m1.waitExit(30 * time.Second); code != 0 {
		t.Fatalf("master exited with %d after SIGTERM", code)
	}
	time.Sleep(500 * time.Millisecond) // a retry or two against nothing
	if !eval[bool](p, reconnectingJS) {
		t.Fatalf("with no master the page does not say reconnecting: %s", p.dump())
	}

	m2 := startMaster(t, o)
	fresh := m2.waitReady(2)
	for _, w := range fresh {
		for _, o := range old {
			if w.PID == o.PID {
				t.Fatalf("new master's worker has the old pid %d", w.PID)
			}
		}
	}
	p.wait("connected again", 10*time.Second, connectedJS)
	p.wait("the new master's pids", 10*time.Second, cardsMatchJS(m2.workers()))
}
