package conformance

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCometDClientRetriesAtSessionCap: a broker at its session cap
// (COMETD_MAX_SESSIONS=1) refuses the CometD JavaScript client's handshake
// with 503::too_many_sessions and handshake advice; the client waits the
// advised interval, handshakes again and succeeds once the other session has
// left. The refusal shows in cometd_handshakes_refused_total.
func TestCometDClientRetriesAtSessionCap(t *testing.T) {
	requireNode(t)
	// maxInterval is long, so that the session holding the slot does not
	// expire while node starts on a loaded machine.
	b := startBroker(t, "COMETD_MAX_SESSIONS=1", "COMETD_MAX_INTERVAL_MS=120000")
	post := func(body string) []map[string]any {
		t.Helper()
		resp, err := http.Post(b.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out) != 1 {
			t.Fatalf("reply to %s: %v %v", body, out, err)
		}
		return out
	}
	hs := post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`)
	holder, _ := hs[0]["clientId"].(string)
	if hs[0]["successful"] != true || holder == "" {
		t.Fatalf("first handshake: %v", hs)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "cometd-session-cap.mjs", b.URL)
	cmd.Dir = filepath.Join(repoRoot(t), "test", "conformance")
	cmd.WaitDelay = 5 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type event struct {
		Event      string
		Successful bool
		Error      string
		Reconnect  string
		Interval   float64
	}
	events := make(chan event)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				select {
				case events <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	next := func(what string) event {
		t.Helper()
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("node exited before %s; stderr:\n%s", what, stderr.String())
			}
			return e
		case <-ctx.Done():
			t.Fatalf("no %s before the deadline; stderr:\n%s", what, stderr.String())
		}
		return event{}
	}

	refused := next("the refused handshake")
	if refused.Event != "handshake" || refused.Successful || refused.Error != "503::too_many_sessions" ||
		refused.Reconnect != "handshake" || refused.Interval < 2000 || refused.Interval >= 5000 {
		t.Fatalf("first handshake the client saw: %+v, want a 503::too_many_sessions refusal advising a handshake in 2-5 s", refused)
	}
	post(fmt.Sprintf(`[{"channel":"/meta/disconnect","clientId":%q}]`, holder))
	for {
		e := next("a successful handshake")
		if e.Event != "handshake" {
			t.Fatalf("client: %+v", e)
		}
		if e.Successful {
			break
		}
		if e.Error != "503::too_many_sessions" {
			t.Fatalf("retried handshake failed with %+v", e)
		}
	}
	for range events { // read the pipe to its end before Wait
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node: %v; stderr:\n%s", err, stderr.String())
	}
	_, metrics := get(t, b.Admin+"/metrics")
	if !strings.Contains(metrics, "\ncometd_handshakes_refused_total ") || strings.Contains(metrics, "\ncometd_handshakes_refused_total 0\n") {
		t.Errorf("/metrics does not count the refusal:\n%s", metrics)
	}
}
