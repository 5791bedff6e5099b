package gateway

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the dashboard: static files only, no build step.
//
//go:embed ui
var uiFiles embed.FS

// staticHandler serves the dashboard's files. They hold no data, so they are
// served without auth; the page asks /api/me and tells the user how to log
// in when that answers 401.
func staticHandler() http.Handler {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		// fs.Sub fails only for an invalid path literal: a bug here.
		panic(err)
	}
	return http.FileServerFS(sub)
}
