package e2e

import (
	"strings"
	"testing"
)

// A payload a built-in kind cannot use fails its task at once with the
// reason: another attempt would fail the same way, so it is not retried.
func TestBadPayloadFailsAtOnceWithoutRetry(t *testing.T) {
	m := startMaster(t, options{workers: 1})
	m.waitReady(1)
	cases := []struct {
		name    string
		task    map[string]any
		wantErr string
	}{
		{"sleep ms not a number", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": "x"}}, "bad payload"},
		{"sleep ms negative", map[string]any{"kind": "sleep", "payload": map[string]any{"ms": -1}}, "ms must be >= 0"},
		{"cpu rounds negative", map[string]any{"kind": "cpu", "payload": map[string]any{"rounds": -5}}, "rounds must be >= 0"},
		{"fail probability above 1", map[string]any{"kind": "fail", "payload": map[string]any{"probability": 7}}, "probability must be in 0..1"},
		{"payload not an object", map[string]any{"kind": "sleep", "payload": []int{1, 2}}, "bad payload"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.task["max_attempts"] = 5
			ids := m.submit([]map[string]any{c.task})
			var v taskView
			m.getJSON("/api/v1/tasks/"+ids[0]+"?wait=10s", &v)
			if v.State != "failed" || v.Attempts != 1 || !strings.Contains(v.Error, c.wantErr) {
				t.Fatalf("got state %q attempts %d error %q; want failed after 1 attempt with %q", v.State, v.Attempts, v.Error, c.wantErr)
			}
		})
	}
	if st := m.stats(); st["retried"] != 0 {
		t.Fatalf("stats retried = %d, want 0: a bad payload must not be retried", st["retried"])
	}
}
