package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/config"
)

func TestParseOptionsPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "broker.yaml")
	if err := os.WriteFile(path, []byte("listen: \":9000\"\ntimeoutMs: 1000\nmaxIntervalMs: 2000\nallowedOrigins: [\"https://a\"]\n"+
		"nats: {url: \"nats://file:4222\", credsFile: /file/creds, subjectPrefix: filepfx}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileNATS := config.NATS{URL: "nats://file:4222", CredsFile: "/file/creds", SubjectPrefix: "filepfx"}
	// Every COMETD_NATS_* variable, each with its own value, so that a
	// variable mapped to the wrong field shows.
	natsEnv := map[string]string{
		"COMETD_NATS_URL": "nats://env-a:4222,nats://env-b:4222", "COMETD_NATS_CREDS_FILE": "/env/creds",
		"COMETD_NATS_TOKEN_FILE": "/env/token", "COMETD_NATS_CA_FILE": "/env/ca.crt",
		"COMETD_NATS_CERT_FILE": "/env/tls.crt", "COMETD_NATS_KEY_FILE": "/env/tls.key",
		"COMETD_NATS_SUBJECT_PREFIX": "envpfx", "COMETD_NODE": "x",
	}
	envNATS := config.NATS{
		URL: "nats://env-a:4222,nats://env-b:4222", CredsFile: "/env/creds", TokenFile: "/env/token",
		CAFile: "/env/ca.crt", CertFile: "/env/tls.crt", KeyFile: "/env/tls.key", SubjectPrefix: "envpfx",
	}
	flagNATS := envNATS
	flagNATS.URL = "nats://flag:4222"
	tokenOverFile := fileNATS
	tokenOverFile.TokenFile = "/env/token"
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		listen     string
		timeout    time.Duration
		node       string
		origins    int
		nats       config.NATS
		wantErrSub bool
	}{
		{"file only", []string{"--config", path}, map[string]string{"POD_NAME": "chat-0"}, ":9000", time.Second, "chat-0", 1, fileNATS, false},
		{"env overrides file", []string{"--config", path}, map[string]string{"COMETD_LISTEN": ":9001", "COMETD_TIMEOUT_MS": "5000", "COMETD_NODE": "n1", "POD_NAME": "p"}, ":9001", 5 * time.Second, "n1", 1, fileNATS, false},
		{"flag overrides env", []string{"--config", path, "--listen", ":9002", "--node", "weird name/x", "--allowed-origins", "https://a,https://b"}, map[string]string{"COMETD_LISTEN": ":9001"}, ":9002", time.Second, "weird-name-x", 2, fileNATS, false},
		{"config from env", nil, map[string]string{"COMETD_CONFIG": path, "COMETD_NODE": "x"}, ":9000", time.Second, "x", 1, fileNATS, false},
		{"defaults", nil, map[string]string{"COMETD_NODE": "x"}, "", 30 * time.Second, "x", 0, config.NATS{}, false},
		{"nats env, no file", nil, natsEnv, "", 30 * time.Second, "x", 0, envNATS, false},
		{"nats env overrides file", []string{"--config", path}, natsEnv, ":9000", time.Second, "x", 1, envNATS, false},
		{"one nats env var keeps the file's others", []string{"--config", path}, map[string]string{"COMETD_NATS_TOKEN_FILE": "/env/token", "COMETD_NODE": "x"}, ":9000", time.Second, "x", 1, tokenOverFile, false},
		{"nats-url flag overrides env", []string{"--nats-url", "nats://flag:4222"}, natsEnv, "", 30 * time.Second, "x", 0, flagNATS, false},
		{"nats-url flag overrides file", []string{"--config", path, "--nats-url", "nats://flag:4222"}, map[string]string{"COMETD_NODE": "x"}, ":9000", time.Second, "x", 1, config.NATS{URL: "nats://flag:4222", CredsFile: "/file/creds", SubjectPrefix: "filepfx"}, false},
		{"bad env number", nil, map[string]string{"COMETD_TIMEOUT_MS": "soon"}, "", 0, "", 0, config.NATS{}, true},
		{"negative value", nil, map[string]string{"COMETD_TIMEOUT_MS": "-1"}, "", 0, "", 0, config.NATS{}, true},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "", 0, "", 0, config.NATS{}, true},
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
			if o.file.NATS != tc.nats {
				t.Fatalf("nats = %+v, want %+v", o.file.NATS, tc.nats)
			}
		})
	}
}

func TestParseOptionsDemo(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    bool
		wantErr bool
	}{
		{"off by default", nil, nil, false, false},
		{"flag", []string{"--demo"}, nil, true, false},
		{"env", nil, map[string]string{"COMETD_DEMO": "true"}, true, false},
		{"flag over env", []string{"--demo=false"}, map[string]string{"COMETD_DEMO": "true"}, false, false},
		{"bad env", nil, map[string]string{"COMETD_DEMO": "yes please"}, false, true},
		{"mount under /demo", []string{"--demo", "--mount-path", "/demo/bayeux"}, nil, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"COMETD_NODE": "x"}
			for k, v := range tc.env {
				env[k] = v
			}
			o, err := parseOptions(tc.args, func(k string) string { return env[k] })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err == nil && o.file.Demo != tc.want {
				t.Fatalf("Demo %v, want %v", o.file.Demo, tc.want)
			}
		})
	}
}
