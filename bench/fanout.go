package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

const fanoutWindow = 10 * time.Second

// wsClient is one dashboard client: it reads frames and, while recording,
// keeps each frame's latency (receive time − the frame's time_ms).
type wsClient struct {
	conn   *websocket.Conn
	lat    []float64 // ms
	frames int
}

var timeMsKey = []byte(`"time_ms":`)

// frameTimeMs finds "time_ms":N in a frame without decoding the rest of it
// (the harness shares two cores with the master: it must stay cheap).
func frameTimeMs(b []byte) (int64, bool) {
	i := bytes.Index(b, timeMsKey)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(timeMsKey):]
	j := 0
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	v, err := strconv.ParseInt(string(b[:j]), 10, 64)
	return v, err == nil
}

func runFanout(ctx context.Context, env *benchEnv, o *outcome) error {
	m, err := startMaster(ctx, env, masterOptions{Workers: 2, Store: "memory"})
	if err != nil {
		return err
	}
	defer m.Stop()
	for _, n := range []int{100, 1000} {
		if err := fanout(ctx, m, n, o); err != nil {
			return fmt.Errorf("%d clients: %w", n, err)
		}
	}
	o.note("latency = receive time − the frame's time_ms (milliseconds, so each sample reads up to 1 ms high); sample interval 100 ms (10 Hz); clients in the bench process on the same 2 cores")
	return nil
}

func fanout(ctx context.Context, m *masterProc, n int, o *outcome) error {
	url := "ws://" + m.Addr + "/ws"
	clients := make([]*wsClient, n)
	var recording atomic.Bool
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		for _, c := range clients {
			if c != nil && c.conn != nil {
				c.conn.CloseNow()
			}
		}
		wg.Wait()
	}()
	// Connect, 50 at a time.
	sem := make(chan struct{}, 50)
	errs := make(chan error, n)
	var dialWG sync.WaitGroup
	for i := range clients {
		dialWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer dialWG.Done()
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(cctx, 10*time.Second)
			defer dcancel()
			conn, _, err := websocket.Dial(dctx, url, nil)
			if err != nil {
				errs <- err
				return
			}
			conn.SetReadLimit(1 << 22)
			clients[i] = &wsClient{conn: conn, lat: make([]float64, 0, 128)}
		}()
	}
	dialWG.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_, data, err := c.conn.Read(cctx)
				if err != nil {
					return
				}
				if !recording.Load() {
					continue
				}
				now := float64(time.Now().UnixNano()) / 1e6
				if t, ok := frameTimeMs(data); ok {
					c.lat = append(c.lat, now-float64(t))
					c.frames++
				}
			}
		}()
	}
	// Settle, then record over the window.
	deadline := time.Now().Add(10 * time.Second)
	for m.Counter(shm.WSClients) < int64(n) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	meter := newCPUMeter().Add("master", m.PID).Add("bench (the clients)", os.Getpid()).Start()
	recording.Store(true)
	select {
	case <-time.After(fanoutWindow):
	case <-ctx.Done():
		return ctx.Err()
	}
	recording.Store(false)
	uses, wall := meter.Stop()
	open := m.Counter(shm.WSClients)
	cancel()
	for _, c := range clients {
		c.conn.CloseNow()
	}
	wg.Wait()
	var all []float64
	frames := 0
	for _, c := range clients {
		all = append(all, c.lat...)
		frames += c.frames
	}
	q := quantiles(all)
	expected := float64(n) * wall.Seconds() * 10
	label := fmt.Sprintf("%s clients", group(float64(n)))
	o.add(fmt.Sprintf("master CPU with %s dashboard clients at 10 Hz (%% of one core)", group(float64(n))), uses[0].Percent, "%", nil,
		fmt.Sprintf("over %.1f s; the clients took %.0f %%", wall.Seconds(), uses[1].Percent))
	o.add("frame latency p50, "+label, q.P50, "ms", nil, "")
	o.add("frame latency p99, "+label, q.P99, "ms", nil, fmt.Sprintf("max %.1f ms", q.Max))
	o.note("%s: %s frames received of %s at 10 Hz (%.1f%%); ws_clients counter at the end of the window %d; p90 %.1f ms", label, group(float64(frames)), group(expected),
		100*float64(frames)/expected, open, rank(sorted(all), 0.9))
	o.note("%s: %s", label, cpuSplit(uses, wall))
	o.detail(fmt.Sprintf("latency_%d", n), q)
	// Let the master see them go before the next round.
	deadline = time.Now().Add(10 * time.Second)
	for m.Counter(shm.WSClients) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
