package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/joho/godotenv"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// Values of Config.Store.
const (
	StoreBolt   = "bolt"   // durable, one bolt file in DataDir
	StoreMemory = "memory" // lost on exit
)

// Values of Config.Dispatch.
const (
	DispatchLeastLoaded = "least-loaded" // the worker with the most free credit
	DispatchRoundRobin  = "round-robin"  // each worker in turn
	DispatchKeyHash     = "key-hash"     // a task's key always goes to the same slot
)

// Values of Config.LogFormat.
const (
	LogText = "text"
	LogJSON = "json"
)

// Config is every setting of the master. Each field is a flag, an
// ATOMICFLOW_* environment variable and a .env key; see Usage for the list
// and Default for the defaults. A Config that did not come from Load should
// be checked with Validate.
type Config struct {
	Workers         int           // --workers: worker processes, 1..1024
	WorkerBin       string        // --worker-bin: the worker executable
	Listen          string        // --listen: HTTP host:port
	GRPCListen      string        // --grpc-listen: "unix://PATH", "tcp://HOST:PORT" or "" (off)
	RunDir          string        // --run-dir: private run directory
	Store           string        // --store: StoreBolt or StoreMemory
	DataDir         string        // --data-dir: directory of the bolt store
	Capacity        int           // --capacity: tasks in flight per worker, 1..1000000
	Dispatch        string        // --dispatch: DispatchLeastLoaded, DispatchRoundRobin or DispatchKeyHash
	ShutdownTimeout time.Duration // --shutdown-timeout: > 0
	// AuthToken (--auth-token) guards the control actions; it is required
	// when Listen (or a tcp:// GRPCListen) is not a loopback address.
	AuthToken         string
	LogFormat         string          // --log-format: LogText or LogJSON
	MaxBatch          int             // --max-batch: tasks per batch submit, >= 1
	MaxBodyBytes      int64           // --max-body: largest request body, >= 1
	MaxQueue          int             // --max-queue: queued tasks, >= 1
	MaxAttempts       int             // --max-attempts: default per task, 1..1000
	HeartbeatTimeout  time.Duration   // --heartbeat-timeout: a worker with an older heartbeat is killed, > 0
	Retention         time.Duration   // --retention: how long finished results are kept, > 0
	SampleInterval    time.Duration   // --sample-interval: between dashboard frames, > 0
	MaxTasksPerWorker int             // --max-tasks-per-worker: recycle after this many tasks; 0 = off
	MaxWorkerRSS      int64           // --max-worker-rss: recycle above this RSS in bytes; 0 = off
	AllowedOrigins    []string        // --allowed-origins: WebSocket origin host patterns; empty = same host only
	PprofListen       string          // --pprof-listen: loopback address for net/http/pprof; "" = off
	Tables            []shm.TableSpec // --table (repeatable): shared tables declared in the region
	EnvFile           string          // --env-file: the .env file Load read ("" = none)
}

// Default returns the defaults. Workers, WorkerBin, RunDir and GRPCListen
// depend on the machine: the number of CPUs (at most 1024), "worker" beside
// os.Executable, atomicflow-<uid> in os.TempDir and
// unix://<RunDir>/api.sock.
func Default() *Config {
	runDir := filepath.Join(os.TempDir(), fmt.Sprintf("atomicflow-%d", os.Getuid()))
	return &Config{
		Workers:           min(runtime.NumCPU(), maxWorkers),
		WorkerBin:         defaultWorkerBin(),
		Listen:            "127.0.0.1:8080",
		GRPCListen:        defaultGRPCListen(runDir),
		RunDir:            runDir,
		Store:             StoreBolt,
		DataDir:           "./data",
		Capacity:          10000,
		Dispatch:          DispatchLeastLoaded,
		ShutdownTimeout:   30 * time.Second,
		LogFormat:         LogText,
		MaxBatch:          10000,
		MaxBodyBytes:      8 << 20,
		MaxQueue:          1_000_000,
		MaxAttempts:       3,
		HeartbeatTimeout:  5 * time.Second,
		Retention:         24 * time.Hour,
		SampleInterval:    100 * time.Millisecond,
		MaxTasksPerWorker: 0,
		MaxWorkerRSS:      0,
		EnvFile:           ".env",
	}
}

func defaultWorkerBin() string {
	exe, err := os.Executable()
	if err != nil {
		return "worker" // looked up in $PATH by whoever starts it
	}
	return filepath.Join(filepath.Dir(exe), "worker")
}

func defaultGRPCListen(runDir string) string {
	return "unix://" + filepath.Join(runDir, "api.sock")
}

// Load builds the Config from args (the command line without the program
// name), the environment seen through getenv, the .env file and the
// defaults, in that order of precedence, and validates it.
//
// getenv is consulted only for the ATOMICFLOW_* variables of the settings;
// an empty value counts as unset. A nil getenv is an empty environment (pass
// os.Getenv for the real one). For -h or --help, Load writes the usage to
// stderr (nil: discarded) and returns ErrHelp.
//
// Errors: ErrHelp; ErrUsage for a malformed command line; a *SettingError
// (several, joined) for bad values, an explicitly named .env file that does
// not exist, or an ATOMICFLOW_ENV_FILE key inside the .env file;
// ErrUnknownSetting for an unknown ATOMICFLOW_* key in the .env file; and
// the error of reading or parsing the .env file.
func Load(args []string, getenv func(string) string, stderr io.Writer) (*Config, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if stderr == nil {
		stderr = io.Discard
	}
	table := settings()
	flags, err := parseFlags(table, args)
	if errors.Is(err, flag.ErrHelp) {
		Default().Usage(stderr)
		return nil, ErrHelp
	}
	if err != nil {
		return nil, err
	}

	src := sources{flags: flags, getenv: getenv}
	envFile := settingNamed(table, "env-file")
	path, given := src.lookup(envFile)
	if !given {
		path = Default().EnvFile
	}
	src.file, err = readEnvFile(table, envFile, path, given)
	if err != nil {
		return nil, err
	}

	c := Default()
	raw := make(map[string]string) // the text of every setting given somewhere
	failed := make(map[string]bool)
	var errs []error
	for i := range table {
		s := &table[i]
		v, ok := src.lookup(s)
		if !ok {
			continue
		}
		raw[s.name] = v
		if err := s.field(c).Set(v); err != nil {
			errs = append(errs, s.errorf(v, err))
			failed[s.name] = true
		}
	}
	for i := range table {
		if s := &table[i]; s.derive != nil && !hasKey(raw, s.name) {
			s.derive(c)
		}
	}
	errs = append(errs, validate(table, c, raw, failed)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Validate checks every setting's constraint, including that AuthToken is
// set when Listen is not a loopback address, and returns one *SettingError
// per bad setting, joined.
func (c *Config) Validate() error {
	return errors.Join(validate(settings(), c, nil, nil)...)
}

// validate checks c, skipping the settings in skip (they failed to parse, so
// their field still holds the default). A SettingError shows the text in
// raw when the setting was given, else the field formatted.
func validate(table []setting, c *Config, raw map[string]string, skip map[string]bool) []error {
	var errs []error
	for i := range table {
		s := &table[i]
		if s.check == nil || skip[s.name] {
			continue
		}
		if err := s.check(c); err != nil {
			v, ok := raw[s.name]
			if !ok {
				v = s.field(c).String()
			}
			errs = append(errs, s.errorf(v, err))
		}
	}
	return errs
}

// sources are the places a setting's text comes from, highest precedence
// first.
type sources struct {
	flags  map[string]string // setting name -> last value on the command line
	getenv func(string) string
	file   map[string]string // ATOMICFLOW_* key -> value from the .env file
}

// lookup returns the text of s from the first source that has it.
func (src sources) lookup(s *setting) (string, bool) {
	if v, ok := src.flags[s.name]; ok {
		return v, true
	}
	if v := src.getenv(s.envName()); v != "" {
		return v, true
	}
	v, ok := src.file[s.envName()]
	return v, ok
}

// rawFlag records a flag's text; parsing waits until all sources are known
// so that errors look alike whatever the source, and the last occurrence of
// a repeated flag wins — except for settings that accumulate (--table),
// whose occurrences are joined with ';'.
type rawFlag struct {
	m      map[string]string
	name   string
	repeat bool
}

func (f rawFlag) Set(s string) error {
	if old, ok := f.m[f.name]; ok && f.repeat {
		s = old + ";" + s
	}
	f.m[f.name] = s
	return nil
}
func (f rawFlag) String() string { return f.m[f.name] }

// parseFlags parses args with a fresh FlagSet; it returns flag.ErrHelp
// as is and wraps every other failure in ErrUsage.
func parseFlags(table []setting, args []string) (map[string]string, error) {
	fs := flag.NewFlagSet("master", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // Load writes the usage itself, errors go to the caller
	fs.Usage = func() {}
	m := make(map[string]string)
	for i := range table {
		fs.Var(rawFlag{m: m, name: table[i].name, repeat: table[i].repeatable}, table[i].name, table[i].usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w (see --help)", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q (see --help)", ErrUsage, fs.Arg(0))
	}
	return m, nil
}

// readEnvFile reads the ATOMICFLOW_* keys of the .env file at path ("":
// none). A missing file is an error only when it was given explicitly.
func readEnvFile(table []setting, envFile *setting, path string, given bool) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	all, err := godotenv.Read(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !given {
				return nil, nil
			}
			return nil, envFile.errorf(path, err)
		}
		return nil, fmt.Errorf("config: env file %q: %w", path, err)
	}
	known := make(map[string]*setting, len(table))
	for i := range table {
		known[table[i].envName()] = &table[i]
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		if strings.HasPrefix(k, envPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys) // errors in a stable order
	m := make(map[string]string, len(keys))
	var errs []error
	for _, k := range keys {
		s, ok := known[k]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w %s in env file %q%s", ErrUnknownSetting, k, path, suggest(k, known)))
		case s.notInFile:
			errs = append(errs, s.errorf(all[k], fmt.Errorf("cannot be set inside the env file %q; use the flag or the environment", path)))
		default:
			m[k] = all[k]
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

// suggest names the known key closest to an unknown one, if it is close
// enough to be a typo.
func suggest(key string, known map[string]*setting) string {
	best, bestDist := "", 4 // more than 3 edits is not a typo
	for k := range known {
		if d := editDistance(key, k); d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func settingNamed(table []setting, name string) *setting {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	panic("config: no setting " + name) // the table is static; a test covers every name
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
