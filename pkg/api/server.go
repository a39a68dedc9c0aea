package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atomicflow/atomicflow/pkg/engine"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	"github.com/atomicflow/atomicflow/pkg/supervisor"
)

// Control is what the API needs from the supervisor.
type Control interface {
	Kill(slot int) error
	Restart(slot int) error
	Reload(ctx context.Context) error
	Scale(ctx context.Context, n int) error
	// MaxWorkers is the most workers Scale accepts.
	MaxWorkers() int
}

// Config wires the API to the rest of the master.
type Config struct {
	Engine  *engine.Engine
	Control Control
	Region  *shm.Region
	// Workers returns the worker slots' JSON view.
	Workers func() any
	// Ready reports readiness beyond the engine accepting (e.g. workers up).
	Ready func() bool
	// MaxBatch bounds a batch submit (default 10,000).
	MaxBatch int
	// MaxBody bounds a request body (default 8 MiB).
	MaxBody int64
	// AuthToken, when set, is required as a bearer token on every request
	// that changes something (submit, cancel, retry, kill, restart).
	AuthToken string
	// MaxWait caps ?wait= (default 60s).
	MaxWait time.Duration
	Logger  *slog.Logger
}

// Server serves the API.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New makes a server; mount Handler at /.
func New(cfg Config) *Server {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 10000
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 8 << 20
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.routes()
	return s
}

// Register adds the API's routes to mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("/api/", s.mux)
	mux.Handle("/healthz", s.mux)
	mux.Handle("/readyz", s.mux)
}

// ServeHTTP serves the API routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("POST /api/v1/tasks", s.auth(s.submitOne))
	m.HandleFunc("POST /api/v1/tasks/batch", s.auth(s.submitBatch))
	m.HandleFunc("GET /api/v1/tasks", s.listTasks)
	m.HandleFunc("GET /api/v1/tasks/{id}", s.getTask)
	m.HandleFunc("DELETE /api/v1/tasks/{id}", s.auth(s.cancelTask))
	m.HandleFunc("POST /api/v1/tasks/{id}/retry", s.auth(s.retryTask))
	m.HandleFunc("GET /api/v1/stats", s.stats)
	m.HandleFunc("GET /api/v1/workers", s.workers)
	m.HandleFunc("POST /api/v1/workers/{slot}/kill", s.auth(s.control("kill")))
	m.HandleFunc("POST /api/v1/workers/{slot}/restart", s.auth(s.control("restart")))
	m.HandleFunc("GET /api/v1/tables/{name}", s.table)
	m.HandleFunc("POST /api/v1/scale", s.auth(s.scale))
	m.HandleFunc("POST /api/v1/reload", s.auth(s.reload))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path))
	})
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.AuthToken == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.AuthToken)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="atomicflow"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token (see --auth-token)")
			return
		}
		h(w, r)
	}
}

func (s *Server) body(w http.ResponseWriter, r *http.Request) io.Reader {
	return http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)
}

func (s *Server) submitOne(w http.ResponseWriter, r *http.Request) {
	sub, err := DecodeTask(s.body(w, r))
	if err != nil {
		s.decodeFailed(w, err)
		return
	}
	ids, err := s.cfg.Engine.Submit(r.Context(), []engine.Submission{sub})
	if err != nil {
		s.engineError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"id": ids[0]})
}

func (s *Server) submitBatch(w http.ResponseWriter, r *http.Request) {
	subs, err := DecodeBatch(s.body(w, r), s.cfg.MaxBatch)
	if err != nil {
		s.decodeFailed(w, err)
		return
	}
	ids, err := s.cfg.Engine.Submit(r.Context(), subs)
	if err != nil {
		s.engineError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string][]string{"ids": ids})
}

func (s *Server) decodeFailed(w http.ResponseWriter, err error) {
	if isMaxBytes(err) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over the limit of %d bytes", s.cfg.MaxBody))
		return
	}
	var de *DecodeError
	if errors.As(err, &de) {
		writeError(w, http.StatusBadRequest, de.Code, de.Message)
		return
	}
	writeError(w, http.StatusBadRequest, "bad_json", err.Error())
}

func (s *Server) engineError(w http.ResponseWriter, err error) {
	var inv *engine.InvalidError
	switch {
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, inv.Code, inv.Message)
	case errors.Is(err, engine.ErrShuttingDown):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "shutting_down", err.Error())
	case errors.Is(err, engine.ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "queue_full", err.Error())
	case errors.Is(err, engine.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, engine.ErrTerminal):
		writeError(w, http.StatusConflict, "finished", err.Error())
	case errors.Is(err, engine.ErrNotDead):
		writeError(w, http.StatusConflict, "not_dead", err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, "timeout", err.Error())
	default:
		s.cfg.Logger.Error("api", "error", err)
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var v *engine.TaskView
	var err error
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, perr := time.ParseDuration(ws)
		if perr != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "bad_field", fmt.Sprintf("wait: %q is not a duration like 5s", ws))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(d, s.cfg.MaxWait))
		v, err = s.cfg.Engine.Wait(ctx, id)
		cancel()
	} else {
		v, err = s.cfg.Engine.Get(r.Context(), id)
	}
	if err != nil {
		s.engineError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, viewJSON(v))
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Engine.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		s.engineError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, viewJSON(v))
}

func (s *Server) retryTask(w http.ResponseWriter, r *http.Request) {
	v, err := s.cfg.Engine.Retry(r.Context(), r.PathValue("id"))
	if err != nil {
		s.engineError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, viewJSON(v))
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, err := store.ParseState(q.Get("state"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_field", fmt.Sprintf("state: %v", err))
		return
	}
	limit := 100
	if ls := q.Get("limit"); ls != "" {
		if limit, err = strconv.Atoi(ls); err != nil || limit < 1 || limit > 10000 {
			writeError(w, http.StatusBadRequest, "bad_field", "limit: must be an integer in 1..10000")
			return
		}
	}
	recs, err := s.cfg.Engine.List(r.Context(), st, limit, q.Get("after"))
	if err != nil {
		s.engineError(w, err)
		return
	}
	out := make([]taskJSON, len(recs))
	for i, rec := range recs {
		out[i] = viewJSON(&engine.TaskView{Record: *rec})
	}
	next := ""
	if len(recs) == limit {
		next = recs[len(recs)-1].ID
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out, "next": next})
}

func (s *Server) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Region.CounterValues())
}

func (s *Server) workers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"workers": s.cfg.Workers()})
}

func (s *Server) control(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		slot, err := strconv.Atoi(r.PathValue("slot"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_field", fmt.Sprintf("slot %q is not a number", r.PathValue("slot")))
			return
		}
		if action == "kill" {
			err = s.cfg.Control.Kill(slot)
		} else {
			err = s.cfg.Control.Restart(slot)
		}
		switch {
		case errors.Is(err, supervisor.ErrNoSlot):
			writeError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, supervisor.ErrNotRunning), errors.Is(err, supervisor.ErrStopped):
			writeError(w, http.StatusConflict, "not_running", err.Error())
		case errors.Is(err, supervisor.ErrBusy):
			writeError(w, http.StatusConflict, "busy", err.Error())
		case err != nil:
			writeError(w, http.StatusInternalServerError, "internal", err.Error())
		default:
			writeJSON(w, http.StatusAccepted, map[string]any{"slot": slot, "action": action})
		}
	}
}

// table shows a shared table read-only, straight from the region.
func (s *Server) table(w http.ResponseWriter, r *http.Request) {
	t, err := s.cfg.Region.Table(r.PathValue("name"))
	if errors.Is(err, shm.ErrNoTable) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	type column struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Size int    `json:"size,omitempty"`
	}
	type entry struct {
		Key    string  `json:"key"`
		Values shm.Row `json:"values"`
	}
	cols := []column{}
	for _, c := range t.Columns() {
		cols = append(cols, column{Name: c.Name, Type: c.Type.String(), Size: c.Size})
	}
	entries := []entry{}
	if err := t.Range(func(k string, row shm.Row) bool {
		entries = append(entries, entry{Key: k, Values: row})
		return true
	}); err != nil {
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": t.Name(), "rows": t.Rows(), "len": t.Len(), "columns": cols, "entries": entries})
}

// scale and reload answer at once and run in the background: draining a
// worker may take as long as its longest task. Progress shows in the
// workers list, the log and the dashboard.
func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Workers int `json:"workers"`
	}
	if err := decodeStrict(http.MaxBytesReader(w, r.Body, 4096), &req); err != nil {
		s.decodeFailed(w, err)
		return
	}
	if max := s.cfg.Control.MaxWorkers(); req.Workers < 1 || req.Workers > max {
		writeError(w, http.StatusBadRequest, "bad_field", fmt.Sprintf("workers: %d is not in 1..%d", req.Workers, max))
		return
	}
	go func() {
		if err := s.cfg.Control.Scale(context.WithoutCancel(r.Context()), req.Workers); err != nil {
			s.cfg.Logger.Error("scale", "workers", req.Workers, "error", err)
		}
	}()
	writeJSON(w, http.StatusAccepted, map[string]any{"workers": req.Workers})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	go func() {
		if err := s.cfg.Control.Reload(context.WithoutCancel(r.Context())); err != nil {
			s.cfg.Logger.Error("reload", "error", err)
		}
	}()
	writeJSON(w, http.StatusAccepted, map[string]any{"reload": "started"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ready := s.cfg.Engine.Accepting() && (s.cfg.Ready == nil || s.cfg.Ready())
	if !ready {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true})
}

// taskJSON is the API's view of a task.
type taskJSON struct {
	ID              string          `json:"id"`
	Kind            string          `json:"kind"`
	State           string          `json:"state"`
	Attempts        int32           `json:"attempts"`
	MaxAttempts     int32           `json:"max_attempts"`
	WorkerSlot      *int32          `json:"worker_slot"`
	Key             string          `json:"key,omitempty"`
	Result          json.RawMessage `json:"result"`
	Error           string          `json:"error,omitempty"`
	Progress        float64         `json:"progress"`
	ProgressMessage string          `json:"progress_message,omitempty"`
	CreatedAt       *time.Time      `json:"created_at"`
	StartedAt       *time.Time      `json:"started_at"`
	FinishedAt      *time.Time      `json:"finished_at"`
	DurationMs      *float64        `json:"duration_ms,omitempty"`
}

func viewJSON(v *engine.TaskView) taskJSON {
	t := taskJSON{
		ID: v.ID, Kind: v.Kind, State: string(v.State), Attempts: v.Attempts, MaxAttempts: v.MaxAttempts,
		Key: v.Key, Error: v.Error, Progress: v.Progress, ProgressMessage: v.ProgressMessage,
		CreatedAt: timePtr(v.CreatedAt), StartedAt: timePtr(v.StartedAt), FinishedAt: timePtr(v.FinishedAt),
	}
	if v.WorkerSlot >= 0 {
		ws := v.WorkerSlot
		t.WorkerSlot = &ws
	}
	if len(v.Result) > 0 {
		if json.Valid(v.Result) {
			t.Result = v.Result
		} else {
			t.Result, _ = json.Marshal(string(v.Result))
		}
	}
	if !v.StartedAt.IsZero() && !v.FinishedAt.IsZero() {
		d := float64(v.FinishedAt.Sub(v.StartedAt).Microseconds()) / 1000
		t.DurationMs = &d
	}
	return t
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

type maxBytesErr = http.MaxBytesError

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe) || (err != nil && strings.Contains(err.Error(), "http: request body too large"))
}
