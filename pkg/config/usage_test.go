package config_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the committed .env.example from config.WriteEnvExample")

// envExample is the committed file, relative to this package.
var envExample = filepath.Join("..", "..", ".env.example")

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help", "--h"} {
		t.Run(arg, func(t *testing.T) {
			inEmptyDir(t)
			var stderr bytes.Buffer
			// A bad environment must not hide the help.
			c, err := config.Load([]string{"--workers", "2", arg}, env(map[string]string{"ATOMICFLOW_WORKERS": "x"}), &stderr)
			if !errors.Is(err, config.ErrHelp) || !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("Load(%s) = %v, want ErrHelp wrapping flag.ErrHelp", arg, err)
			}
			if c != nil {
				t.Error("Load returned a Config with ErrHelp")
			}
			usage := stderr.String()
			for _, s := range everySetting {
				if !strings.Contains(usage, "--"+s.flag+" ") || !strings.Contains(usage, s.env) {
					t.Errorf("usage lacks --%s or %s", s.flag, s.env)
				}
			}
			var def bytes.Buffer
			config.Default().Usage(&def)
			if usage != def.String() {
				t.Error("Load's usage differs from Default().Usage")
			}
		})
	}
}

func TestUsage(t *testing.T) {
	c := config.Default()
	c.Capacity = 42
	var b bytes.Buffer
	c.Usage(&b)
	usage := b.String()
	if n := strings.Count(usage, "\n  --"); n != len(everySetting) {
		t.Errorf("usage lists %d flags, want %d", n, len(everySetting))
	}
	for _, want := range []string{
		"Usage: master [flags]",
		"--workers N  (ATOMICFLOW_WORKERS)\n        number of worker processes (1..1024)\n        default: ",
		"(the number of CPUs)",
		"--store bolt|memory  (ATOMICFLOW_STORE)",
		"--dispatch least-loaded|round-robin|key-hash",
		"default: 42\n",   // c's values are the defaults shown
		"default: 8MiB\n", // sizes and durations in the form they are written
		"default: 24h\n",
		"default: 100ms\n",
		`default: ""`,
	} {
		if !strings.Contains(usage, want) {
			t.Errorf("usage lacks %q:\n%s", want, usage)
		}
	}
	var nilUsage bytes.Buffer
	(*config.Config)(nil).Usage(&nilUsage)
	var def bytes.Buffer
	config.Default().Usage(&def)
	if nilUsage.String() != def.String() {
		t.Error("a nil Config's usage differs from Default().Usage")
	}
}

// TestEnvExample keeps the committed .env.example equal to WriteEnvExample.
func TestEnvExample(t *testing.T) {
	var b bytes.Buffer
	config.WriteEnvExample(&b)
	if *update {
		if err := os.WriteFile(envExample, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", envExample)
		return
	}
	committed, err := os.ReadFile(envExample)
	if err != nil {
		t.Fatalf("%v; create it with: go test ./pkg/config -run TestEnvExample -update", err)
	}
	if !bytes.Equal(committed, b.Bytes()) {
		t.Errorf(".env.example is out of date; run: go test ./pkg/config -run TestEnvExample -update\n"+
			"--- .env.example (committed)\n+++ WriteEnvExample\n%s",
			lineDiff(string(committed), b.String()))
	}
}

// TestEnvExampleLoads uncomments every key of .env.example and loads it:
// the result must be valid and, for the settings whose default does not
// depend on the machine, equal to the defaults.
func TestEnvExampleLoads(t *testing.T) {
	var b bytes.Buffer
	config.WriteEnvExample(&b)
	key := regexp.MustCompile(`(?m)^# (ATOMICFLOW_[A-Z_]+=)`)
	text := key.ReplaceAllString(b.String(), "$1")
	if n := len(key.FindAllString(b.String(), -1)); n != len(everySetting)-1 { // all but ATOMICFLOW_ENV_FILE
		t.Fatalf("example has %d keys, want %d:\n%s", n, len(everySetting)-1, b.String())
	}
	dir := inEmptyDir(t)
	p := writeFile(t, dir, "example.env", text)
	c, err := config.Load([]string{"--env-file", p}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	// Machine-dependent defaults get example values in the file.
	want.Workers, want.WorkerBin, want.RunDir, want.GRPCListen = c.Workers, c.WorkerBin, c.RunDir, c.GRPCListen
	want.EnvFile = p
	if !reflect.DeepEqual(c, want) {
		t.Errorf("loaded example = %+v\nwant %+v", c, want)
	}
}

// lineDiff is a small LCS line diff, enough to show what changed.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("-" + x[i] + "\n")
			i++
		default:
			out.WriteString("+" + y[j] + "\n")
			j++
		}
	}
	return out.String()
}
