package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/atomicflow/atomicflow/pkg/api"
	"github.com/atomicflow/atomicflow/pkg/engine"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/store"
	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// grpcFixture is a TaskService over a real engine (memory store, no
// workers, so tasks stay queued) on an in-memory connection.
type grpcFixture struct {
	client pb.TaskServiceClient
	engine *engine.Engine
	region *shm.Region
}

func newGRPC(t *testing.T, edit func(*api.Config)) *grpcFixture {
	t.Helper()
	region, err := shm.Create(filepath.Join(t.TempDir(), "shm"), 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { region.Close() })
	st := store.NewMemory(nil)
	t.Cleanup(func() { st.Close() })
	eng, err := engine.New(engine.Config{Store: st, Region: region, MaxQueue: 100, Kinds: []string{"echo", "sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{Engine: eng, Region: region, MaxBatch: 5}
	if edit != nil {
		edit(&cfg)
	}
	lis := bufconn.Listen(1 << 20)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- api.NewGRPC(cfg).Serve(ctx, lis, time.Second) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &grpcFixture{client: pb.NewTaskServiceClient(conn), engine: eng, region: region}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails unless err is a status with code and the API's error code.
func wantCode(t *testing.T, err error, code codes.Code, apiCode string) {
	t.Helper()
	if status.Code(err) != code || api.ErrorCode(err) != apiCode {
		t.Fatalf("error %v (api code %q), want %v with api code %q", err, api.ErrorCode(err), code, apiCode)
	}
}

func echo(payload string) *pb.TaskInput {
	return &pb.TaskInput{Kind: "echo", Payload: []byte(payload)}
}

func TestGRPCSubmitErrors(t *testing.T) {
	f := newGRPC(t, nil)
	ctx := testCtx(t)
	tests := []struct {
		name    string
		task    *pb.TaskInput
		code    codes.Code
		apiCode string
	}{
		{"ok", echo(`{"a":1}`), codes.OK, ""},
		{"no task", nil, codes.InvalidArgument, "bad_field"},
		{"no kind", &pb.TaskInput{}, codes.InvalidArgument, "bad_field"},
		{"unknown kind", &pb.TaskInput{Kind: "nope"}, codes.InvalidArgument, "unknown_kind"},
		{"negative timeout", &pb.TaskInput{Kind: "echo", TimeoutMs: -1}, codes.InvalidArgument, "bad_field"},
		{"too many attempts", &pb.TaskInput{Kind: "echo", MaxAttempts: 5000}, codes.InvalidArgument, "bad_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.client.Submit(ctx, &pb.SubmitOneRequest{Task: tt.task})
			if tt.code == codes.OK {
				if err != nil || resp.GetId() == "" {
					t.Fatalf("Submit: %v %v", resp, err)
				}
				return
			}
			wantCode(t, err, tt.code, tt.apiCode)
		})
	}
}

func TestGRPCSubmitBatchLimits(t *testing.T) {
	f := newGRPC(t, nil)
	ctx := testCtx(t)
	batch := func(n int) *pb.SubmitRequest {
		req := &pb.SubmitRequest{}
		for range n {
			req.Tasks = append(req.Tasks, echo(""))
		}
		return req
	}
	resp, err := f.client.SubmitBatch(ctx, batch(5))
	if err != nil || len(resp.GetIds()) != 5 {
		t.Fatalf("5 of 5: %v %v", resp, err)
	}
	_, err = f.client.SubmitBatch(ctx, batch(0))
	wantCode(t, err, codes.InvalidArgument, "bad_field")
	_, err = f.client.SubmitBatch(ctx, batch(6))
	wantCode(t, err, codes.InvalidArgument, "bad_field")
	bad := batch(3)
	bad.Tasks[2].Kind = ""
	_, err = f.client.SubmitBatch(ctx, bad)
	wantCode(t, err, codes.InvalidArgument, "bad_field")
	if !strings.Contains(status.Convert(err).Message(), "tasks[2]") {
		t.Fatalf("message %q does not name tasks[2]", status.Convert(err).Message())
	}
	// The queue holds 100: 5 accepted, 19 batches of 5 more fill it.
	for i := range 19 {
		if _, err := f.client.SubmitBatch(ctx, batch(5)); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	_, err = f.client.SubmitBatch(ctx, batch(1))
	wantCode(t, err, codes.ResourceExhausted, "queue_full")
	if got := f.region.Counter(shm.Submitted).Load(); got != 100 {
		t.Fatalf("submitted counter %d, want 100", got)
	}
}

func TestGRPCGetWaitCancel(t *testing.T) {
	f := newGRPC(t, nil)
	ctx := testCtx(t)
	sub, err := f.client.Submit(ctx, &pb.SubmitOneRequest{Task: &pb.TaskInput{Kind: "sleep", Payload: []byte(`{"ms":1}`), Key: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	id := sub.GetId()
	task, err := f.client.Get(ctx, &pb.GetRequest{Id: id})
	if err != nil {
		t.Fatal(err)
	}
	if task.GetId() != id || task.GetKind() != "sleep" || task.GetKey() != "k" || task.GetState() != pb.TaskState_TASK_STATE_QUEUED ||
		task.GetWorkerSlot() != -1 || task.GetMaxAttempts() != 3 || task.GetCreatedAt() == nil || task.GetFinishedAt() != nil {
		t.Fatalf("Get = %v", task)
	}
	// No worker runs it: Wait returns the queued task when its timeout passes.
	start := time.Now()
	task, err = f.client.Wait(ctx, &pb.WaitRequest{Id: id, TimeoutMs: 50})
	if err != nil || task.GetState() != pb.TaskState_TASK_STATE_QUEUED {
		t.Fatalf("Wait: %v %v", task, err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("Wait with a 50ms timeout took %v", d)
	}
	task, err = f.client.Cancel(ctx, &pb.CancelRequest{Id: id})
	if err != nil || task.GetState() != pb.TaskState_TASK_STATE_CANCELED {
		t.Fatalf("Cancel: %v %v", task, err)
	}
	task, err = f.client.Wait(ctx, &pb.WaitRequest{Id: id})
	if err != nil || task.GetState() != pb.TaskState_TASK_STATE_CANCELED || task.GetFinishedAt() == nil {
		t.Fatalf("Wait after cancel: %v %v", task, err)
	}

	errTests := []struct {
		name    string
		call    func() error
		code    codes.Code
		apiCode string
	}{
		{"cancel finished", func() error { _, err := f.client.Cancel(ctx, &pb.CancelRequest{Id: id}); return err }, codes.FailedPrecondition, "finished"},
		{"get unknown", func() error { _, err := f.client.Get(ctx, &pb.GetRequest{Id: "ffffffffffffffff"}); return err }, codes.NotFound, "not_found"},
		{"wait unknown", func() error { _, err := f.client.Wait(ctx, &pb.WaitRequest{Id: "ffffffffffffffff"}); return err }, codes.NotFound, "not_found"},
		{"cancel unknown", func() error { _, err := f.client.Cancel(ctx, &pb.CancelRequest{Id: "ffffffffffffffff"}); return err }, codes.NotFound, "not_found"},
		{"get no id", func() error { _, err := f.client.Get(ctx, &pb.GetRequest{}); return err }, codes.InvalidArgument, "bad_field"},
		{"wait negative", func() error { _, err := f.client.Wait(ctx, &pb.WaitRequest{Id: id, TimeoutMs: -1}); return err }, codes.InvalidArgument, "bad_field"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) { wantCode(t, tt.call(), tt.code, tt.apiCode) })
	}
}

func TestGRPCSubmitStream(t *testing.T) {
	f := newGRPC(t, nil)
	stream, err := f.client.SubmitStream(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	reqs := []*pb.SubmitRequest{
		{Seq: 1, Tasks: []*pb.TaskInput{echo("1"), echo("2")}},
		{Seq: 2, Tasks: []*pb.TaskInput{{Kind: "nope"}}},
		{Seq: 3},
		{Seq: 4, Tasks: []*pb.TaskInput{echo("3"), echo("4"), echo("5")}},
	}
	for i := range 20 {
		reqs = append(reqs, &pb.SubmitRequest{Seq: uint64(5 + i), Tasks: []*pb.TaskInput{echo("x")}})
	}
	go func() {
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				return
			}
		}
		_ = stream.CloseSend()
	}()
	var got []*pb.SubmitResponse
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d: %v", len(got), err)
		}
		got = append(got, resp)
	}
	if len(got) != len(reqs) {
		t.Fatalf("%d responses to %d requests", len(got), len(reqs))
	}
	ids := 0
	for i, resp := range got {
		if resp.GetSeq() != reqs[i].GetSeq() {
			t.Fatalf("response %d has seq %d, want %d: out of order", i, resp.GetSeq(), reqs[i].GetSeq())
		}
		ids += len(resp.GetIds())
	}
	if len(got[0].GetIds()) != 2 || got[0].GetError() != nil || len(got[3].GetIds()) != 3 {
		t.Fatalf("good batches: %v, %v", got[0], got[3])
	}
	for i, code := range map[int]string{1: "unknown_kind", 2: "bad_field"} {
		if e := got[i].GetError(); e.GetCode() != code || codes.Code(e.GetGrpcCode()) != codes.InvalidArgument || len(got[i].GetIds()) != 0 {
			t.Fatalf("response %d: %v, want error %s", i, got[i], code)
		}
	}
	if want := 2 + 3 + 20; ids != want || f.region.Counter(shm.Submitted).Load() != int64(want) {
		t.Fatalf("%d ids, submitted counter %d, want %d", ids, f.region.Counter(shm.Submitted).Load(), want)
	}
}

func TestGRPCAuth(t *testing.T) {
	f := newGRPC(t, func(c *api.Config) { c.AuthToken = "s3cret" })
	ctx := testCtx(t)
	withToken := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	tests := []struct {
		name string
		ctx  context.Context
		code codes.Code
	}{
		{"no token", ctx, codes.Unauthenticated},
		{"wrong token", withToken("nope"), codes.Unauthenticated},
		{"right token", withToken("s3cret"), codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := f.client.Submit(tt.ctx, &pb.SubmitOneRequest{Task: echo("")})
			if status.Code(err) != tt.code {
				t.Fatalf("Submit: %v, want %v", err, tt.code)
			}
			_, err = f.client.SubmitBatch(tt.ctx, &pb.SubmitRequest{Tasks: []*pb.TaskInput{echo("")}})
			if status.Code(err) != tt.code {
				t.Fatalf("SubmitBatch: %v, want %v", err, tt.code)
			}
			if tt.code != codes.OK {
				wantCode(t, err, codes.Unauthenticated, "unauthorized")
				_, err = f.client.Cancel(tt.ctx, &pb.CancelRequest{Id: "ffffffffffffffff"})
				wantCode(t, err, codes.Unauthenticated, "unauthorized")
				stream, err := f.client.SubmitStream(tt.ctx)
				if err == nil {
					_, err = stream.Recv()
				}
				wantCode(t, err, codes.Unauthenticated, "unauthorized")
				return
			}
			// Reads need no token.
			if _, err := f.client.Get(ctx, &pb.GetRequest{Id: sub.GetId()}); err != nil {
				t.Fatalf("Get without a token: %v", err)
			}
			if _, err := f.client.Stats(ctx, &pb.StatsRequest{}); err != nil {
				t.Fatalf("Stats without a token: %v", err)
			}
		})
	}
}

func TestGRPCShuttingDown(t *testing.T) {
	f := newGRPC(t, nil)
	ctx := testCtx(t)
	f.engine.Shutdown(ctx)
	_, err := f.client.Submit(ctx, &pb.SubmitOneRequest{Task: echo("")})
	wantCode(t, err, codes.Unavailable, "shutting_down")
	stream, err := f.client.SubmitStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.SubmitRequest{Seq: 9, Tasks: []*pb.TaskInput{echo("")}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetSeq() != 9 || codes.Code(resp.GetError().GetGrpcCode()) != codes.Unavailable {
		t.Fatalf("stream during shutdown: %v %v", resp, err)
	}
	_ = stream.CloseSend()
}

func TestGRPCStatsHasEveryCounter(t *testing.T) {
	f := newGRPC(t, nil)
	fields := (&pb.StatsResponse{}).ProtoReflect().Descriptor().Fields()
	for i, c := range shm.Counters() {
		fd := fields.ByName(protoreflect.Name(c.String()))
		if fd == nil || fd.Kind() != protoreflect.Int64Kind {
			t.Fatalf("StatsResponse has no int64 field %q: add it to api.proto", c)
		}
		f.region.Counter(c).Store(int64(100 + i))
	}
	resp, err := f.client.Stats(testCtx(t), &pb.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	m := resp.ProtoReflect()
	for i, c := range shm.Counters() {
		if got := m.Get(fields.ByName(protoreflect.Name(c.String()))).Int(); got != int64(100+i) {
			t.Errorf("%s = %d, want %d", c, got, 100+i)
		}
	}
}

func TestGRPCWorkers(t *testing.T) {
	started := time.Now().Add(-2 * time.Second)
	f := newGRPC(t, func(c *api.Config) {
		// The HTTP view, as the dashboard's sampler gives it.
		c.Workers = func() any {
			return []map[string]any{{"slot": 0, "pid": 4242, "generation": 3, "cpu_percent": 12.5}}
		}
	})
	f.region.Slot(0).SetIdentity(shm.Identity{PID: 4242, Generation: 3, State: shm.StateReady, Restarts: 2, Started: started})
	resp, err := f.client.Workers(testCtx(t), &pb.WorkersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Slot 1 was never used: it is not listed.
	if len(resp.GetWorkers()) != 1 {
		t.Fatalf("workers %v, want slot 0 only", resp.GetWorkers())
	}
	w := resp.GetWorkers()[0]
	if w.GetSlot() != 0 || w.GetPid() != 4242 || w.GetGeneration() != 3 || w.GetState() != pb.WorkerState_WORKER_STATE_READY ||
		w.GetRestarts() != 2 || w.GetCpuPercent() != 12.5 || w.GetUptimeMs() < 2000 {
		t.Fatalf("worker %v", w)
	}
	// Every shm state has its enum value, by name.
	for st := shm.StateStarting; st <= shm.StateBackoff; st++ {
		f.region.Slot(1).SetIdentity(shm.Identity{PID: 1, Generation: 1, State: st})
		resp, err := f.client.Workers(testCtx(t), &pb.WorkersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.GetWorkers()[1].GetState().String()
		if want := "WORKER_STATE_" + strings.ToUpper(st.String()); got != want {
			t.Fatalf("shm state %s is %s, want %s", st, got, want)
		}
	}
}

func TestListenGRPC(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	ln, err := api.ListenGRPC("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, mode %v: want 0600", err, st.Mode())
	}
	if _, err := api.ListenGRPC("unix://" + sock); err == nil {
		t.Fatal("a second listener took a socket a server listens on")
	}
	ln.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}

	// A socket file nobody listens on (a master killed with -9) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	ln, err = api.ListenGRPC("unix://" + sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()

	plain := filepath.Join(dir, "file")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"unix://" + plain, "unix://", "http://x", "127.0.0.1:0", ""} {
		if ln, err := api.ListenGRPC(addr); err == nil {
			ln.Close()
			t.Errorf("ListenGRPC(%q) succeeded", addr)
		}
	}
	ln, err = api.ListenGRPC("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
