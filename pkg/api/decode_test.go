package api_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/pkg/api"
)

func TestDecodeTask(t *testing.T) {
	tests := []struct {
		name, body string
		code       string // "" = ok
	}{
		{"minimal", `{"kind":"echo"}`, ""},
		{"full", `{"kind":"sleep","payload":{"ms":5},"key":"k","timeout_ms":10,"max_attempts":3,"idempotency_key":"i"}`, ""},
		{"null payload", `{"kind":"echo","payload":null}`, ""},
		{"empty", ``, "bad_json"},
		{"truncated", `{"kind":"echo"`, "bad_json"},
		{"array", `[]`, "bad_field"},
		{"two values", `{"kind":"echo"}{"kind":"echo"}`, "bad_json"},
		{"unknown field", `{"kind":"echo","x":1}`, "bad_field"},
		{"no kind", `{}`, "bad_field"},
		{"bad attempts", `{"kind":"echo","max_attempts":5000}`, "bad_field"},
		{"string timeout", `{"kind":"echo","timeout_ms":"1s"}`, "bad_field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.DecodeTask(strings.NewReader(tt.body))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("DecodeTask(%s): %v", tt.body, err)
				}
				return
			}
			var de *api.DecodeError
			if !errors.As(err, &de) || de.Code != tt.code {
				t.Fatalf("DecodeTask(%s) = %v, want code %s", tt.body, err, tt.code)
			}
		})
	}
}

func TestDecodeBatchLimit(t *testing.T) {
	body := `{"tasks":[` + strings.Repeat(`{"kind":"echo"},`, 4) + `{"kind":"echo"}]}`
	if subs, err := api.DecodeBatch(strings.NewReader(body), 5); err != nil || len(subs) != 5 {
		t.Fatalf("5 of 5: %v %d", err, len(subs))
	}
	if _, err := api.DecodeBatch(strings.NewReader(body), 4); err == nil {
		t.Fatal("5 tasks accepted with a limit of 4")
	}
}

// FuzzDecode: any body either decodes into valid submissions or gives a
// DecodeError; it never panics, and what decodes has a kind.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"kind":"echo","payload":{"a":[1,2,{"b":null}]}}`,
		`{"tasks":[{"kind":"sleep","payload":{"ms":1}},{"kind":"cpu","max_attempts":2}]}`,
		`{"kind":"echo","payload":"\u0000\ud800"}`,
		`{"tasks":null}`, `[`, `{"kind":1}`, `{"kind":"x","timeout_ms":1e309}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, decode := range []func() (int, error){
			func() (int, error) {
				s, err := api.DecodeTask(strings.NewReader(string(body)))
				if err == nil && s.Kind == "" {
					t.Fatalf("decoded a task without kind from %q", body)
				}
				return 1, err
			},
			func() (int, error) {
				subs, err := api.DecodeBatch(strings.NewReader(string(body)), 100)
				for _, s := range subs {
					if s.Kind == "" || s.TimeoutMs < 0 {
						t.Fatalf("invalid submission %+v from %q", s, body)
					}
				}
				return len(subs), err
			},
		} {
			if _, err := decode(); err != nil {
				var de *api.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("error of type %T: %v", err, err)
				}
			}
		}
	})
}
