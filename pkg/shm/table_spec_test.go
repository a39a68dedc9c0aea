package shm_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

func TestParseTableSpec(t *testing.T) {
	good := []struct {
		in   string
		want shm.TableSpec
	}{
		{"rates:1024:count=int,sum=float,name=string(32)", shm.TableSpec{Name: "rates", Rows: 1024, Columns: []shm.Column{
			{Name: "count", Type: shm.Int64}, {Name: "sum", Type: shm.Float64}, {Name: "name", Type: shm.String, Size: 32},
		}}},
		{" hits : 4096 : count = int64 , last = STRING( 64 ) ", shm.TableSpec{Name: "hits", Rows: 4096, Columns: []shm.Column{
			{Name: "count", Type: shm.Int64}, {Name: "last", Type: shm.String, Size: 64},
		}}},
		{"a-b_1:1:x=float64", shm.TableSpec{Name: "a-b_1", Rows: 1, Columns: []shm.Column{{Name: "x", Type: shm.Float64}}}},
	}
	for _, tt := range good {
		t.Run(tt.in, func(t *testing.T) {
			got, err := shm.ParseTableSpec(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want.String() {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			again, err := shm.ParseTableSpec(got.String())
			if err != nil || again.String() != got.String() {
				t.Fatalf("String does not round-trip: %s -> %v, %v", got, again, err)
			}
		})
	}

	bad := []struct {
		in, mention string
	}{
		{"", "3"},
		{"hits", "3"},
		{"hits:10", "3"},
		{"hits:10:count=int:extra", "3"},
		{":10:count=int", "table name is empty"},
		{"bad/name:10:count=int", `'/'`},
		{strings.Repeat("t", 33) + ":10:c=int", "longer than 32"},
		{"hits:ten:count=int", `rows "ten"`},
		{"hits:0:count=int", "rows"},
		{"hits:-5:count=int", "rows"},
		{"hits:99999999:count=int", "rows"},
		{"hits:10:", "no columns"},
		{"hits:10:count", `"count" has no =TYPE`},
		{"hits:10:count=integer", `unknown type "integer"`},
		{"hits:10:name=string", "string needs a size"},
		{"hits:10:name=string(0)", "string size"},
		{"hits:10:name=string(x)", "string size"},
		{"hits:10:name=string(70000)", "string size"},
		{"hits:10:=int", "column name is empty"},
		{"hits:10:a=int,a=float", "declared twice"},
		{"hits:10:a=int,,b=int", "has no =TYPE"},
		{"hits:4194304:" + strings.TrimSuffix(strings.Repeat("c=string(65536),", 1), ","), "bytes"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.in, func(t *testing.T) {
			_, err := shm.ParseTableSpec(tt.in)
			if !errors.Is(err, shm.ErrTableSpec) {
				t.Fatalf("error %v, want ErrTableSpec", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

func TestParseTableSpecs(t *testing.T) {
	specs, err := shm.ParseTableSpecs("a:1:x=int; b:2:y=float ;")
	if err != nil || len(specs) != 2 || specs[0].Name != "a" || specs[1].Name != "b" {
		t.Fatalf("got %v, %v", specs, err)
	}
	if specs, err := shm.ParseTableSpecs(" "); err != nil || len(specs) != 0 {
		t.Fatalf("empty list: %v, %v", specs, err)
	}
	if _, err := shm.ParseTableSpecs("a:1:x=int;a:2:y=int"); !errors.Is(err, shm.ErrTableSpec) || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate: %v", err)
	}
}

func TestSizeWithTables(t *testing.T) {
	if n, err := shm.SizeWithTables(3, nil); err != nil || n != int64(shm.Size(3)) {
		t.Fatalf("no tables: %d, %v", n, err)
	}
	spec, _ := shm.ParseTableSpec("t:100:a=int,b=string(10)")
	n, err := shm.SizeWithTables(3, []shm.TableSpec{spec})
	if err != nil || n <= int64(shm.Size(3)) || n%shm.LineSize != 0 {
		t.Fatalf("with a table: %d, %v", n, err)
	}
	if _, err := shm.SizeWithTables(1, []shm.TableSpec{{Name: "x", Rows: 1}}); !errors.Is(err, shm.ErrTableSpec) {
		t.Fatalf("no columns: %v", err)
	}
}
