package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/hashicorp/go-plugin/runner"
)

// forker starts commands from one OS thread that lives as long as the
// supervisor: Linux sends Pdeathsig when the thread that forked a child
// exits, so forking from arbitrary goroutines (whose threads the runtime
// may retire) would kill workers at random.
type forker struct {
	reqs chan forkReq
	done chan struct{}
}

type forkReq struct {
	cmd *exec.Cmd
	err chan error
}

func newForker() *forker {
	f := &forker{reqs: make(chan forkReq), done: make(chan struct{})}
	go f.loop()
	return f
}

func (f *forker) loop() {
	runtime.LockOSThread()
	// Never unlocked: when this goroutine returns the thread exits, and by
	// then every child has been stopped.
	defer close(f.done)
	for req := range f.reqs {
		req.err <- req.cmd.Start()
	}
}

func (f *forker) start(cmd *exec.Cmd) error {
	req := forkReq{cmd: cmd, err: make(chan error, 1)}
	f.reqs <- req
	return <-req.err
}

func (f *forker) close() {
	close(f.reqs)
	<-f.done
}

// procRunner is the go-plugin runner for one worker process: a plain
// exec.Cmd with Pdeathsig, its own process group and a lifeline pipe, that
// also tells the slot loop the moment the process exits.
type procRunner struct {
	cmd      *exec.Cmd
	fork     *forker
	stdout   io.ReadCloser
	stderr   io.ReadCloser
	lifeline *os.File // the master's write end, held until the worker exits
	childEnd *os.File

	exited   chan struct{}
	waitOnce sync.Once
	waitErr  error
	pid      int
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(f *forker, path string, args, env []string) (*procRunner, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{r} // fd 3 in the child
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	return &procRunner{cmd: cmd, fork: f, stdout: stdout, stderr: stderr, lifeline: w, childEnd: r, exited: make(chan struct{})}, nil
}

func (p *procRunner) Start(_ context.Context) error {
	err := p.fork.start(p.cmd)
	p.childEnd.Close()
	if err != nil {
		p.lifeline.Close()
		close(p.exited)
		return err
	}
	p.pid = p.cmd.Process.Pid
	return nil
}

// Wait reaps the process; go-plugin calls it once stdout and stderr closed.
func (p *procRunner) Wait(_ context.Context) error {
	p.waitOnce.Do(func() {
		p.waitErr = p.cmd.Wait()
		p.lifeline.Close()
		close(p.exited)
	})
	<-p.exited
	return p.waitErr
}

// Kill SIGKILLs the worker's whole process group: a child the worker
// forked would otherwise keep its stdout open and go-plugin waiting.
func (p *procRunner) Kill(_ context.Context) error {
	if err := p.signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	return nil
}

func (p *procRunner) signal(sig syscall.Signal) error {
	if p.cmd.Process == nil || p.hasExited() {
		return ErrNotRunning
	}
	// The worker leads its own process group (Setpgid).
	if err := syscall.Kill(-p.pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("signal worker %d: %w", p.pid, err)
	}
	return nil
}

// exitStatus describes how the process ended, for logs and the region:
// code >= 0 an exit code, < 0 a signal number negated.
func (p *procRunner) exitStatus() (string, int64) {
	st := p.cmd.ProcessState
	if st == nil {
		return "not started", 0
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + ws.Signal().String(), -int64(ws.Signal())
	}
	return "exit status " + strconv.Itoa(st.ExitCode()), int64(st.ExitCode())
}

func (p *procRunner) Stdout() io.ReadCloser             { return p.stdout }
func (p *procRunner) Stderr() io.ReadCloser             { return p.stderr }
func (p *procRunner) Name() string                      { return p.cmd.Path }
func (p *procRunner) ID() string                        { return strconv.Itoa(p.pid) }
func (p *procRunner) Diagnose(_ context.Context) string { return "" }
func (p *procRunner) PluginToHost(n, a string) (string, string, error) {
	return n, a, nil
}
func (p *procRunner) HostToPlugin(n, a string) (string, string, error) {
	return n, a, nil
}
