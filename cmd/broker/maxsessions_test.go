package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cometd-operator/cometd-operator/broker/server"
)

// TestMaxSessionsFromFileAndEnv: maxSessions comes from the config file,
// COMETD_MAX_SESSIONS overrides it, and a negative or non-numeric value is an
// error.
func TestMaxSessionsFromFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(path, []byte("maxSessions: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     string
		want    int
		wantErr bool
	}{
		{"file", "", 100, false},
		{"env overrides file", "250", 250, false},
		{"negative", "-1", 0, true},
		{"not a number", "many", 0, true},
		{"out of range", "99999999999", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"COMETD_NODE": "x", "COMETD_MAX_SESSIONS": tc.env}
			o, err := parseOptions([]string{"--config", path}, func(k string) string { return env[k] })
			if tc.wantErr {
				if err == nil {
					t.Fatalf("COMETD_MAX_SESSIONS=%q accepted", tc.env)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := server.ConfigFromFile(o.file).MaxSessions; got != tc.want {
				t.Errorf("MaxSessions = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestHandshakesRefusedMetric: a handshake refused at the session cap shows
// in cometd_handshakes_refused_total.
func TestHandshakesRefusedMetric(t *testing.T) {
	srv, err := server.NewServer(server.Config{MaxSessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	for i, want := range []string{`"successful":true`, `"503::too_many_sessions"`} {
		resp, err := http.Post(hs.URL, "application/json",
			strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Fatalf("handshake %d: %s, want %s", i+1, body, want)
		}
	}
	mfs, err := newAdmin(srv, nil).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "cometd_handshakes_refused_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Errorf("cometd_handshakes_refused_total = %v, want 1", v)
			}
			return
		}
	}
	t.Error("no cometd_handshakes_refused_total metric")
}
