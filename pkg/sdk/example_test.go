package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// hit counts a key in the shared table "hits": every worker of the master
// sees the same counter.
func hit(_ context.Context, t *sdk.Task) ([]byte, error) {
	hits, err := t.Table("hits")
	if err != nil {
		return nil, err
	}
	n, err := hits.Incr(t.Key, "count", 1)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{"key": t.Key, "count": n})
}

// A handler reaches the master's shared tables through its task. Serve
// needs a master, so this example maps a region of its own, as a unit test
// of a handler would, and runs the handler directly.
func ExampleTask_Table() {
	dir, _ := os.MkdirTemp("", "sdk-example")
	defer os.RemoveAll(dir)
	spec, _ := shm.ParseTableSpec("hits:1024:count=int")
	region, err := shm.CreateWithTables(filepath.Join(dir, "region"), 1, []shm.TableSpec{spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer region.Close()
	env := sdk.NewEnv(region, 0)

	for _, key := range []string{"/home", "/about", "/home"} {
		out, err := hit(context.Background(), &sdk.Task{Kind: "hit", Key: key, Env: env})
		fmt.Println(string(out), err)
	}
	// Output:
	// {"count":1,"key":"/home"} <nil>
	// {"count":1,"key":"/about"} <nil>
	// {"count":2,"key":"/home"} <nil>
}

// Two workers map the same region (here two mappings in one process; under
// a master, two processes) and count into one row.
func ExampleEnv() {
	dir, _ := os.MkdirTemp("", "sdk-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "region")
	spec, _ := shm.ParseTableSpec("hits:64:count=int,last=string(16)")
	master, err := shm.CreateWithTables(path, 2, []shm.TableSpec{spec})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer master.Close()

	for slot := range 2 {
		r, err := shm.Open(path, shm.OpenOptions{Slot: slot})
		if err != nil {
			fmt.Println(err)
			return
		}
		env := sdk.NewEnv(r, slot)
		hits, _ := env.Table("hits")
		for range 3 {
			hits.Incr("/home", "count", 1)
		}
		hits.Set("/home", shm.Row{"last": fmt.Sprintf("worker %d", env.Slot())})
		r.Close()
	}

	hits, _ := master.Table("hits")
	row, _, _ := hits.Get("/home")
	fmt.Println(row.Int("count"), row.Text("last"))
	// Output: 6 worker 1
}

// A table the master did not declare is an error that wraps
// shm.ErrNoTable.
func ExampleEnv_Table() {
	var t sdk.Task // not run by Serve: no Env
	_, err := t.Table("hits")
	fmt.Println(errors.Is(err, shm.ErrNoTable))
	// Output: true
}
