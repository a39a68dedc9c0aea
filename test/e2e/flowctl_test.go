package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/atomicflow/atomicflow/proto/atomicflow/v1"
)

// flowctlRun is one run of the flowctl binary.
type flowctlRun struct {
	code           int
	stdout, stderr string
}

// flowctl runs the built flowctl against m (its --addr and --run-dir come
// first; nil m passes neither) with extra environment env.
func flowctl(t *testing.T, m *master, env []string, args ...string) flowctlRun {
	t.Helper()
	r, err := runFlowctl(m, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runFlowctl is flowctl without a *testing.T, for a goroutine: the error
// is for a flowctl that could not run at all.
func runFlowctl(m *master, env []string, args ...string) (flowctlRun, error) {
	if m != nil {
		args = append([]string{"--addr", m.URL, "--run-dir", m.RunDir}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bins.dir, "flowctl"), args...)
	// No ATOMICFLOW_* from the environment of the test run leaks in.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ATOMICFLOW_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// flowctl is built with -race: skip the race runtime's 1s sleep at a
	// zero exit (a race still fails the run with exit code 66).
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := flowctlRun{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("flowctl %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

// ok fails unless the run exited 0 and stdout matches every pattern.
func (r flowctlRun) ok(t *testing.T, patterns ...string) flowctlRun {
	t.Helper()
	return r.want(t, 0, patterns, nil)
}

func (r flowctlRun) want(t *testing.T, code int, stdout, stderr []string) flowctlRun {
	t.Helper()
	if r.code != code {
		t.Fatalf("flowctl exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, p := range stdout {
		if !regexp.MustCompile(p).MatchString(r.stdout) {
			t.Fatalf("stdout does not match %s:\n%s\nstderr:\n%s", p, r.stdout, r.stderr)
		}
	}
	for _, p := range stderr {
		if !regexp.MustCompile(p).MatchString(r.stderr) {
			t.Fatalf("stderr does not match %s:\n%s", p, r.stderr)
		}
	}
	return r
}

// table parses flowctl's aligned output: header row, then rows of fields.
func table(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestFlowctlSubmitCountAndStats(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	flowctl(t, m, nil, "submit", "--kind", "echo", "--payload", `{"n":1}`, "--count", "2000", "--batch", "300", "--concurrency", "4").
		ok(t, `(?m)^submitted 2000 tasks in \d+\.\d\ds \(\d+ tasks/s\)$`)
	m.waitStat("completed", 2000, 60*time.Second)

	r := flowctl(t, m, nil, "stats").ok(t, `(?m)^submitted\s+2000$`, `(?m)^completed\s+2000$`)
	got := map[string]string{}
	for _, f := range table(r.stdout) {
		got[strings.Join(f[:len(f)-1], "_")] = f[len(f)-1]
	}
	for name, v := range m.stats() {
		if name == "in_flight" || name == "queued" || name == "ws_clients" {
			continue
		}
		if got[name] != strconv.FormatInt(v, 10) {
			t.Errorf("flowctl stats %s = %q, API says %d", name, got[name], v)
		}
	}

	// --wait over many tasks prints the outcome of each.
	flowctl(t, m, nil, "submit", "--kind", "sleep", "--payload", `{"ms":20}`, "--count", "300", "--batch", "100", "--wait").
		ok(t, `(?m)^submitted 300 tasks in `, `(?m)^finished 300 tasks in \d+\.\d\ds: 300 succeeded$`)
	// A file of tasks, one per line, and a line the master refuses.
	file := filepath.Join(t.TempDir(), "tasks.jsonl")
	os.WriteFile(file, []byte("{\"kind\":\"echo\",\"payload\":1}\n{\"kind\":\"sleep\",\"payload\":{\"ms\":1}}\n\n{\"kind\":\"cpu\",\"payload\":{\"rounds\":10}}\n"), 0o600)
	flowctl(t, m, nil, "submit", "--file", file, "--wait").ok(t, `submitted 3 tasks`, `: 3 succeeded`)
	os.WriteFile(file, []byte("{\"kind\":\"echo\"}\n{\"kind\":\"nope\"}\n"), 0o600)
	flowctl(t, m, nil, "submit", "--file", file).want(t, 1, nil,
		[]string{regexp.QuoteMeta(file) + `:2: tasks\[1\]: unknown task kind "nope".*\(unknown_kind, HTTP 400\)`})
}

func TestFlowctlSubmitWaitAndStatus(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	r := flowctl(t, m, nil, "submit", "--kind", "sleep", "--payload", `{"ms":50}`, "--key", "k1", "--wait").
		ok(t, `(?m)^state\s+succeeded$`, `(?m)^result\s+\{"slept_ms":50\}$`, `(?m)^worker\s+slot [01]$`, `(?m)^duration\s+`)
	id := regexp.MustCompile(`(?m)^id\s+([0-9a-f]{16})$`).FindStringSubmatch(r.stdout)
	if id == nil {
		t.Fatalf("no id in:\n%s", r.stdout)
	}
	if v := m.task(id[1]); v.State != "succeeded" {
		t.Fatalf("API says %+v", v)
	}
	flowctl(t, m, nil, "status", id[1]).ok(t, `(?m)^key\s+k1$`, `(?m)^state\s+succeeded$`)
	flowctl(t, m, nil, "status", "--json", id[1]).ok(t, `"state": "succeeded"`, `"result": \{`)

	// Without --wait, submit prints the id alone: for scripts.
	r = flowctl(t, m, nil, "submit", "--kind", "sleep", "--payload", `{"ms":300}`).ok(t, `^[0-9a-f]{16}\n$`)
	id2 := strings.TrimSpace(r.stdout)
	flowctl(t, m, nil, "status", id2, "--wait", "10s").ok(t, `(?m)^state\s+succeeded$`)

	// A task that fails until it is dead: --wait exits 1.
	flowctl(t, m, nil, "submit", "--kind", "fail", "--max-attempts", "1", "--wait").
		want(t, 1, []string{`(?m)^state\s+dead$`, `(?m)^error\s+\S`}, nil)

	// Cancel a long task.
	r = flowctl(t, m, nil, "submit", "--kind", "sleep", "--payload", `{"ms":60000}`).ok(t)
	id3 := strings.TrimSpace(r.stdout)
	flowctl(t, m, nil, "cancel", id3).ok(t, `task `+id3)
	flowctl(t, m, nil, "status", id3, "--wait", "10s").ok(t, `(?m)^state\s+canceled$`)
}

func TestFlowctlWorkersKillAndTop(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	before := m.waitReady(2)
	r := flowctl(t, m, nil, "workers").ok(t, `^SLOT\s+PID\s+GEN\s+STATE`)
	rows := table(r.stdout)[1:]
	if len(rows) != 2 {
		t.Fatalf("%d worker rows:\n%s", len(rows), r.stdout)
	}
	for i, row := range rows {
		if row[0] != strconv.Itoa(i) || row[1] != strconv.Itoa(before[i].PID) || row[3] != "ready" {
			t.Fatalf("row %d %v, want slot %d pid %d ready", i, row, i, before[i].PID)
		}
	}

	flowctl(t, m, nil, "kill", "0").ok(t, fmt.Sprintf(`slot 0: kill sent to pid %d`, before[0].PID))
	waitFor(t, 15*time.Second, "slot 0 replaced", func() bool {
		w := m.workers()[0]
		return w.State == "ready" && w.PID != before[0].PID
	})
	if w := m.workers()[1]; w.PID != before[1].PID {
		t.Fatalf("slot 1 disturbed by kill 0: %+v", w)
	}
	r = flowctl(t, m, nil, "restart", "1", "--wait").ok(t, fmt.Sprintf(`slot 1: pid %d replaced by pid \d+ \(generation 2\)`, before[1].PID))
	after := m.workers()
	if !strings.Contains(r.stdout, fmt.Sprintf("by pid %d ", after[1].PID)) {
		t.Fatalf("restart --wait printed %q, slot 1 is %+v", r.stdout, after[1])
	}
	flowctl(t, m, nil, "kill", "7").want(t, 1, nil, []string{`\(not_found, HTTP 404\)`})

	// top reads the shared region: the pids the API lists, the counters.
	flowctl(t, m, nil, "submit", "--kind", "echo", "--count", "50").ok(t)
	m.waitStat("completed", 50, 30*time.Second)
	r = flowctl(t, m, nil, "top", "--once", "--interval", "300ms")
	r.ok(t, `master pid \d+`, `completed 50`, `(?m)^SLOT\s+PID\s+GEN\s+STATE\s+IN FLIGHT/CAP`)
	for _, w := range after {
		line := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+%d\s+%d\s+ready\s+\d+/%d\s`, w.Slot, w.PID, w.Generation, w.Capacity))
		if !line.MatchString(r.stdout) {
			t.Fatalf("top has no line for slot %d pid %d:\n%s", w.Slot, w.PID, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "\033[") {
		t.Fatal("top --once wrote escape sequences")
	}
}

func TestFlowctlErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	for _, args := range [][]string{{"workers"}, {"stats"}, {"submit", "--kind", "echo"}, {"submit", "--kind", "echo", "--count", "100"}, {"kill", "0"}} {
		flowctl(t, nil, nil, append([]string{"--addr", dead}, args...)...).want(t, 1, nil,
			[]string{`^flowctl: no master at ` + regexp.QuoteMeta(dead) + ` \(connection refused\) — start one with make run\n$`})
	}
	// ATOMICFLOW_ADDR is the default --addr.
	flowctl(t, nil, []string{"ATOMICFLOW_ADDR=" + dead}, "workers").want(t, 1, nil, []string{`no master at ` + regexp.QuoteMeta(dead)})

	missing := filepath.Join(shortTemp(t), "run")
	flowctl(t, nil, nil, "top", "--once", "--run-dir", missing).want(t, 1, nil,
		[]string{regexp.QuoteMeta(fmt.Sprintf("no master running with run dir %s (no shared region at %s/shm)", missing, missing))})
	flowctl(t, nil, []string{"ATOMICFLOW_RUN_DIR=" + missing}, "top", "--once").want(t, 1, nil, []string{`no shared region at`})

	// The API's own errors, as the API words them.
	m := startMaster(t, options{workers: 1})
	m.waitReady(1)
	flowctl(t, m, nil, "submit", "--kind", "nope").want(t, 1, nil, []string{`unknown task kind "nope".*\(unknown_kind, HTTP 400\)`})
	flowctl(t, m, nil, "status", "ffffffffffffffff").want(t, 1, nil, []string{`task not found.*\(not_found, HTTP 404\)`})
	flowctl(t, m, nil, "submit", "--kind", "echo", "--count", "20000", "--batch", "20000").want(t, 1, nil, []string{`the limit is 10000 \(bad_field, HTTP 400\)`})
	flowctl(t, m, nil, "frobnicate").want(t, 2, nil, []string{`unknown command "frobnicate"`})
	flowctl(t, nil, nil, "--help").ok(t, `submit`, `top`, `reload`)

	// A master killed with -9 leaves its region behind: top says it is gone.
	m.signal(syscall.SIGKILL)
	m.waitExit(10 * time.Second)
	flowctl(t, m, nil, "top", "--once").want(t, 1, nil, []string{`no master running with run dir .* belongs to pid \d+, which has exited`})
	flowctl(t, m, nil, "workers").want(t, 1, nil, []string{`no master at .*connection refused`})
}

func TestFlowctlAuthToken(t *testing.T) {
	m := startMaster(t, options{workers: 1, args: []string{"--auth-token", "s3cret"}})
	m.waitReady(1)
	flowctl(t, m, nil, "submit", "--kind", "echo").want(t, 1, nil, []string{`\(unauthorized, HTTP 401; pass --token or set ATOMICFLOW_AUTH_TOKEN\)`})
	flowctl(t, m, nil, "--token", "s3cret", "submit", "--kind", "echo", "--wait").ok(t, `succeeded`)
	flowctl(t, m, []string{"ATOMICFLOW_AUTH_TOKEN=s3cret"}, "submit", "--kind", "echo", "--count", "10").ok(t, `submitted 10 tasks`)
	flowctl(t, m, nil, "workers").ok(t, `ready`) // reads need no token
}

func TestFlowctlScale(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	before := m.waitReady(2)
	flowctl(t, m, nil, "scale", "3").ok(t, `scaling to 3 workers`)
	after := m.waitReady(3)
	for i := range before {
		if after[i].PID != before[i].PID {
			t.Fatalf("scaling up replaced slot %d: %+v → %+v", i, before[i], after[i])
		}
	}
	flowctl(t, m, nil, "scale", "2", "--wait").ok(t, `2 workers ready in`)
	m.waitReady(2)
	flowctl(t, m, nil, "scale", "0").want(t, 2, nil, []string{`N must be`})
}

// TestFlowctlReload is the "done when": a new worker binary
// deployed with flowctl reload under load loses no task. Then a reload
// without --wait returns at once and the reload still happens.
func TestFlowctlReload(t *testing.T) {
	// A lighter load than the SIGHUP test's (the same reload path): 200
	// tasks at once, 2,000 in all, 0.5 s each.
	m := reloadUnderLoad(t, reloadLoad{workers: 2, capacity: 100, n: 2000, sleepMs: 500}, func(m *master) func() {
		out := make(chan flowctlRun, 1)
		errs := make(chan error, 1)
		go func() {
			r, err := runFlowctl(m, nil, "reload", "--wait", "--timeout", "60s")
			out <- r
			errs <- err
		}()
		return func() {
			r := <-out
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			r.ok(t, `(?m)^reloaded 2 workers in \d+\.\d\ds$`)
		}
	})
	before := m.waitReady(2)
	flowctl(t, m, nil, "reload").ok(t, `^rolling reload started\n$`)
	waitFor(t, 60*time.Second, "every slot reloaded", func() bool {
		ws := m.workers()
		if len(ws) != 2 {
			return false
		}
		for i, w := range ws {
			if w.State != "ready" || w.PID == before[i].PID || w.Generation != before[i].Generation+1 {
				return false
			}
		}
		return true
	})
}

// TestGRPCTaskService drives the master's gRPC TaskService on its default
// socket, unix://<run-dir>/api.sock.
func TestGRPCTaskService(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	sock := filepath.Join(m.RunDir, "api.sock")
	st, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("no gRPC socket: %v (the master serves api.NewGRPC on --grpc-listen)", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", st.Mode().Perm())
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewTaskServiceClient(conn)
	ctx := ctxTimeout(t, 60*time.Second)

	one, err := c.Submit(ctx, &pb.SubmitOneRequest{Task: &pb.TaskInput{Kind: "sleep", Payload: []byte(`{"ms":20}`)}})
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Wait(ctx, &pb.WaitRequest{Id: one.GetId(), TimeoutMs: 10000})
	if err != nil || task.GetState() != pb.TaskState_TASK_STATE_SUCCEEDED || string(task.GetResult()) != `{"slept_ms":20}` {
		t.Fatalf("Wait: %v %v", task, err)
	}
	if v := m.task(one.GetId()); v.State != "succeeded" {
		t.Fatalf("HTTP sees %+v", v)
	}

	// A stream of batches: 10 × 500 echo tasks, one bad batch in between.
	stream, err := c.SubmitStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range 11 {
			req := &pb.SubmitRequest{Seq: uint64(i)}
			for range 500 {
				req.Tasks = append(req.Tasks, &pb.TaskInput{Kind: "echo", Payload: []byte(`"x"`)})
			}
			if i == 5 {
				req.Tasks[3].Kind = "nope"
			}
			if stream.Send(req) != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	accepted := 0
	for i := 0; ; i++ {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSeq() != uint64(i) {
			t.Fatalf("response %d has seq %d", i, resp.GetSeq())
		}
		if i == 5 {
			if resp.GetError().GetCode() != "unknown_kind" {
				t.Fatalf("bad batch answered %v", resp)
			}
			continue
		}
		accepted += len(resp.GetIds())
	}
	if accepted != 5000 {
		t.Fatalf("%d tasks accepted, want 5000", accepted)
	}
	m.waitStat("completed", 5001, 60*time.Second)

	stats, err := c.Stats(ctx, &pb.StatsRequest{})
	if err != nil || stats.GetCompleted() != m.stats()["completed"] || stats.GetSubmitted() != 5001 {
		t.Fatalf("Stats %v %v, HTTP %v", stats, err, m.stats())
	}
	ws, err := c.Workers(ctx, &pb.WorkersRequest{})
	if err != nil || len(ws.GetWorkers()) != 2 {
		t.Fatalf("Workers %v %v", ws, err)
	}
	for i, w := range m.workers() {
		g := ws.GetWorkers()[i]
		if int(g.GetPid()) != w.PID || g.GetState() != pb.WorkerState_WORKER_STATE_READY || g.GetCapacity() != w.Capacity {
			t.Fatalf("gRPC slot %d %v, HTTP %+v", i, g, w)
		}
	}
	if _, err := c.Get(ctx, &pb.GetRequest{Id: "ffffffffffffffff"}); status.Code(err) != codes.NotFound {
		t.Fatalf("Get unknown: %v", err)
	}
	if _, err := c.Cancel(ctx, &pb.CancelRequest{Id: one.GetId()}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Cancel finished: %v", err)
	}
}
