package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/jsclient"
)

var tokenSecret = []byte("tokens-test-secret-of-at-least-32-bytes!")

// hs256 signs a token for sub that expires at exp.
func hs256(sub string, exp time.Time) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(map[string]any{"alg": "HS256", "typ": "JWT"}) + "." + enc(map[string]any{"sub": sub, "exp": exp.Unix()})
	m := hmac.New(sha256.New, tokenSecret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// The broker binary with a policy that requires tokens (no leeway), and the
// CometD JavaScript client: a session ends when its token expires and the
// client's handshake with the expired token is refused; a client that sends
// a fresh token with a connect keeps its session and its messages past the
// first token's expiry, and the connect replies tell it the new expiry.
func TestTokenExpiryAndRefreshWithCometDJS(t *testing.T) {
	jsclient.NodeModules(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), tokenSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := 0
	everyone := []string{"*"}
	doc, errs := policy.Compile([]policy.SourcePolicy{{Name: "default/tokens", Rules: []policy.Rule{
		{Name: "hs", Effect: "allow", Actions: []policy.Action{"handshake"}, Principals: []string{"authenticated"}},
		{Name: "chat", Effect: "allow", Actions: []policy.Action{"subscribe", "publish", "create"}, Channels: []string{"/chat/**"}, Principals: everyone},
	}}}, policy.ClusterSettings{Default: "deny", Auth: policy.Auth{Algorithm: policy.HS256, Keys: []policy.Key{{File: "secret"}}, LeewaySeconds: &zero}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	b, err := policy.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policyPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "broker.yaml")
	// Connects held 1 s, so that a fresh token goes out soon after it is set.
	if err := os.WriteFile(cfgPath, []byte("policyFile: "+policyPath+"\ntimeoutMs: 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	br := brokertest.Start(t, brokertest.Binary(t, "./cmd/broker", false), "tokens", []string{"--config", cfgPath})

	for _, transport := range []string{"long-polling", "websocket"} {
		t.Run(transport, func(t *testing.T) {
			soon := time.Now().Add(4 * time.Second).Truncate(time.Second)
			later := time.Now().Add(time.Hour).Truncate(time.Second)
			expiring := jsclient.Start(t, "cometd", br.URL, transport, "token="+hs256("alice", soon))
			kept := jsclient.Start(t, "cometd", br.URL, transport, "token="+hs256("bob", soon))
			kept.Subscribe("/chat/room")
			kept.Send(map[string]any{"op": "refresh", "token": hs256("bob", later)})
			kept.Wait(func(e jsclient.Event) bool { return e.Ev == "auth" && e.Expires == later.Unix() }, "the new expiry in a connect reply")
			expiring.Wait(func(e jsclient.Event) bool { return e.Ev == "auth" && e.Expires == soon.Unix() }, "the expiry in a connect reply")
			// The first token expires: its session ends, and handshaking
			// again with it is refused.
			expiring.Wait(func(e jsclient.Event) bool {
				return e.Ev == "meta-error" && e.Channel == "/meta/handshake"
			}, "the expired client's handshake to be refused")
			if time.Now().Before(soon) {
				t.Fatal("a session ended before its token expired")
			}
			id := fmt.Sprintf("after-%s", transport)
			kept.Publish("/chat/room", id)
			kept.WaitMessage(id)
			if n := kept.Handshakes(); n != 1 {
				t.Fatalf("the client with a fresh token handshook %d times", n)
			}
		})
	}
}
