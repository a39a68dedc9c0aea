package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// masterOptions says how to start one master. Zero fields take the
// master's own defaults, except those the harness always sets (run and
// data directories, --listen, --grpc-listen, --env-file).
type masterOptions struct {
	Workers  int
	Capacity int
	Store    string // memory or bolt
	MaxQueue int
	// ShutdownTimeout is --shutdown-timeout (default 2s: a benchmark does not
	// wait for its sleep tasks).
	ShutdownTimeout time.Duration
	// Extra flags, appended as given.
	Extra []string
	// Env is added to the master's environment (and so to its workers').
	Env []string
	// MasterBin and WorkerBin replace bin/master and bin/worker (the
	// profiling copies).
	MasterBin, WorkerBin string
}

// masterProc is a running master, started like a user would.
type masterProc struct {
	cmd     *exec.Cmd
	dir     string // temporary; removed by Stop
	RunDir  string
	DataDir string
	Addr    string // host:port of the HTTP API
	URL     string // http://Addr
	GRPC    string // path of the gRPC Unix socket asked for
	PID     int
	Workers int
	Region  *shm.Region // mapped read-only
	logPath string
	keep    bool // keep the log (the -keep flag)
	exited  chan struct{}
	waitErr error
}

var listenLine = regexp.MustCompile(`listening on http://([0-9.:\[\]a-z]+)`)

// startMaster starts bin/master with opt and waits for its "listening on"
// line and for every worker slot to be ready in the shared region.
func startMaster(ctx context.Context, env *benchEnv, opt masterOptions) (*masterProc, error) {
	dir, err := os.MkdirTemp("", "afbench-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	m := &masterProc{
		dir: dir, RunDir: filepath.Join(dir, "run"), DataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "master.log"), exited: make(chan struct{}),
	}
	m.GRPC = filepath.Join(m.RunDir, "api.sock")
	m.keep = env.keep
	if opt.Store == "" {
		opt.Store = "memory"
	}
	if opt.Workers <= 0 {
		opt.Workers = 2
	}
	if opt.ShutdownTimeout <= 0 {
		opt.ShutdownTimeout = 2 * time.Second
	}
	m.Workers = opt.Workers
	bin := opt.MasterBin
	if bin == "" {
		bin = filepath.Join(env.BinDir, "master")
	}
	args := []string{
		"--run-dir", m.RunDir, "--data-dir", m.DataDir, "--listen", "127.0.0.1:0",
		"--grpc-listen", "unix://" + m.GRPC, "--env-file", "",
		"--store", opt.Store, "--workers", strconv.Itoa(opt.Workers),
		"--shutdown-timeout", opt.ShutdownTimeout.String(),
	}
	if opt.Capacity > 0 {
		args = append(args, "--capacity", strconv.Itoa(opt.Capacity))
	}
	if opt.MaxQueue > 0 {
		args = append(args, "--max-queue", strconv.Itoa(opt.MaxQueue))
	}
	if opt.WorkerBin != "" {
		args = append(args, "--worker-bin", opt.WorkerBin)
	}
	args = append(args, opt.Extra...)
	logf, err := os.Create(m.logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("master log: %w", err)
	}
	defer logf.Close() // the child keeps its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), opt.Env...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("master stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	m.cmd, m.PID = cmd, cmd.Process.Pid
	addr := make(chan string, 1)
	go func() {
		// Reads stdout until the master exits, so that it never blocks on a
		// full pipe; ends when the pipe closes.
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if mm := listenLine.FindStringSubmatch(sc.Text()); mm != nil {
				select {
				case addr <- mm[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		m.waitErr = cmd.Wait()
		close(m.exited)
	}()
	select {
	case a := <-addr:
		m.Addr, m.URL = a, "http://"+a
	case <-m.exited:
		err := fmt.Errorf("master exited before listening (%v): %s", m.waitErr, m.logTail(2000))
		os.RemoveAll(dir)
		return nil, err
	case <-time.After(60 * time.Second):
		m.Stop()
		return nil, fmt.Errorf("master printed no listening line in 60s: %s", m.logTail(2000))
	case <-ctx.Done():
		m.Stop()
		return nil, ctx.Err()
	}
	m.Region, err = shm.Open(filepath.Join(m.RunDir, "shm"), shm.OpenOptions{Slot: -1, ReadOnly: true})
	if err != nil {
		m.Stop()
		return nil, fmt.Errorf("map the shared region: %w", err)
	}
	if err := m.waitReady(ctx, opt.Workers, 30*time.Second); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// waitReady waits until slots 0..n-1 are ready.
func (m *masterProc) waitReady(ctx context.Context, n int, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		ready := 0
		for i := 0; i < n && i < m.Region.Slots(); i++ {
			if id := m.Region.Slot(i).Identity(); id.State == shm.StateReady && id.PID > 0 {
				ready++
			}
		}
		if ready == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d workers ready after %v", ready, n, bound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.exited:
			return fmt.Errorf("master exited: %v", m.waitErr)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// WorkerPIDs returns the pids of the ready workers in slots 0..Workers-1.
func (m *masterProc) WorkerPIDs() []int {
	var pids []int
	for i := 0; i < m.Workers && i < m.Region.Slots(); i++ {
		if id := m.Region.Slot(i).Identity(); id.PID > 0 && id.State == shm.StateReady {
			pids = append(pids, id.PID)
		}
	}
	return pids
}

// Counter reads one global counter from the shared region.
func (m *masterProc) Counter(c shm.Counter) int64 { return m.Region.Counter(c).Load() }

// Stop asks the master to stop (SIGTERM), waits with a bound, then kills
// it (its workers die with it: Pdeathsig), reaps it, and removes what it
// left: its region file and the temporary directories.
func (m *masterProc) Stop() {
	if m.cmd == nil {
		return
	}
	var shmFile string
	if m.Region != nil {
		shmFile = m.Region.Path()
		if target, err := os.Readlink(shmFile); err == nil {
			shmFile = target
		}
		_ = m.Region.Close()
		m.Region = nil
	}
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(30 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	if shmFile != "" {
		_ = os.Remove(shmFile) // gone already after a clean stop
	}
	if m.keep {
		_ = os.RemoveAll(m.DataDir)
		fmt.Fprintf(os.Stderr, "bench: kept the master's log %s\n", m.logPath)
	} else {
		_ = os.RemoveAll(m.dir)
	}
	m.cmd = nil
}

// Alive reports whether the master is still running.
func (m *masterProc) Alive() bool {
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *masterProc) logTail(n int) string {
	b, _ := os.ReadFile(m.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// waitCounter polls c every millisecond until it reaches target, the bound
// passes, or the master exits. It returns the time it was seen at target
// (or the last poll) and whether it got there.
func (m *masterProc) waitCounter(ctx context.Context, c shm.Counter, target int64, bound time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		if m.Counter(c) >= target {
			return now, true
		}
		if now.After(deadline) || !m.Alive() {
			return now, false
		}
		select {
		case <-ctx.Done():
			return time.Now(), false
		case <-tick.C:
		}
	}
}

// errHTTP is a response with an unexpected status.
var errHTTP = errors.New("unexpected HTTP status")

// newHTTPClient is a keep-alive client for the loopback API.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
			DisableCompression: true, IdleConnTimeout: 30 * time.Second,
		},
	}
}
