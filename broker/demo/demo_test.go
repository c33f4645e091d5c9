package demo

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h, err := Handler("/bayeux/")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		code         int
		has          string
	}{
		{"GET", "/demo/", 200, `data-mount="/bayeux"`},
		{"GET", "/demo/index.html", 200, `<script src="demo.js">`},
		{"GET", "/demo/demo.js", 200, "/demo/chat"},
		{"GET", "/demo/faye-browser-min.js", 200, "Faye"},
		{"GET", "/demo", 301, ""},
		{"GET", "/demo/nope.js", 404, ""},
		{"GET", "/demo/../go.mod", 404, ""},
		{"POST", "/demo/", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, "http://b"+tc.path, nil)
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d", rec.Code, tc.code)
			}
			if !strings.Contains(rec.Body.String(), tc.has) {
				t.Fatalf("body lacks %q", tc.has)
			}
			if rec.Header().Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'self'") {
				t.Fatalf("headers %v", rec.Header())
			}
		})
	}
	if _, err := Handler(`"><script>`); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	hostile, _ := Handler(`/x"><script>alert(1)</script>`)
	hostile.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://b/demo/", nil))
	if strings.Contains(rec.Body.String(), "<script>alert") {
		t.Fatal("the mount path is not escaped in the page")
	}
}
