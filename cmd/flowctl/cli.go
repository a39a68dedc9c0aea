package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// Defaults of the global flags.
const (
	defaultAddr = "http://127.0.0.1:8080"
	envAddr     = "ATOMICFLOW_ADDR"
	envToken    = "ATOMICFLOW_AUTH_TOKEN"
	envRunDir   = "ATOMICFLOW_RUN_DIR"
)

// defaultRunDir is the master's default --run-dir.
func defaultRunDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("atomicflow-%d", os.Getuid()))
}

// app is one invocation: where output goes and the global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	addr, token    string
	runDir         string
	// envToken is ATOMICFLOW_AUTH_TOKEN, used when --token is not given
	// (kept out of the flag's default so that --help never shows it).
	envToken string
}

// command is one subcommand. run parses its own flags (the global ones are
// accepted there too) and returns an error to print, or one of usageError,
// errHelp or exitCode.
type command struct {
	name, args, summary, help string
	run                       func(ctx context.Context, a *app, cmd *command, args []string) error
}

func commands() []*command {
	return []*command{
		{name: "submit", args: "[flags]", summary: "submit one task, or many (--count, --file) in concurrent batches", help: submitHelp, run: cmdSubmit},
		{name: "status", args: "<id> [--wait 5s]", summary: "show a task", help: statusHelp, run: cmdStatus},
		{name: "cancel", args: "<id>", summary: "cancel a task", help: cancelHelp, run: cmdCancel},
		{name: "workers", args: "", summary: "list the worker slots", help: workersHelp, run: cmdWorkers},
		{name: "stats", args: "", summary: "show the global counters", help: statsHelp, run: cmdStats},
		{name: "kill", args: "<slot>", summary: "kill a worker process (SIGKILL); the master forks a new one", help: killHelp, run: cmdControl("kill")},
		{name: "restart", args: "<slot>", summary: "restart a worker gracefully", help: restartHelp, run: cmdControl("restart")},
		{name: "scale", args: "<N>", summary: "run N workers", help: scaleHelp, run: cmdScale},
		{name: "reload", args: "", summary: "replace every worker, one slot at a time", help: reloadHelp, run: cmdReload},
		{name: "top", args: "[--once] [--interval 500ms]", summary: "live view of the shared region (no server call)", help: topHelp, run: cmdTop},
		{name: "help", args: "[command]", summary: "show help for flowctl or a command", run: nil},
	}
}

// errHelp: help was asked for and printed.
var errHelp = errors.New("help requested")

// usageError is a command line flowctl cannot run.
type usageError struct {
	cmd string // "" for the global command line
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *command, format string, a ...any) error {
	name := ""
	if cmd != nil {
		name = cmd.name
	}
	return &usageError{cmd: name, msg: fmt.Sprintf(format, a...)}
}

// exitCode ends flowctl with a code after the command printed its outcome.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, addr: defaultAddr, runDir: defaultRunDir()}
	if v := getenv(envAddr); v != "" {
		a.addr = v
	}
	a.envToken = getenv(envToken)
	if v := getenv(envRunDir); v != "" {
		a.runDir = v
	}
	cmds := commands()

	fs := flag.NewFlagSet("flowctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	a.globalFlags(fs)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout, fs, cmds)
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "flowctl: %v\nRun 'flowctl --help' for usage.\n", err)
		return exitUsage
	case fs.NArg() == 0:
		printUsage(stderr, fs, cmds)
		return exitUsage
	}
	name, rest := fs.Arg(0), fs.Args()[1:]
	if name == "help" {
		if len(rest) == 0 || rest[0] == "help" {
			printUsage(stdout, fs, cmds)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	var cmd *command
	for _, c := range cmds {
		if c.name == name && c.run != nil {
			cmd = c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "flowctl: unknown command %q\nRun 'flowctl --help' for the commands.\n", name)
		return exitUsage
	}
	err = cmd.run(ctx, a, cmd, rest)
	var ue *usageError
	var code exitCode
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "flowctl %s: %s\nRun 'flowctl %s --help' for usage.\n", cmd.name, ue.msg, cmd.name)
		return exitUsage
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fmt.Fprintln(stderr, "flowctl: interrupted")
		return exitFailed
	}
	fmt.Fprintf(stderr, "flowctl: %v\n", err)
	return exitFailed
}

// globalFlags registers --addr, --token and --run-dir on fs, so that they
// are accepted before the command and among its flags.
func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.addr, "addr", a.addr, "the master's HTTP address (env "+envAddr+")")
	fs.StringVar(&a.token, "token", a.token, "bearer token for submits, cancels and control actions (env "+envToken+")")
	fs.StringVar(&a.runDir, "run-dir", a.runDir, "the master's run directory, where top finds the shared region (env "+envRunDir+")")
}

// flags makes a command's flag set, with the global flags in it.
func (a *app) flags(cmd *command) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	a.globalFlags(fs)
	return fs
}

// parse parses a command's arguments: flags may come before, between and
// after the positional arguments ("--" ends the flags). It prints the
// command's help on -h and returns errHelp.
func (a *app) parse(cmd *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandUsage(a.stdout, cmd, fs)
				return nil, errHelp
			}
			return nil, &usageError{cmd: cmd.name, msg: err.Error()}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// exactArgs checks the number of positional arguments.
func exactArgs(cmd *command, pos []string, n int) error {
	if len(pos) != n {
		if n == 0 {
			return usagef(cmd, "unexpected argument %q", pos[0])
		}
		return usagef(cmd, "want %s, got %d argument(s)", cmd.args, len(pos))
	}
	return nil
}

// client returns the API client for --addr and --token.
func (a *app) client(cmd *command) (*client, error) {
	base, err := baseURL(a.addr)
	if err != nil {
		return nil, usagef(cmd, "--addr: %v", err)
	}
	token := a.token
	if token == "" {
		token = a.envToken
	}
	return newClient(base, token), nil
}

// baseURL normalizes an --addr: a scheme is optional, a path is not allowed.
func baseURL(addr string) (string, error) {
	if addr == "" {
		return "", errors.New("empty address")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http:// address like %s", addr, defaultAddr)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" || u.RawQuery != "" {
		return "", fmt.Errorf("%q: give the master's address without a path", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

func printUsage(w io.Writer, fs *flag.FlagSet, cmds []*command) {
	fmt.Fprint(w, `flowctl is the command-line client of an Atomic Flow master.

Usage:
  flowctl [global flags] <command> [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, c := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags (also accepted after the command):\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprint(w, `
Examples:
  flowctl submit --kind sleep --payload '{"ms":100}' --wait
  flowctl submit --kind echo --count 100000 --batch 1000 --concurrency 8
  flowctl status 0190c3a1b2c3d4e5 --wait 5s
  flowctl workers
  flowctl top

Run 'flowctl <command> --help' for a command's flags.
`)
}

func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace("flowctl "+cmd.name+" "+cmd.args), strings.TrimSpace(cmd.help))
	own := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	global := flag.NewFlagSet("flowctl", flag.ContinueOnError)
	fs.VisitAll(func(f *flag.Flag) {
		to := own
		if isGlobalFlag(f.Name) {
			to = global
		}
		to.Var(f.Value, f.Name, f.Usage)
		to.Lookup(f.Name).DefValue = f.DefValue
	})
	for _, part := range []struct {
		title string
		fs    *flag.FlagSet
	}{{"Flags", own}, {"Global flags", global}} {
		if !hasFlags(part.fs) {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", part.title)
		part.fs.SetOutput(w)
		part.fs.PrintDefaults()
	}
}

func isGlobalFlag(name string) bool { return name == "addr" || name == "token" || name == "run-dir" }

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}
