package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// memStore is the in-memory implementation of Store: records found by
// ID through an entryIndex, an ordered key set per state and a heap of
// finish times for the janitor.
//
// IDs in the engine's form (16 lowercase hex digits) are indexed by their
// numeric value: integer sets and maps cost the GC nothing to scan and are
// cheaper to compare and hash, and an engine batch's consecutive IDs share
// one run of entries. Other IDs are indexed as strings. A numeric key
// orders like its ID, so a scan merges the two.
type memStore struct {
	opt Options

	stop      chan struct{}  // closed by Close
	wg        sync.WaitGroup // the janitor
	closeOnce sync.Once

	mu       sync.RWMutex
	closed   bool
	ents     entryIndex
	idem     map[string]string // idempotency key -> ID
	numState [numStates]sortedSet[uint64]
	strState [numStates]sortedSet[string]
	expiry   expiryHeap
	invalid  error // the first invalid Update since the last Flush
}

var _ Store = (*memStore)(nil)

// NewMemory returns a store that keeps everything in memory, with the same
// semantics as the bolt store but nothing durable. A nil opt means defaults.
func NewMemory(opt *Options) Store {
	s := &memStore{
		opt:  opt.withDefaults(),
		stop: make(chan struct{}),
		ents: newEntryIndex(),
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
	next := uint64(0) // the key that continues the current run
	inRun := false
	for i, r := range recs {
		if r.IdempotencyKey != "" {
			if id, ok := s.idem[r.IdempotencyKey]; ok {
				res[i] = CreateResult{ID: id, Existing: true}
				continue
			}
		}
		k, num := hexKey(r.ID)
		if num && s.ents.fresh(k) && (!inRun || k != next) {
			// A new batch of engine IDs: if long enough, a run sized
			// for all of it, so that its entries are allocated once.
			n := 1
			for _, o := range recs[i+1:] {
				if ko, ok := hexKey(o.ID); !ok || ko != k+uint64(n) {
					break
				}
				n++
			}
			if inRun = n >= minRun; inRun {
				s.ents.startRun(k, n)
			}
		}
		next = k + 1
		s.putLocked(r, k, num)
		res[i] = CreateResult{ID: r.ID}
	}
	return res, nil
}

// stateSet adds (add) or removes the ID (k, num from hexKey) in the set of
// state index st.
func (s *memStore) stateSet(st int8, id string, k uint64, num bool, add bool) {
	switch {
	case num && add:
		s.numState[st].insert(k)
	case num:
		s.numState[st].remove(k)
	case add:
		s.strState[st].insert(id)
	default:
		s.strState[st].remove(id)
	}
}

// putLocked stores r, whose ID gives k and num (hexKey), and moves the ID
// between the indexes. s.mu must be held for writing.
func (s *memStore) putLocked(r *Record, k uint64, num bool) {
	st := int8(r.State.index())
	var e *slabEntry
	if !num || !s.ents.fresh(k) {
		e = s.ents.find(r.ID, k, num)
	}
	oldTerminal := false
	if e != nil {
		oldTerminal = terminalIndex(e.state)
		if e.state != st {
			s.stateSet(e.state, r.ID, k, num, false)
			s.stateSet(st, r.ID, k, num, true)
		}
	} else {
		e = s.ents.add(r.ID, k, num)
		s.stateSet(st, r.ID, k, num, true)
	}
	if r.State.Terminal() && s.opt.Retention > 0 &&
		(!oldTerminal || !e.rec.FinishedAt.Equal(r.FinishedAt)) {
		s.expiry.push(expiryEntry{at: unixNano(r.FinishedAt), id: r.ID})
	}
	e.rec, e.state = r, st
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
		k, num := hexKey(r.ID)
		s.putLocked(r, k, num)
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
	k, num := hexKey(id)
	e := s.ents.find(id, k, num)
	if e == nil {
		return nil, fmt.Errorf("store: task %q: %w", id, ErrNotFound)
	}
	return e.rec.clone(), nil
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
	recs := make([]*Record, 0, min(limit, scanChunk))
	sources := 0 // how many sorted sequences recs holds
	numFrom, numOK := ceilHex(after)
	strFrom := after + "\x00" // the least string above after
	for _, st := range want {
		i := st.index()
		if numOK {
			n := 0
			s.numState[i].ascend(numFrom, func(k uint64) bool {
				recs = append(recs, s.ents.find("", k, true).rec)
				n++
				return n < limit
			})
			sources += min(n, 1)
		}
		n := 0
		s.strState[i].ascend(strFrom, func(id string) bool {
			recs = append(recs, s.ents.find(id, 0, false).rec)
			n++
			return n < limit
		})
		sources += min(n, 1)
	}
	if sources > 1 {
		slices.SortFunc(recs, func(a, b *Record) int { return strings.Compare(a.ID, b.ID) })
		recs = slices.CompactFunc(recs, func(a, b *Record) bool { return a.ID == b.ID })
	}
	recs = recs[:min(len(recs), limit)]
	for i, r := range recs {
		recs[i] = r.clone()
	}
	return recs, nil
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
		s.ents, s.idem, s.expiry = entryIndex{}, nil, nil
		s.numState, s.strState = [numStates]sortedSet[uint64]{}, [numStates]sortedSet[string]{}
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
		e := s.expiry.pop()
		k, num := hexKey(e.id)
		ent := s.ents.find(e.id, k, num)
		if ent == nil {
			continue
		}
		r := ent.rec
		if !r.State.Terminal() || unixNano(r.FinishedAt) != e.at {
			continue
		}
		s.stateSet(ent.state, e.id, k, num, false)
		s.ents.remove(e.id, k, num)
		if r.IdempotencyKey != "" && s.idem[r.IdempotencyKey] == e.id {
			delete(s.idem, r.IdempotencyKey)
		}
	}
	return n
}
