package shm_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/atomicflow/atomicflow/pkg/shm"
)

// The master declares a table when it creates the region; a worker that
// opens the region finds it by name.
func ExampleRegion_Table() {
	dir, _ := os.MkdirTemp("", "shm-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "region")

	spec, err := shm.ParseTableSpec("hits:1024:count=int,last=string(16)")
	if err != nil {
		fmt.Println(err)
		return
	}
	master, err := shm.CreateWithTables(path, 2, []shm.TableSpec{spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer master.Close()

	worker, err := shm.Open(path, shm.OpenOptions{Slot: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer worker.Close()
	hits, _ := worker.Table("hits")
	hits.Incr("/home", "count", 1)
	n, _ := hits.Incr("/home", "count", 1)
	hits.Set("/home", shm.Row{"last": "worker 1"})

	view, _ := master.Table("hits")
	row, ok, _ := view.Get("/home")
	fmt.Println(n, ok, row.Int("count"), row.Text("last"), view.Len(), view.Rows())

	err = hits.Set("/home", shm.Row{"last": "a string longer than sixteen bytes"})
	fmt.Println(errors.Is(err, shm.ErrValueTooLong))
	// Output:
	// 2 true 2 worker 1 1 1024
	// true
}

func ExampleParseTableSpec() {
	spec, err := shm.ParseTableSpec("rates:1024:count=int,sum=float,name=string(32)")
	fmt.Println(spec.Name, spec.Rows, spec.Columns, err)

	_, err = shm.ParseTableSpec("rates:many:count=int")
	fmt.Println(err)
	// Output:
	// rates 1024 [count=int sum=float name=string(32)] <nil>
	// shm: bad table spec "rates:many:count=int": rows "many" must be a whole number in 1..4194304 (want NAME:ROWS:COL=TYPE,... with TYPE int, float or string(N))
}
