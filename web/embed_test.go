package web_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/atomicflow/atomicflow/web"
)

func TestFSHasTheFiles(t *testing.T) {
	tests := []struct {
		file  string
		wants []string // strings the page, its script or its styles must hold
	}{
		{"index.html", []string{
			`href="style.css"`, `src="app.js"`, `id="task-field"`, `data-cell-size="40"`, `id="conn-status"`,
			`id="events"`, `id="load-submit"`, `id="load-status"`, `id="workers"`, `id="sparkline"`,
			`id="load-kind"`, `id="progress-panel"`, `id="progress"`,
		}},
		{"app.js", []string{
			"requestAnimationFrame", "/ws", "/api/v1/tasks/batch", "/api/v1/workers/", "Authorization",
			"sessionStorage", "devicePixelRatio", "dataset.cellSize", "dataset.drawn", "worker-card",
			"f.kinds", "f.progress", "pendingEvents",
		}},
		{"style.css", []string{".worker-card", `[data-state="ready"]`, `[data-state="backoff"]`, `[data-state="dead"]`, ".disconnected"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := fs.ReadFile(web.FS(), tt.file)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wants {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
}

func TestFSServes(t *testing.T) {
	srv := httptest.NewServer(http.FileServerFS(web.FS()))
	defer srv.Close()
	tests := []struct{ path, contentType string }{
		{"/", "text/html"},
		{"/app.js", "javascript"},
		{"/style.css", "text/css"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := srv.Client().Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
		})
	}
}
