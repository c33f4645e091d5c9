package policy

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jwksServer serves a JWK Set of RSA public keys by kid, counting fetches.
type jwksServer struct {
	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	fetches atomic.Int32
}

func (j *jwksServer) set(kid string, k *rsa.PublicKey) {
	j.mu.Lock()
	j.keys = map[string]*rsa.PublicKey{kid: k}
	j.mu.Unlock()
}

func (j *jwksServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	j.fetches.Add(1)
	j.mu.Lock()
	defer j.mu.Unlock()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range j.keys {
		set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
			"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes())})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// A policy whose auth names a JWK Set verifies tokens with its keys, picks up
// a rotated key when a token names a kid it lacks, and refuses tokens signed
// by keys the set does not hold, HS256 tokens made with a public key as the
// secret (algorithm confusion) and alg none.
func TestPolicyWithJWKS(t *testing.T) {
	k := getKeys(t)
	js := &jwksServer{}
	js.set("k1", &k.rsa.PublicKey)
	srv := httptest.NewServer(js)
	t.Cleanup(srv.Close)
	doc := `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"allow","auth":{"algorithm":"RS256","issuer":"https://idp.test","audience":"chat","jwksURL":"` + srv.URL + `"}}`
	p, err := NewPolicy(mustParse(t, doc), PolicyConfig{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(tok string) error { _, _, err := p.Handshake(tok); return err }
	if err := hs(sign(t, "RS256", k.rsa, map[string]any{"kid": "k1"}, claims(nil))); err != nil {
		t.Fatalf("a token signed by the set's key: %v", err)
	}
	// The issuer rotates to a new key.
	js.set("k2", &k.rsa2.PublicKey)
	if err := hs(sign(t, "RS256", k.rsa2, map[string]any{"kid": "k2"}, claims(nil))); err != nil {
		t.Fatalf("a token signed by the rotated key: %v", err)
	}
	for name, tok := range map[string]string{
		"a key not in the set":                sign(t, "RS256", k.rsa, map[string]any{"kid": "k2"}, claims(nil)),
		"alg none":                            sign(t, "none", nil, map[string]any{"kid": "k2"}, claims(nil)),
		"HS256 with the public key as secret": sign(t, "HS256", []byte(js.modulus("k2")), map[string]any{"kid": "k2"}, claims(nil)),
	} {
		if err := hs(tok); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrTokenSignature) && !errors.Is(err, ErrTokenAlgorithm) {
			t.Errorf("%s: %v, want a signature or algorithm error", name, err)
		}
	}
	before := js.fetches.Load()
	// A policy reloaded with the same URL shares the set: no new fetch.
	if _, err := NewPolicy(mustParse(t, doc), PolicyConfig{}); err != nil {
		t.Fatal(err)
	}
	if js.fetches.Load() != before {
		t.Fatal("reloading the policy fetched the JWK Set again")
	}
	// A URL that does not serve a set is a policy that does not load.
	if _, err := NewPolicy(mustParse(t, `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"allow","auth":{"algorithm":"RS256","jwksURL":"http://127.0.0.1:1/jwks"}}`), PolicyConfig{}); err == nil {
		t.Fatal("a policy whose JWK Set cannot be fetched loaded")
	}
}

func mustParse(t *testing.T, doc string) Document {
	t.Helper()
	d, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (j *jwksServer) modulus(kid string) []byte {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.keys[kid].N.Bytes()
}

func TestValidateAuthJWKS(t *testing.T) {
	for _, tc := range []struct {
		a    Auth
		want string
	}{
		{Auth{Algorithm: HS256, JWKSURL: "https://idp/jwks"}, "public keys"},
		{Auth{Algorithm: RS256, JWKSURL: "https://idp/jwks", Keys: []Key{{File: "k"}}}, "not both"},
		{Auth{Algorithm: RS256, JWKSURL: "file:///etc/passwd"}, "not an http(s) URL"},
		{Auth{JWKSURL: "https://idp/jwks"}, "without an algorithm"},
		{Auth{Algorithm: ES256}, "key file or a jwksURL"},
	} {
		if err := ValidateAuth(tc.a); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateAuth(%+v) = %v, want %q", tc.a, err, tc.want)
		}
	}
	if err := ValidateAuth(Auth{Algorithm: ES256, JWKSURL: "https://idp.example/.well-known/jwks.json"}); err != nil {
		t.Errorf("a valid JWKS auth: %v", err)
	}
}
