package shm

import (
	"fmt"
	"strconv"
	"strings"
)

// Limits of table specs.
const (
	// MaxTables bounds the tables of one region.
	MaxTables = 64
	// MaxColumns bounds the columns of one table.
	MaxColumns = 32
	// MaxNameLen bounds table and column names, in bytes.
	MaxNameLen = 32
	// MaxKeyLen bounds a row key, in bytes.
	MaxKeyLen = 64
	// MaxTableRows bounds the row count of one table.
	MaxTableRows = 1 << 22
	// MaxStringSize bounds the size of a String column, in bytes.
	MaxStringSize = 1 << 16
	// MaxTableBytes bounds the memory of one table (rows included).
	MaxTableBytes = 1 << 32
)

// ColumnType is the type of a table column.
type ColumnType int

// Column types. The numbers are stored in the region's table directory:
// append only.
const (
	// Int64 holds an int64; Incr works on it.
	Int64 ColumnType = iota + 1
	// Float64 holds a float64; IncrFloat works on it.
	Float64
	// String holds up to Column.Size bytes.
	String
)

// String returns the type's name in the spec syntax: "int", "float" or
// "string".
func (c ColumnType) String() string {
	switch c {
	case Int64:
		return "int"
	case Float64:
		return "float"
	case String:
		return "string"
	}
	return "ColumnType(" + strconv.Itoa(int(c)) + ")"
}

// Column is one typed column of a table.
type Column struct {
	Name string
	Type ColumnType
	// Size is the maximum length in bytes of a String column's values;
	// it must be zero for the other types.
	Size int
}

// String returns the column in the spec syntax, e.g. "name=string(32)".
func (c Column) String() string {
	if c.Type == String {
		return fmt.Sprintf("%s=string(%d)", c.Name, c.Size)
	}
	return c.Name + "=" + c.Type.String()
}

// TableSpec declares a table: the master passes specs to CreateWithTables;
// workers find them in the region's table directory.
type TableSpec struct {
	Name string
	// Rows is the table's capacity: the most keys it holds at once.
	Rows    int
	Columns []Column
}

// String returns the spec in the syntax ParseTableSpec reads.
func (s TableSpec) String() string {
	cols := make([]string, len(s.Columns))
	for i, c := range s.Columns {
		cols[i] = c.String()
	}
	return fmt.Sprintf("%s:%d:%s", s.Name, s.Rows, strings.Join(cols, ","))
}

// Validate checks names, the row count, the columns and the table's size
// against the limits. Its errors wrap ErrTableSpec.
func (s TableSpec) Validate() error {
	if err := checkName("table", s.Name); err != nil {
		return fmt.Errorf("%w: %w", ErrTableSpec, err)
	}
	if s.Rows < 1 || s.Rows > MaxTableRows {
		return fmt.Errorf("%w: table %q: rows %d outside 1..%d", ErrTableSpec, s.Name, s.Rows, MaxTableRows)
	}
	if len(s.Columns) < 1 || len(s.Columns) > MaxColumns {
		return fmt.Errorf("%w: table %q: %d columns, want 1..%d", ErrTableSpec, s.Name, len(s.Columns), MaxColumns)
	}
	seen := make(map[string]bool, len(s.Columns))
	for _, c := range s.Columns {
		if err := checkName("column", c.Name); err != nil {
			return fmt.Errorf("%w: table %q: %w", ErrTableSpec, s.Name, err)
		}
		if seen[c.Name] {
			return fmt.Errorf("%w: table %q: column %q declared twice", ErrTableSpec, s.Name, c.Name)
		}
		seen[c.Name] = true
		switch c.Type {
		case Int64, Float64:
			if c.Size != 0 {
				return fmt.Errorf("%w: table %q: column %q: size %d given for a %s column", ErrTableSpec, s.Name, c.Name, c.Size, c.Type)
			}
		case String:
			if c.Size < 1 || c.Size > MaxStringSize {
				return fmt.Errorf("%w: table %q: column %q: string size %d outside 1..%d", ErrTableSpec, s.Name, c.Name, c.Size, MaxStringSize)
			}
		default:
			return fmt.Errorf("%w: table %q: column %q: unknown type %d", ErrTableSpec, s.Name, c.Name, int(c.Type))
		}
	}
	if b := tableBytes(s); b > MaxTableBytes {
		return fmt.Errorf("%w: table %q needs %d bytes, more than the %d limit", ErrTableSpec, s.Name, b, int64(MaxTableBytes))
	}
	return nil
}

// checkName accepts 1..MaxNameLen bytes of [A-Za-z0-9_-]: names appear in
// URLs (/api/v1/tables/{name}) and JSON keys.
func checkName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s name %q is longer than %d bytes", what, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%s name %q: character %q not allowed (use letters, digits, _ and -)", what, name, c)
		}
	}
	return nil
}

// ParseTableSpec reads a table spec in the master's --table syntax:
//
//	NAME:ROWS:COL=TYPE[,COL=TYPE...]
//
// where TYPE is int (or int64), float (or float64) or string(N) with N the
// maximum length in bytes, e.g. "rates:1024:count=int,sum=float,name=string(32)".
// Errors wrap ErrTableSpec and quote the spec.
func ParseTableSpec(s string) (TableSpec, error) {
	bad := func(format string, args ...any) (TableSpec, error) {
		return TableSpec{}, fmt.Errorf("%w %q: %s (want NAME:ROWS:COL=TYPE,... with TYPE int, float or string(N))",
			ErrTableSpec, s, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return bad("%d colon-separated parts, want 3", len(parts))
	}
	spec := TableSpec{Name: strings.TrimSpace(parts[0])}
	if err := checkName("table", spec.Name); err != nil {
		return bad("%v", err)
	}
	rows, err := strconv.Atoi(strings.TrimSpace(parts[1]))
	if err != nil || rows < 1 || rows > MaxTableRows {
		return bad("rows %q must be a whole number in 1..%d", strings.TrimSpace(parts[1]), MaxTableRows)
	}
	spec.Rows = rows
	if strings.TrimSpace(parts[2]) == "" {
		return bad("no columns")
	}
	for _, def := range strings.Split(parts[2], ",") {
		name, typ, ok := strings.Cut(strings.TrimSpace(def), "=")
		if !ok {
			return bad("column %q has no =TYPE", strings.TrimSpace(def))
		}
		c := Column{Name: strings.TrimSpace(name)}
		switch typ = strings.ToLower(strings.TrimSpace(typ)); {
		case typ == "int" || typ == "int64":
			c.Type = Int64
		case typ == "float" || typ == "float64":
			c.Type = Float64
		case strings.HasPrefix(typ, "string(") && strings.HasSuffix(typ, ")"):
			n, err := strconv.Atoi(strings.TrimSpace(typ[len("string(") : len(typ)-1]))
			if err != nil || n < 1 || n > MaxStringSize {
				return bad("column %q: string size in %q must be a whole number in 1..%d", c.Name, typ, MaxStringSize)
			}
			c.Type, c.Size = String, n
		case typ == "string":
			return bad("column %q: string needs a size, e.g. string(32)", c.Name)
		default:
			return bad("column %q: unknown type %q", c.Name, typ)
		}
		spec.Columns = append(spec.Columns, c)
	}
	if err := spec.Validate(); err != nil {
		return TableSpec{}, fmt.Errorf("%q: %w", s, err)
	}
	return spec, nil
}

// ParseTableSpecs reads several specs separated by ";" (the form of the
// ATOMICFLOW_TABLE variable; the --table flag may instead be repeated) and
// checks that the names are distinct. Empty items are skipped.
func ParseTableSpecs(s string) ([]TableSpec, error) {
	var out []TableSpec
	for _, item := range strings.Split(s, ";") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		spec, err := ParseTableSpec(item)
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	if err := checkSpecs(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkSpecs validates a region's set of specs.
func checkSpecs(specs []TableSpec) error {
	if len(specs) > MaxTables {
		return fmt.Errorf("%w: %d tables, at most %d", ErrTableSpec, len(specs), MaxTables)
	}
	seen := make(map[string]bool, len(specs))
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: table %q declared twice", ErrTableSpec, s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}
