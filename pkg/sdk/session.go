package sdk

import (
	"context"
	"sync"

	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// session is one Session stream. Results are collected by the task
// goroutines and sent by one sender goroutine: while a Send is in progress
// new results accumulate, so a busy worker sends big batches and an idle
// one sends each result at once.
type session struct {
	w      *worker
	stream pb.Worker_SessionServer

	mu       sync.Mutex
	results  []*pb.TaskResult
	progs    map[string]*pb.Progress
	drained  bool
	notify   chan struct{}
	sent     chan struct{} // closed-and-replaced each time pending is emptied
	done     chan struct{}
	stopping bool
}

func newSession(w *worker, stream pb.Worker_SessionServer) *session {
	return &session{
		w: w, stream: stream,
		progs:  make(map[string]*pb.Progress),
		notify: make(chan struct{}, 1),
		sent:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

func (s *session) run() error {
	ctx, cancel := context.WithCancel(s.stream.Context())
	defer cancel()
	senderDone := make(chan error, 1)
	go func() { senderDone <- s.sender(ctx) }()
	defer func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		close(s.done)
	}()
	for {
		msg, err := s.stream.Recv()
		if err != nil {
			// The master closed the stream or went away: cancel what runs
			// for it; nothing could deliver those results.
			cancel()
			<-senderDone
			return nil
		}
		for _, spec := range msg.Tasks {
			s.w.start(ctx, spec, s)
		}
		if len(msg.Cancel) > 0 {
			s.w.cancel(msg.Cancel)
		}
		if msg.Drain {
			go func() {
				s.w.drain(ctx, s.w.cfg.DrainTimeout)
				s.mu.Lock()
				s.drained = true
				s.mu.Unlock()
				s.kick()
			}()
		}
	}
}

func (s *session) kick() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *session) deliver(r *pb.TaskResult) {
	s.mu.Lock()
	s.results = append(s.results, r)
	s.mu.Unlock()
	s.kick()
}

func (s *session) progress(id string, f float64, msg string) {
	s.mu.Lock()
	s.progs[id] = &pb.Progress{Id: id, Fraction: f, Message: msg}
	s.mu.Unlock()
	s.kick()
}

// flush waits until every result delivered so far has been handed to the
// stream (or the session ended).
func (s *session) flush() {
	s.mu.Lock()
	if len(s.results) == 0 && len(s.progs) == 0 {
		s.mu.Unlock()
		return
	}
	sent := s.sent
	s.mu.Unlock()
	s.kick()
	select {
	case <-sent:
	case <-s.done:
	}
}

func (s *session) sender(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notify:
		}
		for {
			s.mu.Lock()
			batch := s.results
			if len(batch) > maxResultsPerMessage {
				s.results = append([]*pb.TaskResult(nil), batch[maxResultsPerMessage:]...)
				batch = batch[:maxResultsPerMessage]
			} else {
				s.results = nil
			}
			var progs []*pb.Progress
			for _, p := range s.progs {
				progs = append(progs, p)
			}
			clear(s.progs)
			drained := s.drained
			s.drained = false
			empty := len(s.results) == 0
			var sent chan struct{}
			if empty {
				sent = s.sent
				s.sent = make(chan struct{})
			}
			s.mu.Unlock()
			if len(batch) > 0 || len(progs) > 0 || drained {
				if err := s.stream.Send(&pb.WorkerMessage{Results: batch, Progress: progs, Drained: drained}); err != nil {
					return err
				}
			}
			if empty {
				close(sent)
				break
			}
		}
	}
}
