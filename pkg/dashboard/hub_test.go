package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/atomicflow/atomicflow/pkg/dashboard"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

func TestHubManyClients(t *testing.T) {
	const clients, frames = 50, 5
	r := newRegion(t, 4)
	th := startHub(t, r, dashboard.HubConfig{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		conns[i] = dial(ctx, t, th.wsURL)
	}
	waitFor(t, 5*time.Second, "50 clients registered", func() bool { return th.Clients() == clients })
	if got := r.Counter(shm.WSClients).Load(); got != clients {
		t.Errorf("ws_clients counter = %d, want %d", got, clients)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			var last uint64
			for n := range frames {
				_, b, err := c.Read(ctx)
				if err != nil {
					t.Errorf("client %d frame %d: %v", i, n, err)
					return
				}
				seq, err := frameSeq(b)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				if seq <= last {
					t.Errorf("client %d: seq %d after %d", i, seq, last)
				}
				last = seq
			}
		})
	}
	wg.Wait()
}

func TestHubSendsLatestFrameOnConnect(t *testing.T) {
	r := newRegion(t, 1)
	// One tick at start, then nothing for an hour: a client gets a frame
	// only if the hub hands it the latest one when it connects.
	th := startHub(t, r, dashboard.HubConfig{Interval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		c := dial(ctx, t, th.wsURL)
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("client %d: no frame on connect: %v", i, err)
		}
		if seq, err := frameSeq(b); err != nil || seq != 1 {
			t.Fatalf("client %d: seq %d (%v), want the first frame", i, seq, err)
		}
	}
}

// A client that never reads must not delay the hub or the other clients: they
// keep getting frames at the tick rate, and the stuck one is dropped when a
// write to it times out.
func TestHubSlowClientDoesNotDelayOthers(t *testing.T) {
	const (
		interval = 20 * time.Millisecond
		// Long enough that a loaded CI machine's scheduling hiccups stay well
		// under the gap that would mean "delayed by the stuck client".
		writeTimeout = 2 * time.Second
		healthy      = 3
	)
	r := newRegion(t, 8)
	log := dashboard.NewEventLog(0)
	// A big event every tick: frames of EventWindow events, ~100 KiB.
	big := strings.Repeat("x", 5000)
	addCtx, stopAdding := context.WithCancel(context.Background())
	var adder sync.WaitGroup
	adder.Go(func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-addCtx.Done():
				return
			case <-tk.C:
				log.Add(i%8, "ready", big)
			}
		}
	})
	defer func() { stopAdding(); adder.Wait() }()
	th := startHub(t, r, dashboard.HubConfig{
		Sampler:      dashboard.NewSampler(r, log),
		Interval:     interval,
		WriteTimeout: writeTimeout,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The stuck client: a tiny receive buffer, and nobody ever reads.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(4096)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	stuck, _, err := websocket.Dial(ctx, th.wsURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()
	stuckAt := time.Now()

	type arrival struct {
		seq uint64
		at  time.Time
	}
	arrivals := make([][]arrival, healthy)
	readCtx, stopReading := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range healthy {
		c := dial(ctx, t, th.wsURL)
		wg.Go(func() {
			for {
				_, b, err := c.Read(readCtx)
				if err != nil {
					if readCtx.Err() == nil {
						t.Errorf("healthy client %d: %v", i, err)
					}
					return
				}
				seq, err := frameSeq(b)
				if err != nil {
					t.Errorf("healthy client %d: %v", i, err)
					return
				}
				arrivals[i] = append(arrivals[i], arrival{seq, time.Now()})
			}
		})
	}
	waitFor(t, 5*time.Second, "all clients registered", func() bool { return th.Clients() == healthy+1 })
	waitFor(t, 20*time.Second, "the stuck client to be dropped", func() bool { return th.Clients() == healthy })
	droppedAt := time.Now()
	if got := r.Counter(shm.WSClients).Load(); got != healthy {
		t.Errorf("ws_clients = %d after the drop, want %d", got, healthy)
	}
	time.Sleep(5 * interval) // the others go on after the drop too
	stopReading()
	wg.Wait()

	window := droppedAt.Sub(stuckAt)
	t.Logf("stuck client dropped after %v", window.Round(time.Millisecond))
	if window < writeTimeout {
		t.Errorf("dropped after %v, before the write timeout %v: not a timeout drop", window, writeTimeout)
	}
	for i, as := range arrivals {
		var maxGap time.Duration
		var inWindow int
		for j, a := range as {
			if a.at.Before(droppedAt) {
				inWindow++
			}
			if j > 0 {
				maxGap = max(maxGap, a.at.Sub(as[j-1].at))
				if a.seq <= as[j-1].seq {
					t.Errorf("client %d: seq %d after %d", i, a.seq, as[j-1].seq)
				}
			}
		}
		ticks := int(window / interval)
		t.Logf("healthy client %d: %d frames of %d ticks while the stuck client was connected, max gap %v", i, inWindow, ticks, maxGap.Round(time.Millisecond))
		if maxGap >= writeTimeout/2 {
			t.Errorf("client %d: a gap of %v between frames: the stuck client delayed it", i, maxGap)
		}
		if inWindow < ticks/4 {
			t.Errorf("client %d: %d frames in %d ticks", i, inWindow, ticks)
		}
	}
}

func TestHubRemovesClosedClients(t *testing.T) {
	tests := []struct {
		name  string
		close func(c *websocket.Conn) error
	}{
		{"close handshake", func(c *websocket.Conn) error { return c.Close(websocket.StatusNormalClosure, "bye") }},
		{"connection dropped", func(c *websocket.Conn) error { return c.CloseNow() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegion(t, 1)
			th := startHub(t, r, dashboard.HubConfig{Interval: 10 * time.Millisecond})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			keep := dial(ctx, t, th.wsURL)
			gone := dial(ctx, t, th.wsURL)
			waitFor(t, 5*time.Second, "2 clients", func() bool { return th.Clients() == 2 })
			if got := r.Counter(shm.WSClients).Load(); got != 2 {
				t.Fatalf("ws_clients = %d, want 2", got)
			}
			_, _, _ = gone.Read(ctx) // a frame in flight both ways
			if err := tt.close(gone); err != nil {
				t.Fatalf("close: %v", err)
			}
			waitFor(t, 5*time.Second, "the closed client removed", func() bool { return th.Clients() == 1 })
			// The counter falls back exactly once, and stays there.
			time.Sleep(50 * time.Millisecond)
			if got := r.Counter(shm.WSClients).Load(); got != 1 {
				t.Errorf("ws_clients = %d, want 1", got)
			}
			if _, _, err := keep.Read(ctx); err != nil {
				t.Errorf("the other client: %v", err)
			}
		})
	}
}

func TestHubOrigin(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		origin   func(srvHost string) string
		want     int
	}{
		{"no origin (not a browser)", nil, func(string) string { return "" }, http.StatusSwitchingProtocols},
		{"same host", nil, func(h string) string { return "http://" + h }, http.StatusSwitchingProtocols},
		{"another host", nil, func(string) string { return "http://evil.example" }, http.StatusForbidden},
		{"another port", nil, func(h string) string { return "http://" + strings.Split(h, ":")[0] + ":1" }, http.StatusForbidden},
		{"allowed pattern", []string{"*.trusted.example"}, func(string) string { return "https://ui.trusted.example" }, http.StatusSwitchingProtocols},
		{"not matching the pattern", []string{"*.trusted.example"}, func(string) string { return "https://trusted.example.evil" }, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRegion(t, 1)
			th := startHub(t, r, dashboard.HubConfig{OriginPatterns: tt.patterns})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			hdr := http.Header{}
			if o := tt.origin(strings.TrimPrefix(th.srv.URL, "http://")); o != "" {
				hdr.Set("Origin", o)
			}
			c, resp, err := websocket.Dial(ctx, th.wsURL, &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: th.srv.Client()})
			if c != nil {
				defer c.CloseNow()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%v), want %d", resp.StatusCode, err, tt.want)
			}
			if tt.want != http.StatusSwitchingProtocols {
				if err == nil {
					t.Fatal("dial succeeded, want an error")
				}
				if th.Clients() != 0 || r.Counter(shm.WSClients).Load() != 0 {
					t.Errorf("a rejected client was counted")
				}
			}
		})
	}
}

func TestHubShutdownClosesClients(t *testing.T) {
	r := newRegion(t, 1)
	th := startHub(t, r, dashboard.HubConfig{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := []*websocket.Conn{dial(ctx, t, th.wsURL), dial(ctx, t, th.wsURL), dial(ctx, t, th.wsURL)}
	waitFor(t, 5*time.Second, "3 clients", func() bool { return th.Clients() == 3 })

	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for {
				_, _, err := c.Read(ctx)
				if err == nil {
					continue
				}
				if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
					t.Errorf("client %d: closed with %v (%v), want going away", i, got, err)
				}
				return
			}
		})
	}
	start := time.Now()
	th.stop(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to return", d)
	}
	wg.Wait()
	if th.Clients() != 0 || r.Counter(shm.WSClients).Load() != 0 {
		t.Errorf("after Run: %d clients, ws_clients %d; want 0", th.Clients(), r.Counter(shm.WSClients).Load())
	}
	// A stopped hub turns new clients away.
	_, resp, err := websocket.Dial(ctx, th.wsURL, &websocket.DialOptions{HTTPClient: th.srv.Client()})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after stop: %v, %v; want 503", resp, err)
	}
	if err := th.Run(ctx); !errors.Is(err, dashboard.ErrHubRan) {
		t.Errorf("second Run = %v, want ErrHubRan", err)
	}
}

// Every client gets the bytes the hub encoded once for the tick: two clients
// read byte-identical frames, and the hub encoded one frame per tick (plus
// at most one full frame per tick, for clients that needed one).
func TestHubEncodesOncePerTick(t *testing.T) {
	const frames = 30
	r := newRegion(t, 2)
	log := dashboard.NewEventLog(0)
	for i := range 5 {
		log.Add(i%2, "started", fmt.Sprintf("worker %d started", i%2))
	}
	th := startHub(t, r, dashboard.HubConfig{Sampler: dashboard.NewSampler(r, log), Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conns := []*websocket.Conn{dial(ctx, t, th.wsURL), dial(ctx, t, th.wsURL)}
	got := make([]map[uint64][]byte, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		got[i] = map[uint64][]byte{}
		wg.Go(func() {
			for range frames {
				_, b, err := c.Read(ctx)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				seq, err := frameSeq(b)
				if err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				got[i][seq] = b
			}
		})
	}
	wg.Wait()
	for _, c := range conns {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
	th.stop(t)
	common := 0
	for seq, b0 := range got[0] {
		if b1, ok := got[1][seq]; ok {
			common++
			if !bytes.Equal(b0, b1) {
				t.Errorf("frame %d differs between the clients:\n%s\n%s", seq, b0, b1)
			}
		}
	}
	ticks, encodes, full := th.EncodeCounts()
	t.Logf("%d ticks, %d frame encodes, %d full-frame encodes; %d frames read by both clients", ticks, encodes, full, common)
	if common < frames/2 {
		t.Errorf("only %d frames in common of %d each", common, frames)
	}
	if encodes != ticks || ticks < frames {
		t.Errorf("%d encodes for %d ticks, want one per tick", encodes, ticks)
	}
	// The first EventWindow frames carry every event, so a client that
	// connects then needs no full frame of its own.
	if full > int64(len(conns)) {
		t.Errorf("%d full-frame encodes for %d clients", full, len(conns))
	}
}

// Frames carry only the recent events, yet a client that falls behind by
// more than EventWindow frames still sees every event: the hub sends it a
// full frame. Run with events added all along, one fast client and one that
// pauses for 2×EventWindow ticks now and then; small socket buffers on both
// ends make the hub skip frames for the slow one instead of queueing them in
// the kernel.
func TestHubLaggingClientGetsEveryEvent(t *testing.T) {
	const interval = 10 * time.Millisecond
	r := newRegion(t, 1)
	log := dashboard.NewEventLog(0)
	th := startHubOn(t, r, dashboard.HubConfig{Sampler: dashboard.NewSampler(r, log), Interval: interval},
		func(ln net.Listener) net.Listener { return smallWriteBuffers{ln} })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	addCtx, stopAdding := context.WithCancel(ctx)
	var adder sync.WaitGroup
	// One event per 2 ticks, far fewer than FrameEvents in any pause below,
	// in frames of ~6 KiB: the socket buffers hold only a few.
	pad := strings.Repeat("x", 500)
	adder.Go(func() {
		tk := time.NewTicker(2 * interval)
		defer tk.Stop()
		for i := 0; ; i++ {
			select {
			case <-addCtx.Done():
				return
			case <-tk.C:
				log.Add(i%4, "ready", fmt.Sprintf("event %d %s", i, pad))
			}
		}
	})
	defer func() { stopAdding(); adder.Wait() }()

	type result struct {
		seqs      map[uint64]bool // event seqs seen
		frames    int
		bigGaps   int // frame seq jumps of more than EventWindow
		lastEvent uint64
	}
	read := func(c *websocket.Conn, until time.Time, pause func(n int) time.Duration) result {
		res := result{seqs: map[uint64]bool{}}
		var last uint64
		for time.Now().Before(until) {
			_, b, err := c.Read(ctx)
			if err != nil {
				t.Errorf("read: %v", err)
				return res
			}
			var f struct {
				Seq    uint64            `json:"seq"`
				Events []dashboard.Event `json:"events"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				t.Errorf("decode: %v", err)
				return res
			}
			if last != 0 && f.Seq-last > dashboard.EventWindow {
				res.bigGaps++
			}
			last = f.Seq
			res.frames++
			for _, e := range f.Events {
				res.seqs[e.Seq] = true
				res.lastEvent = max(res.lastEvent, e.Seq)
			}
			time.Sleep(pause(res.frames))
		}
		return res
	}
	fast := dial(ctx, t, th.wsURL)
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = c.(*net.TCPConn).SetReadBuffer(32 << 10)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	slow, _, err := websocket.Dial(ctx, th.wsURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	slow.SetReadLimit(-1)
	defer slow.CloseNow()

	time.Sleep(200 * time.Millisecond) // some events before the clients read
	until := time.Now().Add(2500 * time.Millisecond)
	var results [2]result
	var wg sync.WaitGroup
	wg.Go(func() { results[0] = read(fast, until, func(int) time.Duration { return 0 }) })
	wg.Go(func() {
		results[1] = read(slow, until, func(n int) time.Duration {
			if n%10 == 0 {
				return 2 * dashboard.EventWindow * interval
			}
			return 0
		})
	})
	wg.Wait()
	for i, res := range results {
		name := []string{"fast", "slow"}[i]
		missing := 0
		for s := uint64(1); s <= res.lastEvent; s++ {
			if !res.seqs[s] {
				missing++
			}
		}
		t.Logf("%s client: %d frames, %d jumps of more than %d frames, events 1..%d, %d missing", name, res.frames, res.bigGaps, dashboard.EventWindow, res.lastEvent, missing)
		if res.lastEvent < 50 || missing > 0 {
			t.Errorf("%s client saw events up to %d with %d missing", name, res.lastEvent, missing)
		}
	}
	_, _, full := th.EncodeCounts()
	t.Logf("%d full frames encoded", full)
	if results[1].bigGaps == 0 {
		t.Error("the slow client never fell more than EventWindow frames behind: the test tested nothing")
	}
}

// smallWriteBuffers gives every accepted TCP connection a small send
// buffer, so that a client that does not read blocks the hub's writes soon.
type smallWriteBuffers struct{ net.Listener }

func (l smallWriteBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// Kinds and progress from the sampler's sources reach the clients.
func TestHubStreamsKindsAndProgress(t *testing.T) {
	r := newRegion(t, 1)
	s := dashboard.NewSampler(r, nil,
		dashboard.WithKinds(func() []string { return []string{"echo", "resize"} }),
		dashboard.WithProgress(func(int) []dashboard.TaskProgress {
			return []dashboard.TaskProgress{{ID: "t1", Kind: "resize", Slot: 0, Fraction: 0.25, Message: "1 of 4"}}
		}))
	th := startHub(t, r, dashboard.HubConfig{Sampler: s, Interval: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := dial(ctx, t, th.wsURL).Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f dashboard.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	want := dashboard.TaskProgress{ID: "t1", Kind: "resize", Fraction: 0.25, Message: "1 of 4"}
	if !slices.Equal(f.Kinds, []string{"echo", "resize"}) || len(f.Progress) != 1 || f.Progress[0] != want {
		t.Fatalf("kinds %v progress %+v", f.Kinds, f.Progress)
	}
}
