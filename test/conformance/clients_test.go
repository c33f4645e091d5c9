package conformance

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// scriptResult is what each node script prints as its last stdout line.
type scriptResult struct {
	Client    string   `json:"client"`
	Transport string   `json:"transport"`
	OK        bool     `json:"ok"`
	Error     string   `json:"error"`
	Steps     []string `json:"steps"`
}

// TestThirdPartyClients runs every (client, transport) combination against one
// broker: handshake, subscribe, publish, receive, wildcard (* and **)
// subscriptions, unsubscribe and disconnect. Any failing combination fails.
func TestThirdPartyClients(t *testing.T) {
	requireNode(t)
	b := startBroker(t)
	tests := []struct {
		script, transport string
		wantSteps         []string // steps that must have been reached
	}{
		{"cometd-conformance.mjs", "long-polling", nil},
		{"cometd-conformance.mjs", "websocket", nil},
		{"cometd-conformance.mjs", "callback-polling", nil},
		{"faye-conformance.mjs", "long-polling", nil},
		{"faye-conformance.mjs", "websocket", nil},
	}
	required := []string{"subscribe /conf/room", "receive /conf/room", "receive via /conf/wild/*",
		"receive via /conf/deep/**", "unsubscribe /conf/room", "receive after unsubscribe", "disconnect subscriber"}
	for _, tc := range tests {
		name := strings.TrimSuffix(tc.script, "-conformance.mjs") + "/" + tc.transport
		t.Run(name, func(t *testing.T) {
			stdout, stderr, err := runNode(t, 60*time.Second, tc.script, b.URL, tc.transport)
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			var res scriptResult
			if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); jerr != nil {
				t.Fatalf("no result from %s (%v): %v\nstdout:\n%s\nstderr:\n%s\nbroker:\n%s", name, err, jerr, stdout, stderr, b.Logs)
			}
			if err != nil || !res.OK {
				t.Fatalf("%s failed at %q: %s (exit: %v)\nsteps: %v\nstderr:\n%s", name, last(res.Steps), res.Error, err, res.Steps, stderr)
			}
			if res.Transport != tc.transport {
				t.Fatalf("ran %s, want %s", res.Transport, tc.transport)
			}
			for _, s := range required {
				if !contains(res.Steps, s) {
					t.Fatalf("step %q was never reached: %v", s, res.Steps)
				}
			}
		})
	}
}

func last(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
