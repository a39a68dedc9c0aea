package config_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/atomicflow/atomicflow/pkg/config"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inEmptyDir makes the test run in a fresh directory, so the default .env
// is whatever the test writes there.
func inEmptyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	return dir
}

func field(c *config.Config, name string) any {
	return reflect.ValueOf(c).Elem().FieldByName(name).Interface()
}

func TestDefaults(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(os.TempDir(), fmt.Sprintf("atomicflow-%d", os.Getuid()))
	inEmptyDir(t)
	loaded, err := config.Load(nil, nil, nil)
	if err != nil {
		t.Fatalf("Load with nothing set: %v", err)
	}
	for _, c := range []struct {
		source string
		cfg    *config.Config
	}{{"Default", config.Default()}, {"Load", loaded}} {
		for _, tc := range []struct {
			field string
			want  any
		}{
			{"Workers", min(runtime.NumCPU(), 1024)},
			{"WorkerBin", filepath.Join(filepath.Dir(exe), "worker")},
			{"Listen", "127.0.0.1:8080"},
			{"GRPCListen", "unix://" + filepath.Join(runDir, "api.sock")},
			{"RunDir", runDir},
			{"Store", "bolt"},
			{"DataDir", "./data"},
			{"Capacity", 10000},
			{"Dispatch", "least-loaded"},
			{"ShutdownTimeout", 30 * time.Second},
			{"AuthToken", ""},
			{"LogFormat", "text"},
			{"MaxBatch", 10000},
			{"MaxBodyBytes", int64(8 << 20)},
			{"MaxQueue", 1000000},
			{"MaxAttempts", 3},
			{"HeartbeatTimeout", 5 * time.Second},
			{"Retention", 24 * time.Hour},
			{"SampleInterval", 100 * time.Millisecond},
			{"MaxTasksPerWorker", 0},
			{"MaxWorkerRSS", int64(0)},
			{"AllowedOrigins", []string(nil)},
			{"EnvFile", ".env"},
		} {
			t.Run(c.source+"/"+tc.field, func(t *testing.T) {
				if got := field(c.cfg, tc.field); !reflect.DeepEqual(got, tc.want) {
					t.Errorf("%s = %#v, want %#v", tc.field, got, tc.want)
				}
			})
		}
	}
	if err := config.Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// Every setting, a valid value other than its default, and what the field
// holds then. It doubles as the list of flags the usage must show.
var everySetting = []struct {
	flag, env, field, value string
	want                    any
}{
	{"workers", "ATOMICFLOW_WORKERS", "Workers", "7", 7},
	{"worker-bin", "ATOMICFLOW_WORKER_BIN", "WorkerBin", "/opt/af/worker", "/opt/af/worker"},
	{"listen", "ATOMICFLOW_LISTEN", "Listen", "127.0.0.1:9999", "127.0.0.1:9999"},
	{"grpc-listen", "ATOMICFLOW_GRPC_LISTEN", "GRPCListen", "tcp://127.0.0.1:7070", "tcp://127.0.0.1:7070"},
	{"run-dir", "ATOMICFLOW_RUN_DIR", "RunDir", "/run/af", "/run/af"},
	{"store", "ATOMICFLOW_STORE", "Store", "memory", "memory"},
	{"data-dir", "ATOMICFLOW_DATA_DIR", "DataDir", "/var/lib/af", "/var/lib/af"},
	{"capacity", "ATOMICFLOW_CAPACITY", "Capacity", "12", 12},
	{"dispatch", "ATOMICFLOW_DISPATCH", "Dispatch", "key-hash", "key-hash"},
	{"shutdown-timeout", "ATOMICFLOW_SHUTDOWN_TIMEOUT", "ShutdownTimeout", "1m30s", 90 * time.Second},
	{"auth-token", "ATOMICFLOW_AUTH_TOKEN", "AuthToken", "s3cret", "s3cret"},
	{"log-format", "ATOMICFLOW_LOG_FORMAT", "LogFormat", "json", "json"},
	{"max-batch", "ATOMICFLOW_MAX_BATCH", "MaxBatch", "50", 50},
	{"max-body", "ATOMICFLOW_MAX_BODY", "MaxBodyBytes", "512KiB", int64(512 << 10)},
	{"max-queue", "ATOMICFLOW_MAX_QUEUE", "MaxQueue", "99", 99},
	{"max-attempts", "ATOMICFLOW_MAX_ATTEMPTS", "MaxAttempts", "1000", 1000},
	{"heartbeat-timeout", "ATOMICFLOW_HEARTBEAT_TIMEOUT", "HeartbeatTimeout", "750ms", 750 * time.Millisecond},
	{"retention", "ATOMICFLOW_RETENTION", "Retention", "1h", time.Hour},
	{"sample-interval", "ATOMICFLOW_SAMPLE_INTERVAL", "SampleInterval", "1s", time.Second},
	{"max-tasks-per-worker", "ATOMICFLOW_MAX_TASKS_PER_WORKER", "MaxTasksPerWorker", "500", 500},
	{"max-worker-rss", "ATOMICFLOW_MAX_WORKER_RSS", "MaxWorkerRSS", "512MiB", int64(512 << 20)},
	{"allowed-origins", "ATOMICFLOW_ALLOWED_ORIGINS", "AllowedOrigins", " example.com, *.example.org ,", []string{"example.com", "*.example.org"}},
	{"table", "ATOMICFLOW_TABLE", "Tables", "hits:64:count=int", []shm.TableSpec{{Name: "hits", Rows: 64, Columns: []shm.Column{{Name: "count", Type: shm.Int64}}}}},
	{"pprof-listen", "ATOMICFLOW_PPROF_LISTEN", "PprofListen", "127.0.0.1:6060", "127.0.0.1:6060"},
	{"env-file", "ATOMICFLOW_ENV_FILE", "EnvFile", "other.env", "other.env"},
}

func TestEverySettingFromEverySource(t *testing.T) {
	if n := reflect.TypeFor[config.Config]().NumField(); n != len(everySetting) {
		t.Fatalf("Config has %d fields, the test knows %d settings", n, len(everySetting))
	}
	for _, s := range everySetting {
		for _, source := range []string{"flag", "env", "dotenv"} {
			if s.flag == "env-file" && source == "dotenv" {
				continue // the file cannot name itself; see TestEnvFile
			}
			t.Run(source+"/"+s.flag, func(t *testing.T) {
				dir := inEmptyDir(t)
				if s.flag == "env-file" {
					writeFile(t, dir, s.value, "")
				}
				var args []string
				vars := map[string]string{}
				switch source {
				case "flag":
					args = []string{"--" + s.flag, s.value}
				case "env":
					vars[s.env] = s.value
				case "dotenv":
					writeFile(t, dir, ".env", fmt.Sprintf("%s=%q\n", s.env, s.value))
				}
				c, err := config.Load(args, env(vars), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := field(c, s.field); !reflect.DeepEqual(got, s.want) {
					t.Errorf("%s = %#v, want %#v", s.field, got, s.want)
				}
			})
		}
	}
}

func TestPrecedence(t *testing.T) {
	const dotenv = `ATOMICFLOW_WORKERS=2
ATOMICFLOW_LISTEN=127.0.0.1:2000
ATOMICFLOW_MAX_BODY=2MiB
ATOMICFLOW_RETENTION=2h
ATOMICFLOW_STORE=memory
`
	for _, tc := range []struct {
		name   string
		dotenv string
		vars   map[string]string
		args   []string
		want   map[string]any // field -> value
	}{
		{
			name: "default only",
			want: map[string]any{"Workers": min(runtime.NumCPU(), 1024), "Listen": "127.0.0.1:8080",
				"MaxBodyBytes": int64(8 << 20), "Retention": 24 * time.Hour, "Store": "bolt"},
		},
		{
			name:   ".env over default",
			dotenv: dotenv,
			want: map[string]any{"Workers": 2, "Listen": "127.0.0.1:2000",
				"MaxBodyBytes": int64(2 << 20), "Retention": 2 * time.Hour, "Store": "memory"},
		},
		{
			name:   "env over .env",
			dotenv: dotenv,
			vars: map[string]string{"ATOMICFLOW_WORKERS": "3", "ATOMICFLOW_LISTEN": "127.0.0.1:3000",
				"ATOMICFLOW_MAX_BODY": "3MiB"},
			want: map[string]any{"Workers": 3, "Listen": "127.0.0.1:3000",
				"MaxBodyBytes": int64(3 << 20), "Retention": 2 * time.Hour, "Store": "memory"},
		},
		{
			name:   "an empty variable counts as unset",
			dotenv: dotenv,
			vars:   map[string]string{"ATOMICFLOW_WORKERS": ""},
			want:   map[string]any{"Workers": 2},
		},
		{
			name:   "flag over env over .env",
			dotenv: dotenv,
			vars:   map[string]string{"ATOMICFLOW_WORKERS": "3", "ATOMICFLOW_LISTEN": "127.0.0.1:3000"},
			args:   []string{"--workers", "4", "--max-body=4MiB"},
			want: map[string]any{"Workers": 4, "Listen": "127.0.0.1:3000",
				"MaxBodyBytes": int64(4 << 20), "Retention": 2 * time.Hour, "Store": "memory"},
		},
		{
			name: "a repeated flag: the last wins",
			vars: map[string]string{"ATOMICFLOW_WORKERS": "3"},
			args: []string{"--workers", "5", "-workers=6"},
			want: map[string]any{"Workers": 6},
		},
		{
			name:   "a bad lower-precedence value is not looked at",
			dotenv: "ATOMICFLOW_WORKERS=0\n",
			vars:   map[string]string{"ATOMICFLOW_WORKERS": "abc"},
			args:   []string{"--workers", "8"},
			want:   map[string]any{"Workers": 8},
		},
		{
			name: "grpc-listen follows run-dir",
			args: []string{"--run-dir", "/run/af"},
			want: map[string]any{"RunDir": "/run/af", "GRPCListen": "unix:///run/af/api.sock"},
		},
		{
			name:   "grpc-listen set stays",
			dotenv: "ATOMICFLOW_GRPC_LISTEN=unix:///elsewhere.sock\n",
			args:   []string{"--run-dir", "/run/af"},
			want:   map[string]any{"GRPCListen": "unix:///elsewhere.sock"},
		},
		{
			name:   "an empty .env value turns grpc off",
			dotenv: "ATOMICFLOW_GRPC_LISTEN=\n",
			want:   map[string]any{"GRPCListen": ""},
		},
		{
			name: "an empty flag turns grpc off",
			args: []string{"--grpc-listen="},
			want: map[string]any{"GRPCListen": ""},
		},
		{
			name:   "keys without the prefix are ignored",
			dotenv: "WORKERS=9\nOTHER_APP_TOKEN=x\nATOMICFLOW_CAPACITY=5\n",
			want:   map[string]any{"Workers": min(runtime.NumCPU(), 1024), "Capacity": 5},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := inEmptyDir(t)
			if tc.dotenv != "" {
				writeFile(t, dir, ".env", tc.dotenv)
			}
			c, err := config.Load(tc.args, env(tc.vars), nil)
			if err != nil {
				t.Fatal(err)
			}
			for f, want := range tc.want {
				if got := field(c, f); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", f, got, want)
				}
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		flag, value, field string
		want               any
	}{
		{"max-body", "1048576", "MaxBodyBytes", int64(1 << 20)},
		{"max-body", "8MiB", "MaxBodyBytes", int64(8 << 20)},
		{"max-body", "2 GiB", "MaxBodyBytes", int64(2 << 30)},
		{"max-body", "3mib", "MaxBodyBytes", int64(3 << 20)},
		{"max-body", "1TiB", "MaxBodyBytes", int64(1 << 40)},
		{"max-body", "100B", "MaxBodyBytes", int64(100)},
		{"max-body", "1KB", "MaxBodyBytes", int64(1000)},
		{"max-body", "5MB", "MaxBodyBytes", int64(5_000_000)},
		{"max-body", "1GB", "MaxBodyBytes", int64(1_000_000_000)},
		{"max-worker-rss", "0", "MaxWorkerRSS", int64(0)},
		{"retention", "90m", "Retention", 90 * time.Minute},
		{"heartbeat-timeout", "1.5s", "HeartbeatTimeout", 1500 * time.Millisecond},
		{"workers", " 12 ", "Workers", 12},
		{"workers", "1024", "Workers", 1024},
		{"listen", "localhost:80", "Listen", "localhost:80"},
		{"listen", "127.0.0.1:0", "Listen", "127.0.0.1:0"},
		{"grpc-listen", "unix://rel/api.sock", "GRPCListen", "unix://rel/api.sock"},
		{"allowed-origins", "", "AllowedOrigins", []string(nil)},
	} {
		t.Run(tc.flag+"="+tc.value, func(t *testing.T) {
			inEmptyDir(t)
			c, err := config.Load([]string{"--" + tc.flag, tc.value}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := field(c, tc.field); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s = %#v, want %#v", tc.field, got, tc.want)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	long := "/" + strings.Repeat("d", 120)
	for _, tc := range []struct {
		name    string
		args    []string
		vars    map[string]string
		dotenv  string
		setting string // the SettingError's Setting
		want    string // a substring of the message
	}{
		{name: "workers 0", args: []string{"--workers", "0"}, setting: "workers",
			want: `invalid --workers (ATOMICFLOW_WORKERS) "0": must be between 1 and 1024`},
		{name: "workers 100000", vars: map[string]string{"ATOMICFLOW_WORKERS": "100000"}, setting: "workers",
			want: `invalid --workers (ATOMICFLOW_WORKERS) "100000": must be between 1 and 1024`},
		{name: "workers from .env", dotenv: "ATOMICFLOW_WORKERS=-3\n", setting: "workers",
			want: `"-3": must be between 1 and 1024`},
		{name: "workers not a number", args: []string{"--workers", "many"}, setting: "workers",
			want: `"many": must be an integer`},
		{name: "workers overflow", args: []string{"--workers", "99999999999999999999"}, setting: "workers",
			want: "out of range"},
		{name: "bad duration", args: []string{"--shutdown-timeout", "30"}, setting: "shutdown-timeout",
			want: `invalid --shutdown-timeout (ATOMICFLOW_SHUTDOWN_TIMEOUT) "30": must be a duration`},
		{name: "zero duration", args: []string{"--shutdown-timeout", "0s"}, setting: "shutdown-timeout",
			want: "must be greater than 0"},
		{name: "negative duration", vars: map[string]string{"ATOMICFLOW_HEARTBEAT_TIMEOUT": "-1s"},
			setting: "heartbeat-timeout", want: "must be greater than 0"},
		{name: "zero retention", args: []string{"--retention", "0"}, setting: "retention", want: "must be greater than 0"},
		{name: "bad sample interval", args: []string{"--sample-interval", "fast"}, setting: "sample-interval",
			want: "must be a duration"},
		{name: "bad size unit", args: []string{"--max-body", "8XB"}, setting: "max-body",
			want: `invalid --max-body (ATOMICFLOW_MAX_BODY) "8XB": must be a size`},
		{name: "fractional size", args: []string{"--max-body", "1.5MiB"}, setting: "max-body", want: "must be a size"},
		{name: "size without number", args: []string{"--max-body", "MiB"}, setting: "max-body", want: "must be a size"},
		{name: "negative size", args: []string{"--max-worker-rss", "-1"}, setting: "max-worker-rss", want: "must be a size"},
		{name: "size overflow", args: []string{"--max-body", "9999999999GiB"}, setting: "max-body", want: "out of range"},
		{name: "zero max body", args: []string{"--max-body", "0"}, setting: "max-body", want: "must be at least 1"},
		{name: "bad dispatch", args: []string{"--dispatch", "random"}, setting: "dispatch",
			want: `"random": must be one of least-loaded, round-robin, key-hash`},
		{name: "bad store", dotenv: "ATOMICFLOW_STORE=sqlite\n", setting: "store",
			want: `invalid --store (ATOMICFLOW_STORE) "sqlite": must be one of bolt, memory`},
		{name: "bad log format", args: []string{"--log-format", "xml"}, setting: "log-format",
			want: "must be one of text, json"},
		{name: "listen without port", args: []string{"--listen", "127.0.0.1"}, setting: "listen",
			want: `invalid --listen (ATOMICFLOW_LISTEN) "127.0.0.1": must be host:port`},
		{name: "listen bad port", args: []string{"--listen", "127.0.0.1:http"}, setting: "listen",
			want: "port must be a number"},
		{name: "listen port too big", args: []string{"--listen", "127.0.0.1:70000"}, setting: "listen",
			want: "port must be a number"},
		{name: "0.0.0.0 without token", args: []string{"--listen", "0.0.0.0:8080"}, setting: "auth-token",
			want: `invalid --auth-token (ATOMICFLOW_AUTH_TOKEN) "": required when --listen "0.0.0.0:8080" is not a loopback address`},
		{name: "empty host without token", args: []string{"--listen", ":8080"}, setting: "auth-token", want: "--auth-token"},
		{name: ":: without token", args: []string{"--listen", "[::]:8080"}, setting: "auth-token", want: "--auth-token"},
		{name: "host name without token", args: []string{"--listen", "example.com:80"}, setting: "auth-token", want: "--auth-token"},
		{name: "LAN address without token", vars: map[string]string{"ATOMICFLOW_LISTEN": "192.168.1.5:8080"},
			setting: "auth-token", want: "--auth-token"},
		{name: "tcp grpc off loopback without token", args: []string{"--grpc-listen", "tcp://0.0.0.0:9090"},
			setting: "auth-token", want: `required when --grpc-listen "tcp://0.0.0.0:9090"`},
		{name: "grpc bad scheme", args: []string{"--grpc-listen", "http://127.0.0.1:9090"}, setting: "grpc-listen",
			want: "must be unix://PATH, tcp://HOST:PORT or empty"},
		{name: "grpc bad tcp address", args: []string{"--grpc-listen", "tcp://nowhere"}, setting: "grpc-listen",
			want: "tcp:// address must be host:port"},
		{name: "grpc empty unix path", args: []string{"--grpc-listen", "unix://"}, setting: "grpc-listen",
			want: "needs a socket path"},
		{name: "grpc unix path too long", args: []string{"--run-dir", long}, setting: "grpc-listen",
			want: "the limit is 107"},
		{name: "capacity 0", args: []string{"--capacity", "0"}, setting: "capacity", want: "must be between 1 and 1000000"},
		{name: "capacity too big", args: []string{"--capacity", "1000001"}, setting: "capacity", want: "must be between 1 and 1000000"},
		{name: "max attempts too big", args: []string{"--max-attempts", "1001"}, setting: "max-attempts", want: "must be between 1 and 1000"},
		{name: "max attempts 0", args: []string{"--max-attempts", "0"}, setting: "max-attempts", want: "must be between 1 and 1000"},
		{name: "max batch 0", args: []string{"--max-batch", "0"}, setting: "max-batch", want: "must be at least 1"},
		{name: "max queue 0", args: []string{"--max-queue", "0"}, setting: "max-queue", want: "must be at least 1"},
		{name: "negative max tasks per worker", args: []string{"--max-tasks-per-worker", "-1"},
			setting: "max-tasks-per-worker", want: "must not be negative"},
		{name: "empty worker bin", args: []string{"--worker-bin", ""}, setting: "worker-bin", want: "must not be empty"},
		{name: "empty run dir", dotenv: "ATOMICFLOW_RUN_DIR=\n", setting: "run-dir", want: "must not be empty"},
		{name: "empty data dir", args: []string{"--data-dir="}, setting: "data-dir", want: "must not be empty"},
		{name: "bad origin pattern", args: []string{"--allowed-origins", "ok.com,[bad"}, setting: "allowed-origins",
			want: `pattern "[bad": syntax error in pattern`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := inEmptyDir(t)
			if tc.dotenv != "" {
				writeFile(t, dir, ".env", tc.dotenv)
			}
			c, err := config.Load(tc.args, env(tc.vars), nil)
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			if c != nil {
				t.Errorf("Load returned a Config with the error %v", err)
			}
			var se *config.SettingError
			if !errors.As(err, &se) {
				t.Fatalf("error %q (%T) is not a *SettingError", err, err)
			}
			if se.Setting != tc.setting {
				t.Errorf("SettingError.Setting = %q, want %q (error: %v)", se.Setting, tc.setting, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestValidAddresses(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"localhost without token", []string{"--listen", "localhost:80"}},
		{"LOCALHOST without token", []string{"--listen", "LOCALHOST:80"}},
		{"127.x without token", []string{"--listen", "127.1.2.3:8080"}},
		{"::1 without token", []string{"--listen", "[::1]:8080"}},
		{"4-in-6 loopback without token", []string{"--listen", "[::ffff:127.0.0.1]:8080"}},
		{"0.0.0.0 with token", []string{"--listen", "0.0.0.0:8080", "--auth-token", "t"}},
		{":8080 with token from env", []string{"--listen", ":8080"}},
		{"tcp grpc on loopback", []string{"--grpc-listen", "tcp://localhost:9090"}},
		{"tcp grpc off loopback with token", []string{"--grpc-listen", "tcp://0.0.0.0:9090", "--auth-token", "t"}},
		{"grpc off", []string{"--grpc-listen", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inEmptyDir(t)
			vars := map[string]string{}
			if strings.Contains(tc.name, "from env") {
				vars["ATOMICFLOW_AUTH_TOKEN"] = "t"
			}
			if _, err := config.Load(tc.args, env(vars), nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestEveryBadSettingIsReported(t *testing.T) {
	inEmptyDir(t)
	_, err := config.Load([]string{"--workers", "0", "--store", "x", "--retention", "soon", "--listen", "0.0.0.0:1"}, nil, nil)
	if err == nil {
		t.Fatal("Load succeeded with four bad settings")
	}
	var got []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var se *config.SettingError
		if !errors.As(e, &se) {
			t.Fatalf("%v is not a *SettingError", e)
		}
		got = append(got, se.Setting)
	}
	want := []string{"retention", "workers", "store", "auth-token"} // parse errors, then constraints
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings reported: %q, want %q (error: %v)", got, want, err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*config.Config)
		setting string // "" = valid
		value   string
	}{
		{"defaults", func(*config.Config) {}, "", ""},
		{"workers", func(c *config.Config) { c.Workers = 0 }, "workers", "0"},
		{"dispatch", func(c *config.Config) { c.Dispatch = "LEAST-LOADED" }, "dispatch", "LEAST-LOADED"},
		{"max body", func(c *config.Config) { c.MaxBodyBytes = -1 }, "max-body", "-1"},
		{"sample interval", func(c *config.Config) { c.SampleInterval = 0 }, "sample-interval", "0s"},
		{"off loopback", func(c *config.Config) { c.Listen = "10.0.0.1:80" }, "auth-token", ""},
		{"off loopback with token", func(c *config.Config) { c.Listen, c.AuthToken = "10.0.0.1:80", "t" }, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config.Default()
			tc.change(c)
			err := c.Validate()
			if tc.setting == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *config.SettingError
			if !errors.As(err, &se) {
				t.Fatalf("Validate = %v, want a *SettingError", err)
			}
			if se.Setting != tc.setting || se.Value != tc.value {
				t.Errorf("SettingError{Setting: %q, Value: %q}, want {%q, %q}", se.Setting, se.Value, tc.setting, tc.value)
			}
		})
	}
}

func TestEnvFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		files   map[string]string // name in the test's directory -> content
		args    []string
		vars    map[string]string
		wantErr error  // matched with errors.Is; nil = any error with want in it, or none if want is ""
		want    string // substring of the error
		check   func(*testing.T, *config.Config)
	}{
		{name: "missing default .env is fine"},
		{
			name: "missing explicit --env-file", args: []string{"--env-file", "nope.env"},
			wantErr: fs.ErrNotExist, want: `invalid --env-file (ATOMICFLOW_ENV_FILE) "nope.env"`,
		},
		{
			name: "missing explicit ATOMICFLOW_ENV_FILE", vars: map[string]string{"ATOMICFLOW_ENV_FILE": "nope.env"},
			wantErr: fs.ErrNotExist, want: "--env-file",
		},
		{
			name:  "explicit file is read instead of .env",
			files: map[string]string{".env": "ATOMICFLOW_WORKERS=2\n", "prod.env": "ATOMICFLOW_WORKERS=3\n"},
			args:  []string{"--env-file", "prod.env"},
			check: func(t *testing.T, c *config.Config) {
				if c.Workers != 3 || c.EnvFile != "prod.env" {
					t.Errorf("Workers, EnvFile = %d, %q; want 3, prod.env", c.Workers, c.EnvFile)
				}
			},
		},
		{
			name:  "--env-file= turns the file off",
			files: map[string]string{".env": "ATOMICFLOW_WORKERS=0\nATOMICFLOW_TYPO=1\n"},
			args:  []string{"--env-file="},
			check: func(t *testing.T, c *config.Config) {
				if c.EnvFile != "" || c.Workers != min(runtime.NumCPU(), 1024) {
					t.Errorf("EnvFile, Workers = %q, %d; want the file ignored", c.EnvFile, c.Workers)
				}
			},
		},
		{
			name:    "unknown ATOMICFLOW_ key",
			files:   map[string]string{".env": "ATOMICFLOW_WORKERS=2\nATOMICFLOW_WROKERS=4\n"},
			wantErr: config.ErrUnknownSetting,
			want:    `config: unknown setting ATOMICFLOW_WROKERS in env file ".env" (did you mean ATOMICFLOW_WORKERS?)`,
		},
		{
			name:    "unknown key far from any setting",
			files:   map[string]string{".env": "ATOMICFLOW_COLOUR_SCHEME=dark\n"},
			wantErr: config.ErrUnknownSetting,
			want:    `unknown setting ATOMICFLOW_COLOUR_SCHEME in env file ".env"`,
		},
		{
			name:  "the env file cannot name another one",
			files: map[string]string{".env": "ATOMICFLOW_ENV_FILE=other.env\n"},
			want:  `invalid --env-file (ATOMICFLOW_ENV_FILE) "other.env": cannot be set inside the env file`,
		},
		{
			name:  "malformed file",
			files: map[string]string{".env": "ATOMICFLOW_WORKERS='2\n"},
			want:  `config: env file ".env"`,
		},
		{
			name:  "comments, export and quotes",
			files: map[string]string{".env": "# a comment\nexport ATOMICFLOW_WORKERS=5 # five\nATOMICFLOW_AUTH_TOKEN='a b#c'\n"},
			check: func(t *testing.T, c *config.Config) {
				if c.Workers != 5 || c.AuthToken != "a b#c" {
					t.Errorf("Workers, AuthToken = %d, %q; want 5, %q", c.Workers, c.AuthToken, "a b#c")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := inEmptyDir(t)
			for name, content := range tc.files {
				writeFile(t, dir, name, content)
			}
			c, err := config.Load(tc.args, env(tc.vars), nil)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Load succeeded, want an error containing %q", tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q is not %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestEnvFileLeavesProcessEnvironmentAlone(t *testing.T) {
	dir := inEmptyDir(t)
	writeFile(t, dir, ".env", "ATOMICFLOW_CAPACITY=77\n")
	if _, err := config.Load(nil, os.Getenv, nil); err != nil {
		t.Fatal(err)
	}
	if v, ok := os.LookupEnv("ATOMICFLOW_CAPACITY"); ok {
		t.Errorf("Load set ATOMICFLOW_CAPACITY=%q in the process environment", v)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"undefined flag", []string{"--wrokers", "2"}, "flag provided but not defined: -wrokers"},
		{"missing value", []string{"--workers"}, "flag needs an argument: -workers"},
		{"positional argument", []string{"serve"}, `unexpected argument "serve"`},
		{"argument after flags", []string{"--workers", "2", "extra"}, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inEmptyDir(t)
			var stderr strings.Builder
			_, err := config.Load(tc.args, nil, &stderr)
			if !errors.Is(err, config.ErrUsage) {
				t.Fatalf("error %v is not ErrUsage", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("Load wrote to stderr on a usage error (the caller reports it): %q", stderr.String())
			}
		})
	}
}

func TestTableFlagRepeats(t *testing.T) {
	c, err := config.Load([]string{"--env-file", "", "--table", "a:8:x=int", "--table", "b:16:y=float,z=string(8)"}, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tables) != 2 || c.Tables[0].Name != "a" || c.Tables[1].Rows != 16 || len(c.Tables[1].Columns) != 2 {
		t.Fatalf("tables %+v", c.Tables)
	}
	if _, err := config.Load([]string{"--env-file", "", "--table", "bad"}, func(string) string { return "" }, nil); err == nil || !strings.Contains(err.Error(), "--table") {
		t.Fatalf("bad spec: %v", err)
	}
}
