package store_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/store"
)

// The test binary re-runs itself as a child process that plays one of
// these helpers, chosen by the environment variable GO_WANT_HELPER_PROCESS;
// STORE_PATH names the bolt file. A helper writes lines to stdout.
const (
	helperCreate = "create" // creates records from several goroutines forever, one "<id>" line per durable record
	helperFlush  = "flush"  // creates and updates flushCount records, Flushes, says "flushed", then keeps updating unflushed
	helperHold   = "hold"   // opens the store, says "ready" and holds it until stdin closes
)

// flushCount is how many records the flush helper creates.
const flushCount = 300

// helperMain runs the helper named mode and returns the exit code.
func helperMain(mode string) int {
	path := os.Getenv("STORE_PATH")
	s, err := store.OpenBolt(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	var out sync.Mutex
	say := func(line string) {
		out.Lock()
		defer out.Unlock()
		// One write per line: a line is whole or absent when the parent
		// kills us.
		_, _ = os.Stdout.Write([]byte(line + "\n"))
	}
	ctx := context.Background()
	switch mode {
	case helperCreate:
		for g := range 8 {
			go func() {
				for i := 0; ; i++ {
					n := 1 + i%3 // batches of 1 to 3
					recs := make([]*store.Record, n)
					for j := range recs {
						recs[j] = crashRecord(fmt.Sprintf("%02x%014x", g, i*3+j))
					}
					res, err := s.Create(ctx, recs)
					if err != nil {
						fmt.Fprintln(os.Stderr, "helper:", err)
						os.Exit(3)
					}
					for _, r := range res {
						say(r.ID)
					}
				}
			}()
		}
		select {}
	case helperFlush:
		var recs []*store.Record
		for i := range flushCount {
			recs = append(recs, crashRecord(fmt.Sprintf("%016x", i)))
		}
		if _, err := s.Create(ctx, recs); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		for _, r := range recs {
			s.Update(flushedRecord(r))
		}
		if err := s.Flush(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		say("flushed")
		for i := 0; ; i++ {
			r := recs[i%len(recs)]
			s.Update(with(r, func(r *store.Record) { r.State = store.Running; r.Attempts = int32(i) }))
			time.Sleep(100 * time.Microsecond)
		}
	case helperHold:
		say("ready")
		_, _ = io.Copy(io.Discard, os.Stdin)
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
	return 2
}

// crashRecord is the record the helpers create under id.
func crashRecord(id string) *store.Record {
	return &store.Record{
		ID:             id,
		Kind:           "echo",
		Payload:        []byte("payload of " + id),
		IdempotencyKey: "idem-" + id,
		State:          store.Queued,
		WorkerSlot:     -1,
		CreatedAt:      time.Unix(0, 1_700_000_000_000_000_000),
	}
}

// flushedRecord is the update the flush helper makes durable for r.
func flushedRecord(r *store.Record) *store.Record {
	return with(r, func(c *store.Record) {
		c.State, c.Attempts, c.WorkerSlot = store.Succeeded, 1, 3
		c.Result = []byte("result of " + r.ID)
		c.StartedAt = time.Unix(0, 1_700_000_001_000_000_000)
		c.FinishedAt = time.Unix(0, 1_700_000_002_000_000_000)
	})
}

// helper is a running helper child.
type helper struct {
	cmd   *exec.Cmd
	lines chan string // closed at EOF
	stdin io.WriteCloser
}

// startHelper runs the test binary as helper mode on the bolt file path.
// The child is killed and reaped when the test ends.
func startHelper(t *testing.T, mode, path string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "STORE_PATH="+path)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, lines: make(chan string, 1024), stdin: stdin}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range h.lines { // drain so the reader can finish
		}
		<-done
		_ = cmd.Wait()
	})
	return h
}

// next returns the child's next line, failing the test after timeout.
func (h *helper) next(t *testing.T, timeout time.Duration) (string, bool) {
	t.Helper()
	select {
	case l, ok := <-h.lines:
		return l, ok
	case <-time.After(timeout):
		t.Fatalf("no output from the helper within %v", timeout)
		return "", false
	}
}

// kill SIGKILLs the child, collects every line it wrote before dying and
// reaps it.
func (h *helper) kill(t *testing.T) []string {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range h.lines {
		rest = append(rest, l)
	}
	err := h.cmd.Wait()
	if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper did not die of SIGKILL: %v (exit %s)", err, strconv.Itoa(h.cmd.ProcessState.ExitCode()))
	}
	return rest
}
