package main

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/atomicflow/atomicflow/pkg/sdk"
)

// stressHandlers are kinds that misbehave on purpose: "stubborn" ignores
// its context (a handler that outlives its timeout), "alloc" holds
// {"mib": N} of memory until the worker exits (RSS recycling).
func stressHandlers() map[string]sdk.Handler {
	var mu sync.Mutex
	var held [][]byte
	return map[string]sdk.Handler{
		"stubborn": func(context.Context, *sdk.Task) ([]byte, error) {
			time.Sleep(time.Hour)
			return nil, nil
		},
		"alloc": func(_ context.Context, t *sdk.Task) ([]byte, error) {
			var p struct {
				MiB int `json:"mib"`
			}
			if err := json.Unmarshal(t.Payload, &p); err != nil {
				return nil, err
			}
			b := make([]byte, p.MiB<<20)
			for i := range b {
				b[i] = byte(i) // touch every page so it counts in RSS
			}
			mu.Lock()
			held = append(held, b)
			mu.Unlock()
			return []byte(`{"held":true}`), nil
		},
	}
}
