// Package web is the browser demo of the library example: a chat over the
// gateway's WebSocket bridge (LibraryService.Chat) and a live book list over
// Server-Sent Events (LibraryService.WatchBooks). The page is plain HTML and
// JavaScript with no build step; library-server serves it with -web.
//
// The page talks to the gateway named by its ?gateway= query parameter
// (default http://127.0.0.1:8080), a different origin, so the gateway must
// allow the page's origin for WebSockets and CORS (examples/rosetta.yaml
// does).
package web

import (
	"embed"
	"net/http"
)

//go:embed index.html app.js
var files embed.FS

// Handler serves the demo page at / and its script.
func Handler() http.Handler { return http.FileServerFS(files) }
