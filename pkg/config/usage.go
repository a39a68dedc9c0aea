package config

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Usage writes the --help text: every setting with its flag, its variable,
// its default and a one-line description. The defaults shown are c's values
// (Load uses Default()); settings whose default depends on the machine also
// say how it is found. A nil c means Default().
func (c *Config) Usage(w io.Writer) {
	if c == nil {
		c = Default()
	}
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, `Usage: master [flags]

Every flag is also an environment variable and a key in the .env file
(see --env-file). A flag wins over the environment, the environment over
the .env file, the .env file over the default. A SIZE is a number of bytes,
optionally with KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of
1000); a DURATION is like 500ms, 30s, 5m or 24h.

`)
	table := settings()
	for i := range table {
		s := &table[i]
		def := s.field(c).String()
		if def == "" {
			def = `""`
		}
		if s.dynamic != nil {
			def += " (" + s.dynamic.what + ")"
		}
		fmt.Fprintf(bw, "  %s %s  (%s)\n        %s\n        default: %s\n",
			s.flagName(), s.arg, s.envName(), s.usage, def)
	}
	bw.Flush()
}

// WriteEnvExample writes the .env.example file committed at the root of the
// repository: a commented description of every setting that can be a .env
// key, each followed by its key set to its default, commented out. Settings
// whose default depends on the machine show an example value instead, so
// the output is the same everywhere.
func WriteEnvExample(w io.Writer) {
	bw := bufio.NewWriter(w)
	fmt.Fprint(bw, `# Settings of the atomicflow master: one ATOMICFLOW_* key per flag.
#
# Each key is shown commented out with its default, or with an example when
# the default depends on the machine. Copy this file to .env (or name a copy
# with --env-file or the environment variable ATOMICFLOW_ENV_FILE) and
# uncomment what you change. A flag wins over the environment, the environment
# over the .env file, the .env file over the default. Keys without the prefix
# are ignored, an ATOMICFLOW_* key that is not a setting is an error. Sizes
# are bytes, optionally with KiB, MiB, GiB (powers of 1024) or KB, MB, GB
# (powers of 1000); durations are like 500ms, 30s, 5m or 24h.
#
# Generated from the settings table in pkg/config; after changing it, run
#   go test ./pkg/config -run TestEnvExample -update
`)
	d := Default()
	table := settings()
	for i := range table {
		s := &table[i]
		if s.notInFile {
			continue
		}
		fmt.Fprintf(bw, "\n# %s: %s.\n", s.flagName(), s.usage)
		v := s.field(d).String()
		if s.dynamic != nil {
			fmt.Fprintf(bw, "# Default: %s.\n", s.dynamic.what)
			v = s.dynamic.example
		}
		fmt.Fprintf(bw, "# %s=%s\n", s.envName(), quoteEnv(v))
	}
	bw.Flush()
}

// quoteEnv quotes v for godotenv when it would not survive unquoted. Single
// quotes keep it literal (no $ expansion, no escapes).
func quoteEnv(v string) string {
	if !strings.ContainsAny(v, " \t#'\"$\\=") {
		return v
	}
	return "'" + v + "'"
}
