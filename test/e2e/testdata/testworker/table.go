package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/atomicflow/atomicflow/pkg/sdk"
)

// tableHandlers are the kinds of the shared-table tests:
//
//   - hit {"table": "hits", "key": "k"} increments the key's "count" and
//     returns {"count": N}, like examples/custom-worker's hit;
//   - table-hold {"table": "hits", "key": "k", "pid_file": PATH, "ms": N}
//     takes the key's row lock with the shm test hook, writes this process's
//     pid to pid_file and holds the lock for ms (until the process is
//     killed, in the test). A redelivered attempt does nothing, so a test
//     that kills the holder does not get the lock held again.
func tableHandlers() map[string]sdk.Handler {
	return map[string]sdk.Handler{"hit": tableHit, "table-hold": tableHold}
}

type tablePayload struct {
	Table   string `json:"table"`
	Key     string `json:"key"`
	PIDFile string `json:"pid_file"`
	Ms      int    `json:"ms"`
}

func (p *tablePayload) decode(b []byte) error {
	if err := json.Unmarshal(b, p); err != nil {
		return fmt.Errorf("bad payload: %w", err)
	}
	if p.Table == "" {
		p.Table = "hits"
	}
	if p.Key == "" {
		return errors.New("key is required")
	}
	return nil
}

func tableHit(_ context.Context, t *sdk.Task) ([]byte, error) {
	var p tablePayload
	if err := p.decode(t.Payload); err != nil {
		return nil, err
	}
	tab, err := t.Table(p.Table)
	if err != nil {
		return nil, err
	}
	n, err := tab.Incr(p.Key, "count", 1)
	if err != nil {
		return nil, err
	}
	return []byte(`{"count":` + strconv.FormatInt(n, 10) + `}`), nil
}

func tableHold(ctx context.Context, t *sdk.Task) ([]byte, error) {
	if t.Attempt > 1 {
		return []byte(`{"held":false}`), nil
	}
	var p tablePayload
	if err := p.decode(t.Payload); err != nil {
		return nil, err
	}
	tab, err := t.Table(p.Table)
	if err != nil {
		return nil, err
	}
	unlock, err := tab.LockRowForTest(p.Key)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if p.PIDFile != "" {
		if err := os.WriteFile(p.PIDFile, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			return nil, err
		}
	}
	select {
	case <-time.After(time.Duration(p.Ms) * time.Millisecond):
	case <-ctx.Done():
	}
	return []byte(`{"held":true}`), nil
}
