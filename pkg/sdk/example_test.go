package sdk_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// A complete worker: its main calls Serve, which runs until the master
// stops it. Build it and point the master at it:
//
//	go build -o bin/resizer ./cmd/resizer
//	bin/master --worker-bin bin/resizer
//
// (This example is compiled, not run: Serve needs a master.)
func ExampleServe() {
	var db *sql.DB // what the handlers share in this process
	sdk.Serve(sdk.Config{
		Handlers: map[string]sdk.Handler{
			// "resize" {"images": ["a.png", …]} reports its progress as
			// it goes; the API and the dashboard show the latest report.
			"resize": func(ctx context.Context, t *sdk.Task) ([]byte, error) {
				var p struct{ Images []string }
				if err := json.Unmarshal(t.Payload, &p); err != nil {
					return nil, err
				}
				for i, img := range p.Images {
					if err := ctx.Err(); err != nil { // timeout, cancel, drain
						return nil, err
					}
					t.Progress(float64(i)/float64(len(p.Images)), "resizing "+img)
					if _, err := db.ExecContext(ctx, "UPDATE images SET done = 1 WHERE name = ?", img); err != nil {
						return nil, err
					}
				}
				t.Progress(1, "done")
				return json.Marshal(map[string]int{"resized": len(p.Images)})
			},
		},
		// At most 16 tasks at once in this worker, however high the
		// master's --capacity (the smaller figure wins).
		Capacity: 16,
		// Before the worker reports ready: no task arrives until it
		// returns, and an error makes the worker exit (the master backs
		// the slot off and forks it again).
		OnStart: func(ctx context.Context) error {
			var err error // (with a database/sql driver imported for "sqlite")
			if db, err = sql.Open("sqlite", "images.db"); err != nil {
				return err
			}
			return db.PingContext(ctx)
		},
		// When the worker drains, after its last task, before it exits.
		OnStop: func(ctx context.Context) error {
			return db.Close()
		},
	})
}

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
