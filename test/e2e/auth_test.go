package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthToken(t *testing.T) {
	t.Run("off loopback without a token refuses to start", func(t *testing.T) {
		out, err := exec.Command(bins.master, "--workers", "1", "--listen", "0.0.0.0:0", "--run-dir", filepath.Join(shortTemp(t), "run"),
			"--store", "memory", "--worker-bin", bins.worker, "--env-file", "").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--auth-token") {
			t.Fatalf("started off loopback without a token: %v\n%s", err, out)
		}
	})
	t.Run("with a token, changes need it", func(t *testing.T) {
		m := startMaster(t, options{workers: 1, args: []string{"--auth-token", "s3cret"}})
		m.waitReady(1)
		for _, tc := range []struct {
			method, path, body, auth string
			want                     int
		}{
			{"POST", "/api/v1/tasks", `{"kind":"echo"}`, "", 401},
			{"POST", "/api/v1/tasks", `{"kind":"echo"}`, "Bearer wrong", 401},
			{"POST", "/api/v1/tasks/batch", `{"tasks":[{"kind":"echo"}]}`, "", 401},
			{"POST", "/api/v1/workers/0/kill", ``, "", 401},
			{"POST", "/api/v1/workers/0/restart", ``, "", 401},
			{"POST", "/api/v1/scale", `{"workers":2}`, "", 401},
			{"POST", "/api/v1/reload", ``, "", 401},
			{"DELETE", "/api/v1/tasks/ffffffffffffffff", ``, "", 401},
			{"GET", "/api/v1/workers", ``, "", 200},
			{"GET", "/api/v1/stats", ``, "", 200},
			{"POST", "/api/v1/tasks", `{"kind":"echo"}`, "Bearer s3cret", 202},
		} {
			req, _ := http.NewRequest(tc.method, m.URL+tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s (auth %q): %d, want %d", tc.method, tc.path, tc.auth, resp.StatusCode, tc.want)
			}
		}
		if st := m.stats(); st["submitted"] != 1 || st["restarts"] != 0 {
			t.Fatalf("unauthorized requests changed something: %v", st)
		}
	})
}
