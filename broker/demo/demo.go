// Package demo serves a small page that shows a broker at work: a chat room on
// /demo/** channels and a live view of the round-trip latency and of the
// transport in use. It is off by default (cmd/broker --demo, or
// spec.broker.demo on a CometdCluster).
//
// The page uses Faye's browser client (static/faye-browser-min.js, Faye 1.4.3,
// Apache License 2.0, see static/faye-LICENSE.md), which is one file and has
// every transport the broker serves; served from the broker's own origin, it
// needs no allowedOrigins.
package demo

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Path is where the demo is mounted on the client port.
const Path = "/demo/"

// ChannelPrefix is the channel namespace the page uses: /demo/chat for the
// chat room, /demo/rtt/<random> for each page's latency probes.
const ChannelPrefix = "/demo/"

// Handler serves the demo page at Path for a broker whose Bayeux endpoint is
// mount ("/cometd").
func Handler(mount string) (http.Handler, error) {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	var page bytes.Buffer
	if err := pageTemplate.Execute(&page, struct{ Mount string }{strings.TrimSuffix(mount, "/")}); err != nil {
		return nil, err
	}
	files := http.StripPrefix(Path, http.FileServerFS(sub))
	modified := time.Now()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == Path || r.URL.Path == Path+"index.html" {
			http.ServeContent(w, r, "index.html", modified, bytes.NewReader(page.Bytes()))
			return
		}
		if r.URL.Path == strings.TrimSuffix(Path, "/") {
			http.Redirect(w, r, Path, http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(w, r)
	}), nil
}

var pageTemplate = template.Must(template.ParseFS(static, "static/index.html.tmpl"))
