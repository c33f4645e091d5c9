package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminAndDrain checks the admin endpoints of the real binary and that
// SIGTERM makes /readyz fail before the process exits cleanly.
func TestAdminAndDrain(t *testing.T) {
	b := startBroker(t, "COMETD_DRAIN_GRACE_PERIOD_MS=3000")
	if code, body := get(t, b.Admin+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Fatalf("/healthz %d %q", code, body)
	}
	if code, _ := get(t, b.Admin+"/readyz"); code != 200 {
		t.Fatalf("/readyz %d before drain", code)
	}
	resp, err := http.Post(b.URL, "application/json", strings.NewReader(`[{"channel":"/meta/handshake","supportedConnectionTypes":["long-polling"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	code, body := get(t, b.Admin+"/status")
	var st struct {
		Node          string  `json:"node"`
		Sessions      int64   `json:"sessions"`
		PolicyVersion *string `json:"policyVersion"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || st.Node != "conformance-0" || st.Sessions != 1 || st.PolicyVersion == nil {
		t.Fatalf("/status %d %s (%v)", code, body, err)
	}
	_, metrics := get(t, b.Admin+"/metrics")
	for _, m := range []string{"cometd_sessions 1", "cometd_subscriptions 0", "cometd_messages_in_total 1",
		"cometd_messages_out_total 1", "cometd_queue_drops_total 0"} {
		if !strings.Contains(metrics, m+"\n") {
			t.Fatalf("/metrics lacks %q:\n%s", m, metrics)
		}
	}
	// Drain: the session keeps the process alive for the grace period, during
	// which /readyz fails and handshakes are refused.
	if err := b.Cmd.Process.Signal(sigterm); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "/readyz failing after SIGTERM", func(context.Context) (bool, string) {
		code, _ := get(t, b.Admin+"/readyz")
		return code == http.StatusServiceUnavailable, fmt.Sprintf("/readyz = %d", code)
	})
	resp, err = http.Post(b.URL, "application/json", strings.NewReader(`[{"channel":"/meta/handshake"}]`))
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(hb), "503::server_draining") {
		t.Fatalf("handshake during drain: %s", hb)
	}
	select {
	case err := <-b.Exited:
		if err != nil {
			t.Fatalf("broker exit: %v\n%s", err, b.Logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("broker did not exit after its grace period\n%s", b.Logs)
	}
}
