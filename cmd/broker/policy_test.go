package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
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
	if err := os.WriteFile(cfgPath, []byte("policyFile: "+policyPath+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := brokertest.Start(t, brokertest.Binary(t, "./cmd/broker", false), "policy", []string{"--config", cfgPath})
	bayeuxURL, adminURL := b.URL, b.Admin
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
	testutil.Eventually(t, 30*time.Second, "the broker to enforce policy version "+v2, func(context.Context) (bool, string) {
		got := statusPolicyVersion(t, adminURL)
		return got == v2, "it enforces " + got
	})
	if _, err := c.Subscribe(ctx, "/secret/plans", func(*client.Message) {}); err != nil {
		t.Fatalf("subscribe /secret/plans after the reload allowed it: %v", err)
	}
	if c.ClientID() != id {
		t.Errorf("session did not survive the reload: clientId %s became %s", id, c.ClientID())
	}
}
