package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
)

// TestMainWritesJSONSummary runs the command's main path against the real
// broker binary, with the summary going to a file, and decodes it.
func TestMainWritesJSONSummary(t *testing.T) {
	b := brokertest.Start(t, brokertest.Binary(t, "./cmd/broker", false), "bench-0", []string{"--node", "bench-0"})
	out, err := os.Create(filepath.Join(t.TempDir(), "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr brokertest.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := runMain(ctx, []string{
		"-url", b.URL, "-transport", "long-polling", "-subscribers", "6", "-channels", "3",
		"-publishers", "2", "-rate", "200", "-duration", "1s", "-drain", "15s", "-progress", "200ms",
	}, out, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", code, stderr.String())
	}
	raw, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	// The field names are the interface scripts read: check them by name.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("summary is not a JSON object: %v\n%s", err, raw)
	}
	for _, k := range []string{"url", "transport", "subscribers", "channels", "publishers", "rate",
		"publish_seconds", "published", "publish_errors", "published_per_sec", "expected", "delivered",
		"delivered_per_sec", "losses", "duplicates", "unexpected", "latency_ms", "bench_cpu_seconds"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("summary has no %q: %s", k, raw)
		}
	}
	var s Summary
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decoding the summary: %v\n%s", err, raw)
	}
	if s.URL != b.URL || s.Transport != "long-polling" || s.Subscribers != 6 || s.Channels != 3 || s.Publishers != 2 || s.Rate != 200 {
		t.Fatalf("summary does not echo the flags: %+v", s)
	}
	checkCoherent(t, &s, 2)
	if !strings.Contains(stderr.String(), "delivered") {
		t.Fatalf("no progress line on stderr: %q", stderr.String())
	}
}

// TestMainExitStatus checks the statuses scripts rely on for bad input.
func TestMainExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no url", nil, 1, "-url is required"},
		{"bad transport", []string{"-url", "http://127.0.0.1:1/cometd", "-transport", "pigeon"}, 1, "-transport"},
		{"unknown flag", []string{"-frobnicate"}, 2, "frobnicate"},
		{"help", []string{"-h"}, 0, "-subscribers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr brokertest.SyncBuffer
			if code := runMain(context.Background(), tc.args, &stdout, &stderr); code != tc.code {
				t.Fatalf("exit status %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.err) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tc.err)
			}
			if stdout.String() != "" {
				t.Fatalf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
