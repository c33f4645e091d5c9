package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestParseOptionsPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(path, []byte("listen: \":9000\"\ntimeoutMs: 1000\nmaxIntervalMs: 2000\nallowedOrigins: [\"https://a\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		listen     string
		timeout    time.Duration
		node       string
		origins    int
		wantErrSub bool
	}{
		{"file only", []string{"--config", path}, map[string]string{"POD_NAME": "chat-0"}, ":9000", time.Second, "chat-0", 1, false},
		{"env overrides file", []string{"--config", path}, map[string]string{"COMETD_LISTEN": ":9001", "COMETD_TIMEOUT_MS": "5000", "COMETD_NODE": "n1", "POD_NAME": "p"}, ":9001", 5 * time.Second, "n1", 1, false},
		{"flag overrides env", []string{"--config", path, "--listen", ":9002", "--node", "weird name/x", "--allowed-origins", "https://a,https://b"}, map[string]string{"COMETD_LISTEN": ":9001"}, ":9002", time.Second, "weird-name-x", 2, false},
		{"config from env", nil, map[string]string{"COMETD_CONFIG": path, "COMETD_NODE": "x"}, ":9000", time.Second, "x", 1, false},
		{"defaults", nil, map[string]string{"COMETD_NODE": "x"}, "", 30 * time.Second, "x", 0, false},
		{"bad env number", nil, map[string]string{"COMETD_TIMEOUT_MS": "soon"}, "", 0, "", 0, true},
		{"negative value", nil, map[string]string{"COMETD_TIMEOUT_MS": "-1"}, "", 0, "", 0, true},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "", 0, "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErrSub {
				if err == nil {
					t.Fatal("expected an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.file.Listen != tc.listen || o.file.Timeout() != tc.timeout || o.node != tc.node || len(o.file.AllowedOrigins) != tc.origins {
				t.Fatalf("got listen=%q timeout=%v node=%q origins=%v", o.file.Listen, o.file.Timeout(), o.node, o.file.AllowedOrigins)
			}
		})
	}
}
