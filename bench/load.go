package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// batchBody is the JSON of one batch submit of n tasks of kind with the
// same payload, encoded once and sent many times.
func batchBody(kind string, payload string, n int) []byte {
	var b bytes.Buffer
	b.Grow(n * (len(kind) + len(payload) + 32))
	b.WriteString(`{"tasks":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"kind":%q,"payload":%s}`, kind, payload)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// httpLoad submits batches over POST /api/v1/tasks/batch.
type httpLoad struct {
	client *http.Client
	url    string
	body   []byte
	// KeepIDs makes every response decoded and its ids kept.
	KeepIDs bool

	mu  sync.Mutex
	ids []string
}

func newHTTPLoad(base string, body []byte, conns int) *httpLoad {
	return &httpLoad{client: newHTTPClient(conns), url: base + "/api/v1/tasks/batch", body: body}
}

// loadResult is what a load run did.
type loadResult struct {
	First    time.Time // just before the first request was sent
	Last     time.Time // when the last batch was accepted
	Batches  int       // accepted
	Refused  int       // 429/503 answers, retried
	Attempts int
}

// submit sends batches batches from submitters goroutines at once and
// returns when all are accepted, ctx ends, or one fails. A batch refused
// with 429 (queue full) or 503 is sent again after a pause.
func (l *httpLoad) submit(ctx context.Context, batches, submitters int) (loadResult, error) {
	var (
		next     atomic.Int64
		accepted atomic.Int64
		refused  atomic.Int64
		once     sync.Once
		res      loadResult
		errOnce  sync.Once
		firstErr error
		lastMu   sync.Mutex
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := 0; w < submitters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if next.Add(1) > int64(batches) {
					return
				}
				for {
					once.Do(func() { res.First = time.Now() })
					code, err := l.post(ctx)
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						cancel()
						return
					}
					if code == http.StatusAccepted {
						accepted.Add(1)
						lastMu.Lock()
						res.Last = time.Now()
						lastMu.Unlock()
						break
					}
					if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
						refused.Add(1)
						select {
						case <-ctx.Done():
							return
						case <-time.After(5 * time.Millisecond):
						}
						continue
					}
					errOnce.Do(func() { firstErr = fmt.Errorf("batch submit: status %d: %w", code, errHTTP) })
					cancel()
					return
				}
			}
		}()
	}
	wg.Wait()
	res.Batches = int(accepted.Load())
	res.Refused = int(refused.Load())
	if firstErr != nil {
		return res, firstErr
	}
	if res.Batches < batches {
		return res, fmt.Errorf("%d of %d batches accepted: %w", res.Batches, batches, context.Cause(ctx))
	}
	return res, nil
}

func (l *httpLoad) post(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(l.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("batch submit: %w", err)
	}
	defer resp.Body.Close()
	if l.KeepIDs && resp.StatusCode == http.StatusAccepted {
		var r struct {
			IDs []string `json:"ids"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return 0, fmt.Errorf("batch submit: decode ids: %w", err)
		}
		l.mu.Lock()
		l.ids = append(l.ids, r.IDs...)
		l.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// IDs returns the ids kept so far.
func (l *httpLoad) IDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...)
}

// getJSON GETs base+path into v.
func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %d %s: %w", url, resp.StatusCode, bytes.TrimSpace(b), errHTTP)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
