// Command custom-worker is a worker of your own, written with the SDK: two
// task kinds that share the table "hits" with every other worker of the
// master, next to the built-in kinds (sleep, cpu, echo, fail) so the
// dashboard's load panel works with it too.
//
//   - hit {"key": "/home"} adds one to the key's count (the task's key when
//     the payload has none) and returns {"key": "/home", "count": N}: N is
//     the total over all workers, exact however many run at once.
//   - top {"n": 10} returns the n keys with the highest counts.
//
// The master declares the table; build and run (see README.md):
//
//	go build -o bin/custom-worker ./examples/custom-worker
//	bin/master --worker-bin bin/custom-worker --table 'hits:4096:count=int,last=string(64)'
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/shm"
	"github.com/atomicflow/atomicflow/pkg/tasks"
)

// table is the shared table the kinds use; the master's --table declares it.
const table = "hits"

func main() {
	handlers := tasks.Handlers()
	handlers["hit"] = hit
	handlers["top"] = top
	sdk.Serve(sdk.Config{Handlers: handlers})
}

type hitPayload struct {
	Key string `json:"key"`
}

type entry struct {
	Key   string `json:"key"`
	Count int64  `json:"count"`
	Last  string `json:"last,omitempty"`
}

// hit counts one hit of a key and records which task was the last one.
func hit(_ context.Context, t *sdk.Task) ([]byte, error) {
	var p hitPayload
	if err := decode(t.Payload, &p); err != nil {
		return nil, err
	}
	if p.Key == "" {
		p.Key = t.Key
	}
	if p.Key == "" {
		return nil, errors.New(`hit: no key: give {"key": "..."} or the task's key`)
	}
	hits, err := hitsTable(t)
	if err != nil {
		return nil, err
	}
	// Incr is atomic across every worker process: no hit is lost.
	n, err := hits.Incr(p.Key, "count", 1)
	if err != nil {
		return nil, fmt.Errorf("hit %q: %w", p.Key, err)
	}
	// Set writes only the columns it names, so it never undoes another
	// worker's Incr.
	if err := hits.Set(p.Key, shm.Row{"last": t.ID}); err != nil {
		return nil, fmt.Errorf("hit %q: %w", p.Key, err)
	}
	return json.Marshal(entry{Key: p.Key, Count: n})
}

type topPayload struct {
	N int `json:"n"`
}

// top returns the hottest keys, read without locks from the shared table.
func top(_ context.Context, t *sdk.Task) ([]byte, error) {
	p := topPayload{N: 10}
	if err := decode(t.Payload, &p); err != nil {
		return nil, err
	}
	if p.N < 1 || p.N > 1000 {
		return nil, fmt.Errorf("top: n must be in 1..1000, got %d", p.N)
	}
	hits, err := hitsTable(t)
	if err != nil {
		return nil, err
	}
	var all []entry
	err = hits.Range(func(key string, row shm.Row) bool {
		all = append(all, entry{Key: key, Count: row.Int("count"), Last: row.Text("last")})
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("top: %w", err)
	}
	slices.SortFunc(all, func(a, b entry) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Key, b.Key))
	})
	return json.Marshal(map[string]any{"keys": len(all), "top": all[:min(p.N, len(all))]})
}

func hitsTable(t *sdk.Task) (*shm.Table, error) {
	tab, err := t.Table(table)
	if errors.Is(err, shm.ErrNoTable) {
		return nil, fmt.Errorf("%w: start the master with --table '%s:4096:count=int,last=string(64)'", err, table)
	}
	return tab, err
}

func decode(payload []byte, v any) error {
	if len(payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("bad payload: %w", err)
	}
	return nil
}
