package config

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// value is the typed view of one Config field: Set parses text into the
// field, String formats the field so that Set accepts it again. It is the
// flag.Value interface, but flags are not parsed through it (see rawFlag).
type value interface {
	Set(string) error
	String() string
}

type stringValue struct{ p *string }

func (v stringValue) Set(s string) error { *v.p = s; return nil }
func (v stringValue) String() string     { return *v.p }

type intValue struct{ p *int }

func (v intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, strconv.IntSize)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("out of range")
		}
		return errors.New("must be an integer")
	}
	*v.p = int(n)
	return nil
}
func (v intValue) String() string { return strconv.Itoa(*v.p) }

type durationValue struct{ p *time.Duration }

func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return errors.New("must be a duration like 500ms, 30s, 5m or 24h")
	}
	*v.p = d
	return nil
}
func (v durationValue) String() string { return formatDuration(*v.p) }

// formatDuration is time.Duration.String without the zero tails: "24h"
// rather than "24h0m0s", "10m" rather than "10m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

type sizeValue struct{ p *int64 }

func (v sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}
func (v sizeValue) String() string { return formatSize(*v.p) }

type sizeUnit struct {
	suffix string
	mult   int64
}

// sizeUnits are the suffixes parseSize accepts (case-insensitively): powers
// of 1024 with an "i", powers of 1000 without; largest first for formatSize.
func sizeUnits() [9]sizeUnit {
	return [...]sizeUnit{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
		{"B", 1},
	}
}

var errSize = errors.New("must be a size in bytes like 1048576, 512KiB, 8MiB or 1GB")

// parseSize parses a byte count: a non-negative integer, optionally followed
// (after optional spaces) by B, KiB, MiB, GiB, TiB (powers of 1024) or KB,
// MB, GB, TB (powers of 1000).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errSize
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	unit := strings.TrimSpace(s[i:])
	if unit == "" {
		return n, nil
	}
	for _, u := range sizeUnits() {
		if strings.EqualFold(unit, u.suffix) {
			if n > math.MaxInt64/u.mult {
				return 0, errors.New("out of range")
			}
			return n * u.mult, nil
		}
	}
	return 0, errSize
}

// formatSize writes n in the largest unit that divides it exactly, binary
// units first: 8388608 is "8MiB", 1000000 is "1MB", 1000 is "1KB".
func formatSize(n int64) string {
	if n > 0 {
		for _, u := range sizeUnits() {
			if u.mult > 1 && n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// listValue is a comma-separated list; blanks around items and empty items
// are dropped.
// tablesValue holds shared-table specs, ';'-separated.
type tablesValue struct{ p *[]shm.TableSpec }

func (v tablesValue) Set(s string) error {
	specs, err := shm.ParseTableSpecs(s)
	if err != nil {
		return err
	}
	*v.p = specs
	return nil
}

func (v tablesValue) String() string {
	parts := make([]string, len(*v.p))
	for i, t := range *v.p {
		parts[i] = t.String()
	}
	return strings.Join(parts, ";")
}

type listValue struct{ p *[]string }

func (v listValue) Set(s string) error {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	*v.p = out
	return nil
}
func (v listValue) String() string { return strings.Join(*v.p, ",") }
