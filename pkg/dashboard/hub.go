package dashboard

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// Hub defaults.
const (
	DefaultInterval     = 100 * time.Millisecond // 10 Hz
	DefaultWriteTimeout = 5 * time.Second
)

// HubConfig configures a Hub. Zero fields take the defaults.
type HubConfig struct {
	// Sampler builds the frames. Required.
	Sampler *Sampler
	// Region, when set, has its shm.WSClients counter kept equal to the
	// number of open clients.
	Region *shm.Region
	// Interval is the time between frames (DefaultInterval).
	Interval time.Duration
	// WriteTimeout bounds each write to a client; a client whose write takes
	// longer is closed and removed (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// OriginPatterns lists the extra origins allowed to connect, as in
	// websocket.AcceptOptions. Empty allows only the request's own host.
	OriginPatterns []string
	// Logger receives one line per client drop and errors (discarded when nil).
	Logger *slog.Logger
}

// Hub streams frames to WebSocket clients. It is an http.Handler for the /ws
// endpoint; Run drives the ticks and owns every client's writer. Each tick's
// frame is encoded once for all clients; its full version (Frame.Full), for
// a client's first frame or a client that fell more than EventWindow frames
// behind, is encoded at most once per tick too, when first needed. Each
// client is served by the goroutine of its ServeHTTP call, which returns
// when the client goes away, is dropped, or Run ends; Run waits for all of
// them before it returns.
type Hub struct {
	cfg     HubConfig
	clients *atomic.Int64 // the region's WSClients counter, or a private one
	ran     atomic.Bool

	// Encodings, for tests: one frame per tick, plus at most one full frame
	// per tick when a client needs it.
	ticks, encodes, fullEncodes atomic.Int64

	mu      sync.Mutex
	conns   map[*client]struct{}
	latest  *tickFrame    // the last frame, offered on connect
	stopped bool          // Run has ended (or is ending): no new clients
	done    chan struct{} // closed when Run's context ends
	wg      sync.WaitGroup
}

var _ http.Handler = (*Hub)(nil)

// tickFrame is one tick's frame, encoded once for every client: delta
// carries the events of the last EventWindow frames; the full encoding
// (every FrameEvents newest event) is made the first time a client needs
// it, and shared too.
type tickFrame struct {
	seq   uint64
	delta []byte

	frame    *Frame
	fullOnce sync.Once
	full     []byte
}

// client is one WebSocket connection and its latest-wins mailbox.
type client struct {
	conn    *websocket.Conn
	addr    string
	mailbox chan *tickFrame // capacity 1: the newest unsent frame
	skipped atomic.Int64
	sent    uint64 // seq of the last frame written; only the writer uses it
}

// offer puts tf in the mailbox, replacing a frame not yet taken. The hub's
// lock serializes offers, so there is one sender and this never blocks.
func (c *client) offer(tf *tickFrame) {
	for {
		select {
		case c.mailbox <- tf:
			return
		default:
		}
		select {
		case <-c.mailbox:
			c.skipped.Add(1)
		default:
		}
	}
}

// NewHub returns a hub configured by cfg. It panics if cfg.Sampler is nil.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Sampler == nil {
		panic("dashboard: NewHub needs a Sampler")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Hub{
		cfg:   cfg,
		conns: make(map[*client]struct{}),
		done:  make(chan struct{}),
	}
	if cfg.Region != nil {
		h.clients = cfg.Region.Counter(shm.WSClients)
	} else {
		h.clients = new(atomic.Int64)
	}
	return h
}

// Run samples and broadcasts a frame every Interval, the first one at once,
// until ctx ends. Then it turns new clients away (503), closes every client
// with status 1001 (going away), waits for their writers and returns nil. A
// healthy client closes at once; one that neither reads nor answers the close
// handshake holds Run for at most the websocket library's bounds (5 s to
// write the close frame, 5 s to wait for the answer). A Hub runs once; a
// second call returns ErrHubRan.
func (h *Hub) Run(ctx context.Context) error {
	if !h.ran.CompareAndSwap(false, true) {
		return ErrHubRan
	}
	defer h.shutdown()
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	h.tick(time.Now())
	skipped := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			// With nobody watching, sample one tick in idleEvery: the
			// latest frame a new client gets at once stays fresh, and an
			// idle master does not encode frames for no one.
			if skipped < idleEvery-1 && h.Clients() == 0 {
				skipped++
				continue
			}
			skipped = 0
			h.tick(now)
		}
	}
}

// idleEvery: without clients the hub samples one tick in this many.
const idleEvery = 10

// tick samples, encodes once and offers the same bytes to every client.
func (h *Hub) tick(now time.Time) {
	h.ticks.Add(1)
	f := h.cfg.Sampler.Sample(now)
	b, err := json.Marshal(f)
	if err != nil { // cannot happen with the Frame type; never kill the stream over it
		h.cfg.Logger.Error("dashboard: encode frame", "err", err)
		return
	}
	h.encodes.Add(1)
	tf := &tickFrame{seq: f.Seq, delta: b, frame: f}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.latest = tf
	for c := range h.conns {
		c.offer(tf)
	}
}

// bytesFor returns the encoding of tf that client c needs: the full frame
// when c has had none yet or missed more than EventWindow frames (the
// others no longer carry events it has not seen), else the shared one.
func (h *Hub) bytesFor(c *client, tf *tickFrame) []byte {
	if c.sent != 0 && tf.seq-c.sent <= EventWindow {
		return tf.delta
	}
	tf.fullOnce.Do(func() {
		full := tf.frame.Full()
		if full == tf.frame {
			tf.full = tf.delta
			return
		}
		b, err := json.Marshal(full)
		if err != nil { // cannot happen; the recent events are better than nothing
			h.cfg.Logger.Error("dashboard: encode frame", "err", err)
			b = tf.delta
		} else {
			h.fullEncodes.Add(1)
		}
		tf.full = b
	})
	return tf.full
}

// shutdown stops accepting clients, tells every writer to close and waits.
func (h *Hub) shutdown() {
	h.mu.Lock()
	h.stopped = true
	close(h.done)
	h.mu.Unlock()
	h.wg.Wait()
}

// Clients returns the number of open clients.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// ServeHTTP upgrades the request to a WebSocket and streams frames to it
// until the client goes away, a write fails or times out, or Run ends. A
// request from a foreign origin gets 403; a request after Run ended gets 503.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	stopped := h.stopped
	h.mu.Unlock()
	if stopped {
		http.Error(w, "dashboard: shutting down", http.StatusServiceUnavailable)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: h.cfg.OriginPatterns})
	if err != nil { // Accept has written the response (403, 426, …)
		h.cfg.Logger.Debug("dashboard: websocket rejected", "remote", r.RemoteAddr, "err", err)
		return
	}
	c := &client{conn: conn, addr: r.RemoteAddr, mailbox: make(chan *tickFrame, 1)}
	if !h.add(c) {
		_ = conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer h.remove(c)
	h.serve(c)
}

// add registers c and queues the latest frame for it, unless the hub stopped.
func (h *Hub) add(c *client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	h.clients.Add(1)
	if h.latest != nil {
		c.offer(h.latest)
	}
	return true
}

// remove unregisters c; only c's own ServeHTTP calls it, once.
func (h *Hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.conns[c]; !ok {
		return
	}
	delete(h.conns, c)
	h.clients.Add(-1)
	h.wg.Done()
}

// serve is c's writer: it sends the newest frame whenever there is one, each
// write bounded by WriteTimeout, and closes the connection before returning.
func (h *Hub) serve(c *client) {
	// The browser sends nothing; CloseRead answers pings and the close
	// handshake and cancels readCtx when the peer goes away.
	readCtx := c.conn.CloseRead(context.Background())
	for {
		select {
		case <-h.done:
			_ = c.conn.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-readCtx.Done():
			_ = c.conn.CloseNow()
			h.cfg.Logger.Debug("dashboard: client left", "remote", c.addr, "skipped", c.skipped.Load())
			return
		case tf := <-c.mailbox:
			if err := h.write(c, h.bytesFor(c, tf)); err != nil {
				_ = c.conn.CloseNow()
				h.cfg.Logger.Info("dashboard: client dropped", "remote", c.addr, "skipped", c.skipped.Load(), "err", err)
				return
			}
			c.sent = tf.seq
		}
	}
}

func (h *Hub) write(c *client, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.WriteTimeout)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}
