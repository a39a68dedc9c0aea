package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"
)

// envPrefix starts every environment variable and .env key.
const envPrefix = "ATOMICFLOW_"

// Bounds of the numeric settings.
const (
	maxWorkers     = 1024
	maxCapacity    = 1_000_000
	maxMaxAttempts = 1000
	// maxUnixPath is the longest socket path Linux accepts (sun_path is 108
	// bytes with its terminating NUL).
	maxUnixPath = 107
)

// setting is one row of the table everything else is derived from.
type setting struct {
	name  string              // flag name, e.g. "max-body"; see envName for the variable
	arg   string              // placeholder for the value in Usage, e.g. "SIZE"
	usage string              // one line without the default
	field func(*Config) value // binds the setting to a Config's field
	check func(*Config) error // the constraint on the parsed field; nil: any value that parses
	// dynamic is set when the default depends on the machine, so
	// .env.example, which is committed, cannot show it.
	dynamic *dynamicDefault
	// derive, when set, recomputes the default from other settings if the
	// setting was given nowhere (--grpc-listen follows --run-dir).
	derive func(*Config)
	// notInFile marks a setting that cannot be a key in the .env file
	// (--env-file names the file itself).
	notInFile bool
	// repeatable settings accumulate when the flag is given more than once.
	repeatable bool
}

type dynamicDefault struct {
	what    string // how the default is found, e.g. "the number of CPUs"
	example string // a value for the commented-out line in .env.example
}

// flagName is the setting's flag as a user writes it.
func (s *setting) flagName() string { return "--" + s.name }

// envName is the setting's environment variable and .env key:
// "max-body" is ATOMICFLOW_MAX_BODY.
func (s *setting) envName() string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

func (s *setting) errorf(v string, err error) *SettingError {
	return &SettingError{Setting: s.name, Flag: s.flagName(), Env: s.envName(), Value: v, Err: err}
}

// settings returns the table, in the order of Config's fields. It is built
// on each call so that the package holds no mutable state.
func settings() []setting {
	return []setting{
		intSetting("workers", "number of worker processes",
			func(c *Config) *int { return &c.Workers }, 1, maxWorkers).
			withDynamic("the number of CPUs", "4"),
		strSetting("worker-bin", "PATH", "the worker executable",
			func(c *Config) *string { return &c.WorkerBin }, nonEmpty).
			withDynamic(`"worker" in the directory of the master executable`, "/usr/local/bin/atomicflow-worker"),
		strSetting("listen", "HOST:PORT", "HTTP address of the dashboard, the API and /metrics; off loopback --auth-token is required",
			func(c *Config) *string { return &c.Listen }, checkHostPort),
		{
			name: "grpc-listen", arg: "URL",
			usage:  "gRPC TaskService address: unix://PATH, tcp://HOST:PORT, or empty for none",
			field:  func(c *Config) value { return stringValue{&c.GRPCListen} },
			check:  func(c *Config) error { return checkGRPCListen(c.GRPCListen) },
			derive: func(c *Config) { c.GRPCListen = defaultGRPCListen(c.RunDir) },
			dynamic: &dynamicDefault{
				what:    "unix://<run-dir>/api.sock",
				example: "unix:///run/atomicflow/api.sock",
			},
		},
		strSetting("run-dir", "DIR", "private run directory (worker sockets, the shared region's name)",
			func(c *Config) *string { return &c.RunDir }, nonEmpty).
			withDynamic("atomicflow-<uid> in the temporary directory ($TMPDIR or /tmp)", "/run/atomicflow"),
		enumSetting("store", "where tasks are kept: bolt (durable, in --data-dir) or memory",
			func(c *Config) *string { return &c.Store }, StoreBolt, StoreMemory),
		strSetting("data-dir", "DIR", "directory of the bolt store",
			func(c *Config) *string { return &c.DataDir }, nonEmpty),
		intSetting("capacity", "tasks in flight per worker",
			func(c *Config) *int { return &c.Capacity }, 1, maxCapacity),
		enumSetting("dispatch", "how tasks are assigned to workers (key-hash: one key, one worker)",
			func(c *Config) *string { return &c.Dispatch }, DispatchLeastLoaded, DispatchRoundRobin, DispatchKeyHash),
		durationSetting("shutdown-timeout", "how long in-flight tasks may run on after SIGTERM",
			func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		{
			name: "auth-token", arg: "TOKEN",
			usage: "token the API's control actions require; mandatory when --listen is not loopback",
			field: func(c *Config) value { return stringValue{&c.AuthToken} },
			check: checkAuthToken,
		},
		enumSetting("log-format", "format of the log lines",
			func(c *Config) *string { return &c.LogFormat }, LogText, LogJSON),
		intSetting("max-batch", "most tasks in one batch submit",
			func(c *Config) *int { return &c.MaxBatch }, 1, math.MaxInt),
		sizeSetting("max-body", "largest HTTP request body",
			func(c *Config) *int64 { return &c.MaxBodyBytes }, 1),
		intSetting("max-queue", "most tasks waiting in the queue; further submits are refused",
			func(c *Config) *int { return &c.MaxQueue }, 1, math.MaxInt),
		intSetting("max-attempts", "attempts of a task that does not set its own",
			func(c *Config) *int { return &c.MaxAttempts }, 1, maxMaxAttempts),
		durationSetting("heartbeat-timeout", "a worker whose heartbeat is older is killed and replaced",
			func(c *Config) *time.Duration { return &c.HeartbeatTimeout }),
		durationSetting("retention", "how long the results of finished tasks are kept",
			func(c *Config) *time.Duration { return &c.Retention }),
		durationSetting("sample-interval", "interval between dashboard frames",
			func(c *Config) *time.Duration { return &c.SampleInterval }),
		intSetting("max-tasks-per-worker", "tasks after which a worker is recycled, 0 for never",
			func(c *Config) *int { return &c.MaxTasksPerWorker }, 0, math.MaxInt),
		sizeSetting("max-worker-rss", "resident size above which a worker is recycled, 0 for never",
			func(c *Config) *int64 { return &c.MaxWorkerRSS }, 0),
		{
			name: "allowed-origins", arg: "LIST",
			usage: "comma-separated host patterns (path.Match) allowed to open the dashboard WebSocket; empty: same host only",
			field: func(c *Config) value { return listValue{&c.AllowedOrigins} },
			check: func(c *Config) error { return checkOrigins(c.AllowedOrigins) },
		},
		{
			name: "table", arg: "SPEC",
			usage:      "a shared table NAME:ROWS:COL=TYPE,... (TYPE int, float or string(N)); repeat the flag for more, ';' between specs in the environment",
			field:      func(c *Config) value { return tablesValue{&c.Tables} },
			repeatable: true,
		},
		strSetting("pprof-listen", "HOST:PORT", "serve Go's net/http/pprof profiles of the master on this loopback address; empty for none",
			func(c *Config) *string { return &c.PprofListen }, checkPprofListen),
		{
			name: "env-file", arg: "PATH",
			usage:     "the .env file; empty for none; missing is an error only when named explicitly",
			field:     func(c *Config) value { return stringValue{&c.EnvFile} },
			notInFile: true,
		},
	}
}

func (s setting) withDynamic(what, example string) setting {
	s.dynamic = &dynamicDefault{what: what, example: example}
	return s
}

func strSetting(name, arg, usage string, field func(*Config) *string, check func(string) error) setting {
	return setting{
		name: name, arg: arg, usage: usage,
		field: func(c *Config) value { return stringValue{field(c)} },
		check: func(c *Config) error { return check(*field(c)) },
	}
}

func enumSetting(name, usage string, field func(*Config) *string, choices ...string) setting {
	return setting{
		name: name, arg: strings.Join(choices, "|"), usage: usage,
		field: func(c *Config) value { return stringValue{field(c)} },
		check: func(c *Config) error {
			for _, ch := range choices {
				if *field(c) == ch {
					return nil
				}
			}
			return fmt.Errorf("must be one of %s", strings.Join(choices, ", "))
		},
	}
}

// intSetting's usage gets the range appended unless it is just "not
// negative"; hi == math.MaxInt means no upper bound.
func intSetting(name, usage string, field func(*Config) *int, lo, hi int) setting {
	switch {
	case hi != math.MaxInt:
		usage += fmt.Sprintf(" (%d..%d)", lo, hi)
	case lo > 0:
		usage += fmt.Sprintf(" (at least %d)", lo)
	}
	return setting{
		name: name, arg: "N", usage: usage,
		field: func(c *Config) value { return intValue{field(c)} },
		check: func(c *Config) error { return checkRange(int64(*field(c)), int64(lo), int64(hi)) },
	}
}

func sizeSetting(name, usage string, field func(*Config) *int64, lo int64) setting {
	return setting{
		name: name, arg: "SIZE", usage: usage,
		field: func(c *Config) value { return sizeValue{field(c)} },
		check: func(c *Config) error { return checkRange(*field(c), lo, math.MaxInt64) },
	}
}

// durationSetting is a positive time.ParseDuration value.
func durationSetting(name, usage string, field func(*Config) *time.Duration) setting {
	return setting{
		name: name, arg: "DURATION", usage: usage,
		field: func(c *Config) value { return durationValue{field(c)} },
		check: func(c *Config) error {
			if *field(c) <= 0 {
				return errors.New("must be greater than 0")
			}
			return nil
		},
	}
}

func checkRange(n, lo, hi int64) error {
	switch {
	case n >= lo && n <= hi:
		return nil
	case hi != math.MaxInt && hi != math.MaxInt64:
		return fmt.Errorf("must be between %d and %d", lo, hi)
	case lo == 0:
		return errors.New("must not be negative")
	default:
		return fmt.Errorf("must be at least %d", lo)
	}
}

func nonEmpty(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// checkHostPort accepts host:port with a numeric port; the host may be
// empty (all interfaces).
func checkHostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port, e.g. 127.0.0.1:8080")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > math.MaxUint16 {
		return errors.New("port must be a number from 0 to 65535")
	}
	return nil
}

func checkGRPCListen(s string) error {
	if s == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(s, "unix://"); ok {
		switch {
		case p == "":
			return errors.New("unix:// needs a socket path")
		case len(p) > maxUnixPath:
			return fmt.Errorf("socket path is %d bytes; the limit is %d (choose a shorter --run-dir)", len(p), maxUnixPath)
		}
		return nil
	}
	if hp, ok := strings.CutPrefix(s, "tcp://"); ok {
		if err := checkHostPort(hp); err != nil {
			return fmt.Errorf("tcp:// address %w", err)
		}
		return nil
	}
	return errors.New("must be unix://PATH, tcp://HOST:PORT or empty (off)")
}

// checkAuthToken requires a token when the HTTP API or a TCP gRPC listener
// is reachable from off the host. An address that does not parse is left to
// its own setting's check.
func checkAuthToken(c *Config) error {
	if c.AuthToken != "" {
		return nil
	}
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
		return fmt.Errorf("required when --listen %q is not a loopback address (127.0.0.0/8, ::1, localhost)", c.Listen)
	}
	if hp, ok := strings.CutPrefix(c.GRPCListen, "tcp://"); ok {
		if host, _, err := net.SplitHostPort(hp); err == nil && !isLoopback(host) {
			return fmt.Errorf("required when --grpc-listen %q is not a loopback address (127.0.0.0/8, ::1, localhost)", c.GRPCListen)
		}
	}
	return nil
}

// isLoopback reports whether host only accepts connections from this
// machine. An empty host, 0.0.0.0 and :: listen on every interface, so they
// are not loopback; neither is any other name than localhost.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// checkPprofListen allows only loopback: profiles show the process's
// insides and have no authentication.
func checkPprofListen(s string) error {
	if s == "" {
		return nil
	}
	if err := checkHostPort(s); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(s)
	if !isLoopback(host) {
		return errors.New("must be a loopback address (profiles are not authenticated)")
	}
	return nil
}

func checkOrigins(patterns []string) error {
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	return nil
}
