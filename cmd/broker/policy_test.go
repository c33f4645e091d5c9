package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/broker/policy"
)

// writePolicy compiles rules into a policy document and replaces path atomically,
// as a ConfigMap volume update does.
func writePolicy(t *testing.T, path string, rules ...policy.Rule) string {
	t.Helper()
	doc, errs := policy.Compile([]policy.SourcePolicy{{Name: "default/test", Rules: rules}},
		policy.ClusterSettings{Default: "deny", AllowAnonymous: true})
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	b, err := policy.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return doc.Version
}

var addrRE = regexp.MustCompile(`addr=(\S+)`)

// startBroker builds and runs the broker binary with the given config file and
// returns its Bayeux URL and admin base URL.
func startBroker(t *testing.T, cfgPath string) (bayeuxURL, adminURL string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build broker: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan [2]string, 1)
	go func() {
		var b, a string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			t.Log("broker: " + line)
			m := addrRE.FindStringSubmatch(line)
			switch {
			case m != nil && strings.Contains(line, "serving bayeux"):
				b = m[1]
			case m != nil && strings.Contains(line, "serving admin"):
				a = m[1]
			}
			if b != "" && a != "" {
				found <- [2]string{b, a}
				b, a = "", ""
			}
		}
	}()
	select {
	case addrs := <-found:
		return "http://" + addrs[0] + "/cometd", "http://" + addrs[1]
	case <-time.After(30 * time.Second):
		t.Fatal("broker did not report its listeners within 30s")
	}
	return "", ""
}

func statusPolicyVersion(t *testing.T, adminURL string) string {
	t.Helper()
	resp, err := http.Get(adminURL + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode /status: %v", err)
	}
	return st.PolicyVersion
}

// The broker enforces its policy file, reports the version in /status, and picks
// up a new version live: connected sessions survive and the new rules apply.
func TestBrokerEnforcesAndReloadsPolicyFile(t *testing.T) {
	dir := t.TempDir()
	policyPath := filepath.Join(dir, "policy.json")
	everyone := []string{"*"}
	handshake := policy.Rule{Name: "hs", Effect: "allow", Actions: []policy.Action{"handshake"}, Principals: everyone}
	public := policy.Rule{Name: "public", Effect: "allow", Actions: []policy.Action{"subscribe", "create"},
		Channels: []string{"/public/**"}, Principals: everyone}
	secret := policy.Rule{Name: "secret", Effect: "allow", Actions: []policy.Action{"subscribe", "create"},
		Channels: []string{"/secret/**"}, Principals: everyone}
	v1 := writePolicy(t, policyPath, handshake, public)
	cfgPath := filepath.Join(dir, "broker.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadminListen: 127.0.0.1:0\npolicyFile: %s\n", policyPath)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	bayeuxURL, adminURL := startBroker(t, cfgPath)
	if got := statusPolicyVersion(t, adminURL); got != v1 {
		t.Fatalf("/status policyVersion = %q, want %q", got, v1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.NewClient(client.Config{URL: bayeuxURL})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Handshake(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	id := c.ClientID()
	if _, err := c.Subscribe(ctx, "/public/news", func(*client.Message) {}); err != nil {
		t.Fatalf("subscribe /public/news (allowed): %v", err)
	}
	_, err = c.Subscribe(ctx, "/secret/plans", func(*client.Message) {})
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("subscribe /secret/plans (denied) = %v, want a 403 error", err)
	}

	v2 := writePolicy(t, policyPath, handshake, public, secret)
	deadline := time.Now().Add(30 * time.Second)
	for statusPolicyVersion(t, adminURL) != v2 {
		if time.Now().After(deadline) {
			t.Fatalf("broker still enforces %q, want %q 30s after the file changed", statusPolicyVersion(t, adminURL), v2)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if _, err := c.Subscribe(ctx, "/secret/plans", func(*client.Message) {}); err != nil {
		t.Fatalf("subscribe /secret/plans after the reload allowed it: %v", err)
	}
	if c.ClientID() != id {
		t.Errorf("session did not survive the reload: clientId %s became %s", id, c.ClientID())
	}
}
