package dashboard_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// TestMain fails the run when goroutines outlive the tests: every hub,
// client writer and test server must be gone within a bounded wait.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d before the tests, %d after\n", before, n)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			code = 1
		}
	}
	os.Exit(code)
}

// newRegion creates a region with n slots in a temporary directory.
func newRegion(t testing.TB, n int) *shm.Region {
	t.Helper()
	r, err := shm.Create(filepath.Join(t.TempDir(), "region"), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// worker is the worker-written half of slot i that the slot's current
// process writes (counters and heartbeat).
func worker(r *shm.Region, i int) *shm.Half { return r.Slot(i).Current() }

// testHub is a running hub behind an httptest server.
type testHub struct {
	*dashboard.Hub
	srv    *httptest.Server
	wsURL  string
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // Run's result, set before done closes
}

// startHub runs a hub for cfg (Sampler made from region when nil) on a test
// server at /ws. stop (also run at cleanup) ends Run and waits for it.
func startHub(t testing.TB, region *shm.Region, cfg dashboard.HubConfig) *testHub {
	t.Helper()
	return startHubOn(t, region, cfg, nil)
}

// startHubOn is startHub on a server whose listener is wrap(the test
// listener) when wrap is not nil.
func startHubOn(t testing.TB, region *shm.Region, cfg dashboard.HubConfig, wrap func(net.Listener) net.Listener) *testHub {
	t.Helper()
	if cfg.Sampler == nil {
		cfg.Sampler = dashboard.NewSampler(region, dashboard.NewEventLog(0))
	}
	if cfg.Region == nil {
		cfg.Region = region
	}
	h := dashboard.NewHub(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	th := &testHub{Hub: h, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(th.done)
		th.err = h.Run(ctx)
	}()
	th.srv = httptest.NewUnstartedServer(h)
	if wrap != nil {
		th.srv.Listener = wrap(th.srv.Listener)
	}
	th.srv.Start()
	th.wsURL = "ws" + strings.TrimPrefix(th.srv.URL, "http") + "/ws"
	t.Cleanup(func() {
		th.stop(t)
		th.srv.Close()
	})
	return th
}

// stop ends Run and waits (bounded) for it to return; safe to call twice.
func (th *testHub) stop(t testing.TB) {
	t.Helper()
	th.cancel()
	select {
	case <-th.done:
		if th.err != nil {
			t.Errorf("Run: %v", th.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of its context ending")
	}
}

// dial connects a websocket client with no read limit.
func dial(ctx context.Context, t testing.TB, url string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// frameSeq reads the seq of an encoded frame without decoding the rest (the
// encoder writes "seq" first).
func frameSeq(b []byte) (uint64, error) {
	const prefix = `{"seq":`
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return 0, errors.New("frame does not start with seq")
	}
	rest := b[len(prefix):]
	end := bytes.IndexByte(rest, ',')
	if end < 0 {
		return 0, errors.New("frame seq not terminated")
	}
	return strconv.ParseUint(string(rest[:end]), 10, 64)
}

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
