package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// helperEnv, when set, makes the bench binary a helper child instead of
// the harness (the test-binary-as-fake-child pattern).
const helperEnv = "AFBENCH_HELPER"

const (
	shmOps     = 50_000_000 // increments per process
	grpcCalls  = 20_000
	grpcWarmup = 1_000
)

// runHelper runs the helper named by AFBENCH_HELPER.
func runHelper(name string, args []string, stdout, stderr io.Writer) int {
	switch name {
	case "shm-add":
		if len(args) != 2 {
			fmt.Fprintln(stderr, "shm-add: want PATH N")
			return 2
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintln(stderr, "shm-add:", err)
			return 2
		}
		from, to, err := shmAdd(args[0], n)
		if err != nil {
			fmt.Fprintln(stderr, "shm-add:", err)
			return 1
		}
		fmt.Fprintf(stdout, "%d %d\n", from.UnixNano(), to.UnixNano())
		return 0
	}
	fmt.Fprintf(stderr, "unknown helper %q\n", name)
	return 2
}

// shmAdd maps the region at path, waits until both processes are there,
// then adds 1 to the shared Completed counter n times and returns when it
// started and ended.
func shmAdd(path string, n int) (from, to time.Time, err error) {
	r, err := shm.Open(path, shm.OpenOptions{Slot: -1})
	if err != nil {
		return from, to, err
	}
	defer r.Close()
	barrier := r.Counter(shm.Submitted)
	c := r.Counter(shm.Completed)
	barrier.Add(1)
	deadline := time.Now().Add(10 * time.Second)
	for barrier.Load() < 2 {
		if time.Now().After(deadline) {
			return from, to, fmt.Errorf("the other process did not arrive in 10 s")
		}
		runtime.Gosched()
	}
	from = time.Now()
	for i := 0; i < n; i++ {
		c.Add(1)
	}
	return from, time.Now(), nil
}

func runSHM(ctx context.Context, env *benchEnv, o *outcome) error {
	dir, err := os.MkdirTemp("", "afbench-shm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "region")
	r, err := shm.Create(path, 1)
	if err != nil {
		return err
	}
	defer r.Close()

	// One process alone first, for reference (no contention).
	c := r.Counter(shm.Retried)
	start := time.Now()
	for i := 0; i < shmOps; i++ {
		c.Add(1)
	}
	alone := float64(time.Since(start).Nanoseconds()) / shmOps

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for i := 0; i < 2; i++ {
		var b strings.Builder
		cmd := exec.CommandContext(ctx, self, path, strconv.Itoa(shmOps))
		cmd.Env = append(os.Environ(), helperEnv+"=shm-add")
		cmd.Stdout, cmd.Stderr = &b, &b
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start helper: %w", err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &b)
	}
	var per []float64
	var spans [2][2]int64
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("helper %d: %v: %s", i, err, outs[i])
		}
		if _, err := fmt.Sscanf(outs[i].String(), "%d %d", &spans[i][0], &spans[i][1]); err != nil {
			return fmt.Errorf("helper %d said %q", i, outs[i])
		}
		per = append(per, float64(spans[i][1]-spans[i][0])/shmOps)
	}
	// How much of the time the two were adding at once.
	overlap := float64(min(spans[0][1], spans[1][1])-max(spans[0][0], spans[1][0])) /
		float64(max(spans[0][1], spans[1][1])-min(spans[0][0], spans[1][0]))
	if got := r.Counter(shm.Completed).Load(); got != 2*shmOps {
		return fmt.Errorf("shared counter is %d after 2 × %d adds", got, shmOps)
	}
	shmNs := (per[0] + per[1]) / 2
	o.add("ns per shared-counter increment, 2 processes at once on one counter", shmNs, "ns", nil,
		fmt.Sprintf("%.1f and %.1f ns; one process alone %.1f ns; the two ran at once for %.0f%% of the span", per[0], per[1], alone, 100*max(overlap, 0)))

	grpcNs, err := grpcRoundTrip(ctx, dir)
	if err != nil {
		o.missing("ns per gRPC unary round trip over a Unix socket", nil, err.Error())
		return nil
	}
	o.add("ns per gRPC unary round trip (health Check) over a Unix socket", grpcNs, "ns", nil,
		fmt.Sprintf("%d sequential calls, client and server in the bench process", grpcCalls))
	o.add("gRPC round trip ÷ shared-counter increment", grpcNs/shmNs, "×", nil, "")
	o.note("both helper processes map one shm.Create'd region and wait at a barrier in it before %s atomic adds each; the total is checked (2 × %s)",
		group(shmOps), group(shmOps))
	return nil
}

// grpcRoundTrip serves the gRPC health service on a Unix socket in dir
// and times sequential Check calls to it.
func grpcRoundTrip(ctx context.Context, dir string) (float64, error) {
	sock := filepath.Join(dir, "health.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return 0, err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		srv.Stop()
		<-served
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	for i := 0; i < grpcWarmup; i++ {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return 0, fmt.Errorf("health Check: %w", err)
		}
	}
	start := time.Now()
	for i := 0; i < grpcCalls; i++ {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return 0, fmt.Errorf("health Check: %w", err)
		}
	}
	return float64(time.Since(start).Nanoseconds()) / grpcCalls, nil
}
