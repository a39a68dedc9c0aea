package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/atomicflow/atomicflow/pkg/engine"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo every refused
// TaskService call carries; its reason is the HTTP API's error code.
const ErrorDomain = "atomicflow"

// streamWindow is how many batches of one SubmitStream may be on their way
// into the engine at once (with the bolt store each waits for a group
// commit, so a window keeps a fast client from being paced by fsync).
const streamWindow = 16

// GRPCServer serves the TaskService of proto/atomicflow/v1/api.proto over
// the same engine, region, limits and token as Server.
type GRPCServer struct {
	pb.UnimplementedTaskServiceServer
	cfg Config
}

var _ pb.TaskServiceServer = (*GRPCServer)(nil)

// NewGRPC makes the TaskService from the Config the HTTP server uses. It
// reads Engine, Region, Workers (for the CPU percentages only), MaxBatch,
// MaxBody, MaxWait, AuthToken and Logger; Control and Ready are not used.
func NewGRPC(cfg Config) *GRPCServer {
	return &GRPCServer{cfg: cfg.withDefaults()}
}

// withDefaults fills in the defaults New applies.
func (c Config) withDefaults() Config {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 10000
	}
	if c.MaxBody <= 0 {
		c.MaxBody = 8 << 20
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 60 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// Register adds the TaskService to s. A server made without
// ServerOptions does not check the auth token.
func (g *GRPCServer) Register(s grpc.ServiceRegistrar) {
	pb.RegisterTaskServiceServer(s, g)
}

// ServerOptions are the options a grpc.Server for the TaskService needs:
// the token interceptors and a message size limit of MaxBody.
func (g *GRPCServer) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.UnaryInterceptor()),
		grpc.ChainStreamInterceptor(g.StreamInterceptor()),
		grpc.MaxRecvMsgSize(int(min(g.cfg.MaxBody, 1<<30))),
	}
}

// UnaryInterceptor refuses Submit, SubmitBatch and Cancel without the
// bearer token, when AuthToken is set.
func (g *GRPCServer) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := g.authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor refuses SubmitStream without the bearer token, when
// AuthToken is set.
func (g *GRPCServer) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := g.authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

// changes reports whether a method changes something (and so needs the
// token), as the HTTP API's POST and DELETE routes do.
func changes(method string) bool {
	switch method {
	case pb.TaskService_Submit_FullMethodName, pb.TaskService_SubmitBatch_FullMethodName,
		pb.TaskService_SubmitStream_FullMethodName, pb.TaskService_Cancel_FullMethodName:
		return true
	}
	return false
}

func (g *GRPCServer) authorize(ctx context.Context, method string) error {
	if g.cfg.AuthToken == "" || !changes(method) {
		return nil
	}
	want := []byte("Bearer " + g.cfg.AuthToken)
	md, _ := metadata.FromIncomingContext(ctx)
	for _, got := range md.Get("authorization") {
		if subtle.ConstantTimeCompare([]byte(got), want) == 1 {
			return nil
		}
	}
	return statusError(codes.Unauthenticated, "unauthorized",
		`missing or wrong bearer token: send metadata "authorization: Bearer <token>" (see --auth-token)`)
}

// Submit accepts one task.
func (g *GRPCServer) Submit(ctx context.Context, req *pb.SubmitOneRequest) (*pb.SubmitOneResponse, error) {
	if req.GetTask() == nil {
		return nil, g.status(&DecodeError{Code: "bad_field", Message: "task is required"})
	}
	sub, err := submission(req.GetTask(), 0)
	if err != nil {
		return nil, g.status(err)
	}
	ids, err := g.cfg.Engine.Submit(ctx, []engine.Submission{sub})
	if err != nil {
		return nil, g.status(err)
	}
	return &pb.SubmitOneResponse{Id: ids[0]}, nil
}

// SubmitBatch accepts a batch, all or nothing.
func (g *GRPCServer) SubmitBatch(ctx context.Context, req *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	ids, err := g.submitBatch(ctx, req)
	if err != nil {
		return nil, g.status(err)
	}
	return &pb.SubmitResponse{Ids: ids, Seq: req.GetSeq()}, nil
}

// SubmitStream accepts a stream of batches: up to streamWindow of them go
// into the engine at once, and the responses go back in request order. A
// refused batch is answered with its error and the stream goes on.
func (g *GRPCServer) SubmitStream(stream pb.TaskService_SubmitStreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// order holds one result channel per request, in arrival order; its
	// capacity is the window, so a client that sends faster than the
	// engine accepts is held back by flow control.
	order := make(chan chan *pb.SubmitResponse, streamWindow)
	sent := make(chan error, 1)
	go func() {
		err := sendInOrder(ctx, stream, order)
		if err != nil {
			cancel()
		}
		sent <- err
	}()
	var batches sync.WaitGroup
	var recvErr error
recv:
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			recvErr = err
			break
		}
		res := make(chan *pb.SubmitResponse, 1)
		select {
		case order <- res:
		case <-ctx.Done():
			recvErr = ctx.Err()
			break recv
		}
		batches.Add(1)
		go func() {
			defer batches.Done()
			res <- g.streamBatch(ctx, req)
		}()
	}
	close(order)
	if recvErr != nil {
		cancel()
	}
	batches.Wait()
	sendErr := <-sent
	if recvErr != nil {
		return streamStatus(recvErr)
	}
	return streamStatus(sendErr)
}

// streamStatus makes a context error that ended a stream a gRPC status
// (Canceled or DeadlineExceeded) rather than Unknown.
func streamStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.FromContextError(err).Err()
}

// sendInOrder sends the responses of order, each once it is ready.
func sendInOrder(ctx context.Context, stream pb.TaskService_SubmitStreamServer, order <-chan chan *pb.SubmitResponse) error {
	for res := range order {
		var resp *pb.SubmitResponse
		select {
		case resp = <-res:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// streamBatch submits one batch of a stream and answers it.
func (g *GRPCServer) streamBatch(ctx context.Context, req *pb.SubmitRequest) *pb.SubmitResponse {
	ids, err := g.submitBatch(ctx, req)
	if err != nil {
		code, reason, msg := g.classify(err)
		return &pb.SubmitResponse{Seq: req.GetSeq(), Error: &pb.Error{GrpcCode: int32(code), Code: reason, Message: msg}}
	}
	return &pb.SubmitResponse{Ids: ids, Seq: req.GetSeq()}
}

func (g *GRPCServer) submitBatch(ctx context.Context, req *pb.SubmitRequest) ([]string, error) {
	tasks := req.GetTasks()
	// The limits and messages of DecodeBatch.
	if len(tasks) == 0 {
		return nil, &DecodeError{Code: "bad_field", Message: "tasks: at least one task is required"}
	}
	if len(tasks) > g.cfg.MaxBatch {
		return nil, &DecodeError{Code: "bad_field", Message: fmt.Sprintf("tasks: %d tasks in one batch, the limit is %d", len(tasks), g.cfg.MaxBatch)}
	}
	subs := make([]engine.Submission, len(tasks))
	for i, in := range tasks {
		s, err := submission(in, i)
		if err != nil {
			return nil, err
		}
		subs[i] = s
	}
	return g.cfg.Engine.Submit(ctx, subs)
}

// submission validates one task exactly as the HTTP decoder does. The
// payload is bytes here, handed on as sent (JSON null is not special).
func submission(in *pb.TaskInput, i int) (engine.Submission, error) {
	tr := TaskRequest{
		Kind: in.GetKind(), Key: in.GetKey(), TimeoutMs: in.GetTimeoutMs(),
		MaxAttempts: int(in.GetMaxAttempts()), IdempotencyKey: in.GetIdempotencyKey(),
	}
	s, err := tr.submission(i)
	if err != nil {
		return s, err
	}
	if p := in.GetPayload(); len(p) > 0 {
		s.Payload = p
	}
	return s, nil
}

// Get returns a task as it is now.
func (g *GRPCServer) Get(ctx context.Context, req *pb.GetRequest) (*pb.Task, error) {
	if req.GetId() == "" {
		return nil, g.status(&DecodeError{Code: "bad_field", Message: "id is required"})
	}
	v, err := g.cfg.Engine.Get(ctx, req.GetId())
	if err != nil {
		return nil, g.status(err)
	}
	return taskProto(v), nil
}

// Wait returns the task once it is finished, or when the timeout passes.
func (g *GRPCServer) Wait(ctx context.Context, req *pb.WaitRequest) (*pb.Task, error) {
	switch {
	case req.GetId() == "":
		return nil, g.status(&DecodeError{Code: "bad_field", Message: "id is required"})
	case req.GetTimeoutMs() < 0:
		return nil, g.status(&DecodeError{Code: "bad_field", Message: fmt.Sprintf("timeout_ms must be >= 0, got %d", req.GetTimeoutMs())})
	}
	d := g.cfg.MaxWait
	if req.GetTimeoutMs() > 0 {
		d = min(d, time.Duration(req.GetTimeoutMs())*time.Millisecond)
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	v, err := g.cfg.Engine.Wait(wctx, req.GetId())
	if err != nil {
		return nil, g.status(err)
	}
	return taskProto(v), nil
}

// Cancel cancels a task.
func (g *GRPCServer) Cancel(ctx context.Context, req *pb.CancelRequest) (*pb.Task, error) {
	if req.GetId() == "" {
		return nil, g.status(&DecodeError{Code: "bad_field", Message: "id is required"})
	}
	v, err := g.cfg.Engine.Cancel(ctx, req.GetId())
	if err != nil {
		return nil, g.status(err)
	}
	return taskProto(v), nil
}

// Workers lists the slots in use, read from the shared region.
func (g *GRPCServer) Workers(_ context.Context, _ *pb.WorkersRequest) (*pb.WorkersResponse, error) {
	now := time.Now()
	cpu := g.cpuPercents()
	snaps := g.cfg.Region.Snapshots()
	out := make([]*pb.WorkerInfo, 0, len(snaps))
	for _, s := range snaps {
		if s.State == shm.StateEmpty {
			continue
		}
		w := &pb.WorkerInfo{
			Slot: int32(s.Slot), Pid: int32(s.PID), Generation: s.Generation, State: workerState(s.State),
			Capacity: s.Capacity, InFlight: s.InFlight, Completed: s.Completed, Failed: s.Failed,
			Restarts: s.Restarts, RssBytes: s.RSSBytes, LastExit: s.LastExit,
		}
		running := s.State == shm.StateStarting || s.State == shm.StateReady || s.State == shm.StateDraining
		if c, ok := cpu[s.Slot]; ok && running && c.PID == s.PID && c.Generation == s.Generation {
			w.CpuPercent = c.CPUPercent
		}
		if running && !s.Started.IsZero() {
			w.UptimeMs = max(0, now.Sub(s.Started).Milliseconds())
		}
		if !s.Heartbeat.At.IsZero() {
			w.HeartbeatAgeMs = max(0, now.Sub(s.Heartbeat.At).Milliseconds())
		}
		if s.State == shm.StateBackoff && s.BackoffUntil.After(now) {
			w.BackoffMs = s.BackoffUntil.Sub(now).Milliseconds()
		}
		out = append(out, w)
	}
	return &pb.WorkersResponse{Workers: out}, nil
}

// cpuSample is the part of the Workers JSON view the region cannot give:
// a CPU percentage needs two heartbeats, and only the master's sampler
// keeps the earlier one.
type cpuSample struct {
	Slot       int     `json:"slot"`
	PID        int     `json:"pid"`
	Generation uint64  `json:"generation"`
	CPUPercent float64 `json:"cpu_percent"`
}

func (g *GRPCServer) cpuPercents() map[int]cpuSample {
	if g.cfg.Workers == nil {
		return nil
	}
	b, err := json.Marshal(g.cfg.Workers())
	if err != nil {
		return nil
	}
	var ws []cpuSample
	if json.Unmarshal(b, &ws) != nil {
		return nil
	}
	m := make(map[int]cpuSample, len(ws))
	for _, w := range ws {
		m[w.Slot] = w
	}
	return m
}

// Stats returns the global counters, each in the field of its name.
func (g *GRPCServer) Stats(_ context.Context, _ *pb.StatsRequest) (*pb.StatsResponse, error) {
	resp := &pb.StatsResponse{}
	m := resp.ProtoReflect()
	fields := m.Descriptor().Fields()
	for name, v := range g.cfg.Region.CounterValues() {
		if fd := fields.ByName(protoreflect.Name(name)); fd != nil && fd.Kind() == protoreflect.Int64Kind {
			m.Set(fd, protoreflect.ValueOfInt64(v))
		}
	}
	return resp, nil
}

// classify maps an error to its gRPC code and the HTTP API's error code,
// as Server.engineError does for HTTP statuses.
func (g *GRPCServer) classify(err error) (codes.Code, string, string) {
	var de *DecodeError
	var inv *engine.InvalidError
	switch {
	case errors.As(err, &de):
		return codes.InvalidArgument, de.Code, de.Message
	case errors.As(err, &inv):
		return codes.InvalidArgument, inv.Code, inv.Message
	case errors.Is(err, engine.ErrShuttingDown):
		return codes.Unavailable, "shutting_down", err.Error()
	case errors.Is(err, engine.ErrQueueFull):
		return codes.ResourceExhausted, "queue_full", err.Error()
	case errors.Is(err, engine.ErrNotFound):
		return codes.NotFound, "not_found", err.Error()
	case errors.Is(err, engine.ErrTerminal):
		return codes.FailedPrecondition, "finished", err.Error()
	case errors.Is(err, engine.ErrNotDead):
		return codes.FailedPrecondition, "not_dead", err.Error()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Code(), "timeout", err.Error()
	}
	g.cfg.Logger.Error("api: grpc", "error", err)
	return codes.Internal, "internal", err.Error()
}

func (g *GRPCServer) status(err error) error {
	code, reason, msg := g.classify(err)
	return statusError(code, reason, msg)
}

// statusError is a gRPC status with an ErrorInfo naming the API's code.
func statusError(code codes.Code, reason, msg string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// ErrorCode returns the HTTP API's error code (bad_field, queue_full, …)
// a TaskService call failed with, or "" when err carries none.
func ErrorCode(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// taskProto is the gRPC view of a task. Text from the store is made valid
// UTF-8 (proto3 strings must be), the result is passed on as bytes.
func taskProto(v *engine.TaskView) *pb.Task {
	return &pb.Task{
		Id: valid(v.ID), Kind: valid(v.Kind), State: taskState(v.State),
		Attempts: v.Attempts, MaxAttempts: v.MaxAttempts, WorkerSlot: v.WorkerSlot,
		Key: valid(v.Key), Result: v.Result, Error: valid(v.Error),
		Progress: v.Progress, ProgressMessage: valid(v.ProgressMessage),
		CreatedAt: timestamp(v.CreatedAt), StartedAt: timestamp(v.StartedAt), FinishedAt: timestamp(v.FinishedAt),
	}
}

func valid(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func taskState(s store.State) pb.TaskState {
	switch s {
	case store.Queued:
		return pb.TaskState_TASK_STATE_QUEUED
	case store.Running:
		return pb.TaskState_TASK_STATE_RUNNING
	case store.Succeeded:
		return pb.TaskState_TASK_STATE_SUCCEEDED
	case store.Failed:
		return pb.TaskState_TASK_STATE_FAILED
	case store.Dead:
		return pb.TaskState_TASK_STATE_DEAD
	case store.Canceled:
		return pb.TaskState_TASK_STATE_CANCELED
	}
	return pb.TaskState_TASK_STATE_UNSPECIFIED
}

func workerState(s shm.State) pb.WorkerState {
	switch s {
	case shm.StateStarting:
		return pb.WorkerState_WORKER_STATE_STARTING
	case shm.StateReady:
		return pb.WorkerState_WORKER_STATE_READY
	case shm.StateDraining:
		return pb.WorkerState_WORKER_STATE_DRAINING
	case shm.StateStopped:
		return pb.WorkerState_WORKER_STATE_STOPPED
	case shm.StateDead:
		return pb.WorkerState_WORKER_STATE_DEAD
	case shm.StateBackoff:
		return pb.WorkerState_WORKER_STATE_BACKOFF
	}
	return pb.WorkerState_WORKER_STATE_UNSPECIFIED
}

// ListenGRPC listens on a --grpc-listen address: "unix:///path/api.sock" or
// "tcp://host:port". A Unix socket is made owner-only (0600); a stale
// socket left by a master killed with -9 is replaced, while one a live
// server answers on, or a file that is not a socket, is refused. Closing
// the listener removes the socket file.
func ListenGRPC(addr string) (net.Listener, error) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		path := strings.TrimPrefix(addr, "unix://")
		if path == "" {
			return nil, fmt.Errorf("api: grpc listen %q: no socket path", addr)
		}
		if st, err := os.Lstat(path); err == nil {
			if st.Mode()&os.ModeSocket == 0 {
				return nil, fmt.Errorf("api: grpc listen %s: the file exists and is not a socket", path)
			}
			if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
				c.Close()
				return nil, fmt.Errorf("api: grpc listen %s: another server is listening there", path)
			}
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("api: grpc listen %s: remove stale socket: %w", path, err)
			}
		}
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("api: grpc listen: %w", err)
		}
		if err := os.Chmod(path, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("api: grpc listen %s: make it owner-only: %w", path, err)
		}
		return ln, nil
	case strings.HasPrefix(addr, "tcp://"):
		hostport := strings.TrimPrefix(addr, "tcp://")
		ln, err := net.Listen("tcp", hostport)
		if err != nil {
			return nil, fmt.Errorf("api: grpc listen: %w", err)
		}
		return ln, nil
	}
	return nil, fmt.Errorf("api: grpc listen %q: want unix:///path or tcp://host:port", addr)
}

// Serve runs a gRPC server with the TaskService on ln until ctx ends, then
// stops it: no new calls, up to grace for the running ones (a Wait or an
// open SubmitStream may last long), then the rest are canceled. ln is
// closed (a Unix socket's file removed) when Serve returns. It returns nil
// after ctx ended, or the error that stopped serving before.
func (g *GRPCServer) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	s := grpc.NewServer(g.ServerOptions()...)
	g.Register(s)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	select {
	case err := <-served:
		s.Stop()
		if err != nil {
			return fmt.Errorf("api: grpc serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.Stop()
		<-stopped
	}
	<-served
	return nil
}
