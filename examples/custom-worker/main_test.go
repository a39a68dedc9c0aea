package main

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/sdk"
	"github.com/atomicflow/atomicflow/pkg/shm"
)

// The handlers run without a master: the test maps a region with the
// table the master's --table would declare.
func newEnv(t *testing.T, spec string) *sdk.Env {
	t.Helper()
	var specs []shm.TableSpec
	if spec != "" {
		s, err := shm.ParseTableSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
	}
	r, err := shm.CreateWithTables(filepath.Join(t.TempDir(), "region"), 1, specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return sdk.NewEnv(r, 0)
}

func TestHitAndTop(t *testing.T) {
	env := newEnv(t, "hits:64:count=int,last=string(64)")
	ctx := context.Background()
	for i, key := range []string{"/a", "/b", "/a", "/c", "/a", "/b"} {
		task := &sdk.Task{ID: "t" + strconv.Itoa(i), Kind: "hit", Payload: []byte(`{"key":"` + key + `"}`), Env: env}
		if _, err := hit(ctx, task); err != nil {
			t.Fatal(err)
		}
	}
	// The task's key is used when the payload has none.
	out, err := hit(ctx, &sdk.Task{ID: "t6", Kind: "hit", Key: "/c", Env: env})
	if err != nil || string(out) != `{"key":"/c","count":2}` {
		t.Fatalf("hit by task key: %s, %v", out, err)
	}
	out, err = top(ctx, &sdk.Task{Kind: "top", Payload: []byte(`{"n":2}`), Env: env})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Keys int     `json:"keys"`
		Top  []entry `json:"top"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := []entry{{Key: "/a", Count: 3, Last: "t4"}, {Key: "/b", Count: 2, Last: "t5"}}
	if got.Keys != 3 || len(got.Top) != 2 || got.Top[0] != want[0] || got.Top[1] != want[1] {
		t.Fatalf("top: %s", out)
	}
}

func TestHandlerErrors(t *testing.T) {
	ctx := context.Background()
	env := newEnv(t, "hits:64:count=int,last=string(64)")
	tests := []struct {
		name    string
		handler sdk.Handler
		task    *sdk.Task
		want    string
		is      error
	}{
		{"no key", hit, &sdk.Task{Env: env}, "no key", nil},
		{"bad payload", hit, &sdk.Task{Payload: []byte("{"), Env: env}, "bad payload", nil},
		{"key too long", hit, &sdk.Task{Key: strings.Repeat("k", 65), Env: env}, "too long", shm.ErrKeyTooLong},
		{"top n", top, &sdk.Task{Payload: []byte(`{"n":0}`), Env: env}, "1..1000", nil},
		{"no table", hit, &sdk.Task{Key: "k", Env: newEnv(t, "")}, "--table 'hits:", shm.ErrNoTable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.handler(ctx, tt.task)
			if err == nil || !strings.Contains(err.Error(), tt.want) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("error %v, want one mentioning %q (is %v)", err, tt.want, tt.is)
			}
		})
	}
}
