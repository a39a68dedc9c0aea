// Package web holds the dashboard's browser side: index.html, app.js and
// style.css, with no framework and no build step, embedded into the binary.
//
// The page opens ws(s)://<host>/ws (see package dashboard for the frame
// format), draws the in-flight tasks on a canvas, and calls the master's
// JSON API for control actions (POST /api/v1/workers/{slot}/kill|restart)
// and load generation (POST /api/v1/tasks/batch). A ?token= in the page URL
// is kept in sessionStorage and sent as "Authorization: Bearer <token>".
//
// Serve it with http.FileServerFS(web.FS()).
package web

import (
	"embed"
	"io/fs"
)

//go:embed index.html app.js style.css
var files embed.FS

// FS returns the dashboard's files, rooted at the directory that holds
// index.html. The embedded files are read-only.
func FS() fs.FS { return files }
