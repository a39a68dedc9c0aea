// Package tasks holds the built-in task kinds the default worker serves:
// sleep, cpu, echo and fail. Each validates its payload; a bad one is a
// permanent error (sdk.Permanent): the task fails at once with a clear
// message instead of being retried.
package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/atomicflow/atomicflow/pkg/sdk"
)

// Kinds lists the built-in kinds, for validation on the master.
func Kinds() []string { return []string{"sleep", "cpu", "echo", "fail"} }

// Handlers returns the built-in handlers by kind.
func Handlers() map[string]sdk.Handler {
	return map[string]sdk.Handler{
		"sleep": Sleep,
		"cpu":   CPU,
		"echo":  Echo,
		"fail":  Fail,
	}
}

// SleepPayload is {"ms": N}.
type SleepPayload struct {
	Ms int64 `json:"ms"`
}

// Sleep waits for payload.ms milliseconds, or until its context ends.
func Sleep(ctx context.Context, t *sdk.Task) ([]byte, error) {
	var p SleepPayload
	if err := decode(t.Payload, &p); err != nil {
		return nil, err
	}
	if p.Ms < 0 {
		return nil, sdk.Permanentf("bad payload: sleep: ms must be >= 0, got %d", p.Ms)
	}
	timer := time.NewTimer(time.Duration(p.Ms) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		return []byte(fmt.Sprintf(`{"slept_ms":%d}`, p.Ms)), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// CPUPayload is {"rounds": N}.
type CPUPayload struct {
	Rounds int `json:"rounds"`
}

// CPU hashes a buffer with sha256 payload.rounds times.
func CPU(ctx context.Context, t *sdk.Task) ([]byte, error) {
	var p CPUPayload
	if err := decode(t.Payload, &p); err != nil {
		return nil, err
	}
	if p.Rounds < 0 {
		return nil, sdk.Permanentf("bad payload: cpu: rounds must be >= 0, got %d", p.Rounds)
	}
	sum := sha256.Sum256([]byte(t.ID))
	for i := 0; i < p.Rounds; i++ {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		sum = sha256.Sum256(sum[:])
	}
	return []byte(`{"sha256":"` + hex.EncodeToString(sum[:]) + `"}`), nil
}

// Echo returns its payload unchanged.
func Echo(_ context.Context, t *sdk.Task) ([]byte, error) {
	return t.Payload, nil
}

// FailPayload is {"message": "...", "probability": p}: with probability p
// (default 1) the task fails with message.
type FailPayload struct {
	Message     string   `json:"message"`
	Probability *float64 `json:"probability"`
}

// Fail fails with the given message, or with the given probability.
func Fail(_ context.Context, t *sdk.Task) ([]byte, error) {
	var p FailPayload
	if err := decode(t.Payload, &p); err != nil {
		return nil, err
	}
	prob := 1.0
	if p.Probability != nil {
		prob = *p.Probability
	}
	if prob < 0 || prob > 1 {
		return nil, sdk.Permanentf("bad payload: fail: probability must be in 0..1, got %g", prob)
	}
	if rand.Float64() < prob {
		if p.Message == "" {
			p.Message = "failed on purpose"
		}
		return nil, errors.New(p.Message)
	}
	return []byte(`{"ok":true}`), nil
}

func decode(payload []byte, v any) error {
	if len(payload) == 0 {
		return nil
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return sdk.Permanent(fmt.Errorf("bad payload: %w", err))
	}
	return nil
}
