package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: the test reads the master side,
// flowctl writes to the terminal side.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts: %v", err)
	}
	t.Cleanup(func() { ptm.Close(); pts.Close() })
	return ptm, pts
}

// On a terminal, `flowctl submit` draws a progress bar while it submits
// and waits, and ends with its rate.
func TestFlowctlSubmitDrawsProgressOnATerminal(t *testing.T) {
	m := startMaster(t, options{workers: 2})
	m.waitReady(2)
	ptm, pts := openPTY(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bins.dir, "flowctl"), "--addr", m.URL, "--run-dir", m.RunDir,
		"submit", "--kind", "sleep", "--payload", `{"ms":1500}`, "--count", "4000", "--wait")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	cmd.Stdout, cmd.Stderr = pts, pts
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pts.Close() // the child holds it; EOF (EIO) on ptm once it exits

	var out bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, ptm); close(copied) }()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("flowctl submit: %v\n%s", err, out.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
		ptm.Close()
		<-copied
	}
	got := out.String()
	t.Logf("terminal output: %q", got)
	bar := regexp.MustCompile(`waiting \[=* *\] \d+/4000 +\d+%  \d+/s`)
	if !bar.MatchString(got) {
		t.Fatalf("no progress bar while waiting on a terminal; output:\n%q", got)
	}
	if !regexp.MustCompile(`submitted 4000 tasks in [0-9.]+s \(\d+ tasks/s\)`).MatchString(got) ||
		!regexp.MustCompile(`finished 4000 tasks in [0-9.]+s: 4000 succeeded`).MatchString(got) {
		t.Fatalf("no final counts and rate; output:\n%q", got)
	}
}
