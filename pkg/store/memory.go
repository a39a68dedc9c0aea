package store

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// memStore is the in-memory implementation of Store: a map of records, an
// ordered ID set per state and a heap of finish times for the janitor.
type memStore struct {
	opt Options

	stop      chan struct{}  // closed by Close
	wg        sync.WaitGroup // the janitor
	closeOnce sync.Once

	mu      sync.RWMutex
	closed  bool
	recs    map[string]*Record
	idem    map[string]string // idempotency key -> ID
	byState [numStates]idSet
	expiry  expiryHeap
	invalid error // the first invalid Update since the last Flush
}

var _ Store = (*memStore)(nil)

// NewMemory returns a store that keeps everything in memory, with the same
// semantics as the bolt store but nothing durable. A nil opt means defaults.
func NewMemory(opt *Options) Store {
	s := &memStore{
		opt:  opt.withDefaults(),
		stop: make(chan struct{}),
		recs: make(map[string]*Record),
		idem: make(map[string]string),
	}
	if s.opt.Retention > 0 {
		s.wg.Add(1)
		go s.janitorLoop()
	}
	return s
}

// Create implements Store.
func (s *memStore) Create(ctx context.Context, recs []*Record) ([]CreateResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, r := range recs {
		if err := validate(r); err != nil {
			return nil, fmt.Errorf("store: create: %w", err)
		}
	}
	res := make([]CreateResult, len(recs))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	for i, r := range recs {
		if r.IdempotencyKey != "" {
			if id, ok := s.idem[r.IdempotencyKey]; ok {
				res[i] = CreateResult{ID: id, Existing: true}
				continue
			}
		}
		s.putLocked(r)
		res[i] = CreateResult{ID: r.ID}
	}
	return res, nil
}

// putLocked stores r and moves its ID between the indexes. s.mu must be
// held for writing.
func (s *memStore) putLocked(r *Record) {
	old, ok := s.recs[r.ID]
	if !ok || old.State != r.State {
		if ok {
			s.byState[old.State.index()].remove(r.ID)
		}
		s.byState[r.State.index()].insert(r.ID)
	}
	s.recs[r.ID] = r
	if r.State.Terminal() && s.opt.Retention > 0 &&
		(!ok || !old.State.Terminal() || !old.FinishedAt.Equal(r.FinishedAt)) {
		heap.Push(&s.expiry, expiryEntry{at: unixNano(r.FinishedAt), id: r.ID})
	}
	if r.IdempotencyKey != "" {
		if _, known := s.idem[r.IdempotencyKey]; !known {
			s.idem[r.IdempotencyKey] = r.ID
		}
	}
}

// Update implements Store.
func (s *memStore) Update(recs ...*Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, r := range recs {
		if err := validate(r); err != nil {
			if s.invalid == nil {
				s.invalid = fmt.Errorf("store: update dropped: %w", err)
			}
			continue
		}
		s.putLocked(r)
	}
}

// Get implements Store.
func (s *memStore) Get(ctx context.Context, id string) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	r, ok := s.recs[id]
	if !ok {
		return nil, fmt.Errorf("store: task %q: %w", id, ErrNotFound)
	}
	return r.clone(), nil
}

// List implements Store.
func (s *memStore) List(ctx context.Context, opt ListOptions) ([]*Record, error) {
	if !opt.State.Valid() {
		return nil, fmt.Errorf("store: list: %w: state %q", ErrInvalid, opt.State)
	}
	limit := opt.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	return s.scan(ctx, []State{opt.State}, opt.After, limit)
}

// NonTerminal implements Store.
func (s *memStore) NonTerminal(ctx context.Context, fn func(*Record) error) error {
	after := ""
	for {
		recs, err := s.scan(ctx, nonTerminalStates(), after, scanChunk)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(recs) < scanChunk {
			return nil
		}
		after = recs[len(recs)-1].ID
	}
}

// scan returns copies of up to limit records in the states want with IDs
// above after, by ascending ID.
func (s *memStore) scan(ctx context.Context, want []State, after string, limit int) ([]*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	var ids []string
	for _, st := range want {
		ids = s.byState[st.index()].ascend(after, limit, ids)
	}
	if len(want) > 1 {
		slices.Sort(ids)
		ids = slices.Compact(ids)
	}
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]*Record, len(ids))
	for i, id := range ids {
		out[i] = s.recs[id].clone()
	}
	return out, nil
}

// Flush implements Store: nothing is pending in memory, but it reports
// invalid Updates like the bolt store does.
func (s *memStore) Flush(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	err := s.invalid
	s.invalid = nil
	return err
}

// Close implements Store.
func (s *memStore) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		s.wg.Wait()
		s.mu.Lock()
		s.recs, s.idem, s.byState, s.expiry = nil, nil, [numStates]idSet{}, nil
		s.mu.Unlock()
	})
	return nil
}

// janitorLoop removes expired records every JanitorInterval until Close.
func (s *memStore) janitorLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.opt.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.expire()
		}
	}
}

// expire removes terminal records finished before now-Retention, at most
// janitorBatch per hold of the lock.
func (s *memStore) expire() {
	cutoff := unixNano(s.opt.Now().Add(-s.opt.Retention))
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		n := s.expireBatch(cutoff)
		if n < janitorBatch {
			return
		}
	}
}

// expireBatch pops up to janitorBatch due entries and removes the records
// that are still terminal with that finish time.
func (s *memStore) expireBatch(cutoff int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for ; n < janitorBatch && len(s.expiry) > 0 && s.expiry[0].at < cutoff; n++ {
		e := heap.Pop(&s.expiry).(expiryEntry)
		r, ok := s.recs[e.id]
		if !ok || !r.State.Terminal() || unixNano(r.FinishedAt) != e.at {
			continue
		}
		delete(s.recs, e.id)
		s.byState[r.State.index()].remove(e.id)
		if r.IdempotencyKey != "" && s.idem[r.IdempotencyKey] == e.id {
			delete(s.idem, r.IdempotencyKey)
		}
	}
	return n
}
