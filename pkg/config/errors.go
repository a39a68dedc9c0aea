package config

import (
	"errors"
	"flag"
	"fmt"
)

// Errors returned by Load. They may be wrapped; match them with errors.Is.
var (
	// ErrHelp is returned by Load after it wrote the usage for -h or
	// --help. It wraps flag.ErrHelp, so errors.Is(err, flag.ErrHelp) holds
	// too; a caller should exit 0.
	ErrHelp = fmt.Errorf("config: %w", flag.ErrHelp)

	// ErrUnknownSetting means the .env file holds an ATOMICFLOW_* key that
	// is not a setting (usually a typo). The error names the key and the
	// file.
	ErrUnknownSetting = errors.New("config: unknown setting")

	// ErrUsage means the command line itself is malformed: an undefined
	// flag, a flag without its value or a positional argument.
	ErrUsage = errors.New("config: bad command line")
)

// SettingError reports a setting whose value does not parse or does not
// satisfy its constraint. Find it with errors.As.
type SettingError struct {
	Setting string // the setting's name, e.g. "workers"
	Flag    string // its flag, e.g. "--workers"
	Env     string // its environment variable and .env key, e.g. "ATOMICFLOW_WORKERS"
	Value   string // the offending value as given (or as held in the Config)
	Err     error  // what is wrong with it
}

// Error formats e as
//
//	invalid --workers (ATOMICFLOW_WORKERS) "0": must be between 1 and 1024
func (e *SettingError) Error() string {
	return fmt.Sprintf("invalid %s (%s) %q: %v", e.Flag, e.Env, e.Value, e.Err)
}

// Unwrap returns the underlying error.
func (e *SettingError) Unwrap() error { return e.Err }
