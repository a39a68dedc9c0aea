// Package config holds every setting of the atomicflow master in one struct,
// Config, and loads it from three sources plus the defaults.
//
// Every setting is a flag (--workers), an environment variable
// (ATOMICFLOW_WORKERS) and a key in an optional .env file (same name as the
// variable). Precedence, highest first:
//
//	flag > environment > .env file > default
//
// The .env file is read with godotenv without touching the process
// environment. Only ATOMICFLOW_* keys are read from it, so it can be shared
// with other tools, and an ATOMICFLOW_* key that is not a setting is an
// error, which catches typos. The file is ./.env unless --env-file (or
// ATOMICFLOW_ENV_FILE) names another one; a missing default file is fine, a
// missing file that was named explicitly is an error, and --env-file= turns
// the file off.
//
// All of it is derived from one table of settings (name, description, parser,
// constraint and a pointer into Config): the FlagSet, the environment and
// .env lookups, Validate, Usage (the --help text) and WriteEnvExample (the
// committed .env.example at the repository root), so none of them can drift
// from another. The defaults live in Default.
//
// A value that does not parse or fails its constraint is reported as a
// *SettingError naming the flag and the variable, for example:
//
//	invalid --workers (ATOMICFLOW_WORKERS) "0": must be between 1 and 1024
//
// Load and Validate report every bad setting at once, joined with
// errors.Join; errors.As finds the first *SettingError.
package config
