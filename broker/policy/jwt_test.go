package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC)

// testKeys are generated once per test binary.
type testKeys struct {
	hmac        []byte
	rsa, rsa2   *rsa.PrivateKey
	ec, ec2     *ecdsa.PrivateKey
	ecP384      *ecdsa.PrivateKey
	rsaPEM      []byte // PKIX public key
	rsaPKCS1PEM []byte
	ecPEM       []byte
}

var (
	keysOnce sync.Once
	keys     testKeys
)

func getKeys(t testing.TB) *testKeys {
	t.Helper()
	keysOnce.Do(func() {
		keys.hmac = []byte("0123456789abcdef0123456789abcdef-test-secret")
		var err error
		must := func(e error) {
			if e != nil {
				panic(e)
			}
		}
		keys.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		keys.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keys.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		keys.ecP384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		der, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
		must(err)
		keys.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		keys.rsaPKCS1PEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&keys.rsa2.PublicKey)})
		der, err = x509.MarshalPKIXPublicKey(&keys.ec.PublicKey)
		must(err)
		keys.ecPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	})
	return &keys
}

func enc(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// sign makes a JWS compact token; key is []byte, *rsa.PrivateKey or *ecdsa.PrivateKey.
func sign(t testing.TB, alg string, key any, header, claims map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range header {
		h[k] = v
	}
	input := enc(h) + "." + enc(claims)
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	switch k := key.(type) {
	case nil:
	case []byte:
		m := hmac.New(sha256.New, k)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case *rsa.PrivateKey:
		var err error
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest[:])
		if err != nil {
			t.Fatal(err)
		}
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, digest[:])
		if err != nil {
			t.Fatal(err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		sig = make([]byte, 2*size)
		r.FillBytes(sig[:size])
		s.FillBytes(sig[size:])
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func claims(over map[string]any) map[string]any {
	c := map[string]any{
		"sub": "alice", "iss": "https://idp.test", "aud": "chat",
		"exp": testNow.Add(time.Hour).Unix(), "nbf": testNow.Add(-time.Minute).Unix(),
		"groups": []string{"staff", "ops"}, "tenant": "acme",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func newTestVerifier(t testing.TB, alg Algorithm, ks ...VerifierKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Algorithm: alg, Issuer: "https://idp.test", Audience: "chat",
		Keys: ks, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerify(t *testing.T) {
	k := getKeys(t)
	hs := newTestVerifier(t, HS256, VerifierKey{Key: k.hmac})
	rs := newTestVerifier(t, RS256, VerifierKey{ID: "new", Key: &k.rsa.PublicKey}, VerifierKey{ID: "old", Key: &k.rsa2.PublicKey})
	es := newTestVerifier(t, ES256, VerifierKey{Key: &k.ec.PublicKey}, VerifierKey{Key: &k.ec2.PublicKey})

	rsaPubDER := x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey)
	cases := []struct {
		name    string
		v       *Verifier
		token   string
		wantErr error // nil: valid
	}{
		{"valid HS256", hs, sign(t, "HS256", k.hmac, nil, claims(nil)), nil},
		{"valid RS256", rs, sign(t, "RS256", k.rsa, nil, claims(nil)), nil},
		{"valid RS256 rotated key by kid", rs, sign(t, "RS256", k.rsa2, map[string]any{"kid": "old"}, claims(nil)), nil},
		{"valid RS256 rotated key without kid", rs, sign(t, "RS256", k.rsa2, nil, claims(nil)), nil},
		{"valid RS256 unknown kid tries all", rs, sign(t, "RS256", k.rsa, map[string]any{"kid": "other"}, claims(nil)), nil},
		{"valid ES256", es, sign(t, "ES256", k.ec, nil, claims(nil)), nil},
		{"valid ES256 second key", es, sign(t, "ES256", k.ec2, nil, claims(nil)), nil},
		{"aud array", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"aud": []string{"other", "chat"}})), nil},
		{"expired within leeway", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()})), nil},
		{"fractional exp", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": float64(testNow.Unix()) + 100.5})), nil},

		{"expired", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), ErrTokenExpired},
		{"no exp", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": nil})), ErrTokenClaims},
		{"exp is a string", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": "tomorrow"})), ErrTokenClaims},
		{"not yet valid", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"nbf": testNow.Add(time.Hour).Unix()})), ErrTokenNotYetValid},
		{"wrong issuer", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"iss": "https://evil"})), ErrTokenIssuer},
		{"no issuer", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"iss": nil})), ErrTokenIssuer},
		{"wrong audience", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"aud": "billing"})), ErrTokenAudience},
		{"wrong audience array", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"aud": []string{"billing"}})), ErrTokenAudience},
		{"no audience", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"aud": nil})), ErrTokenAudience},
		{"no sub", hs, sign(t, "HS256", k.hmac, nil, claims(map[string]any{"sub": nil})), ErrTokenClaims},
		{"wrong HMAC key", hs, sign(t, "HS256", []byte("another-secret-another-secret-another"), nil, claims(nil)), ErrTokenSignature},
		{"wrong RSA key", rs, sign(t, "RS256", mustRSA(t), nil, claims(nil)), ErrTokenSignature},
		{"kid names a key that did not sign", rs, sign(t, "RS256", k.rsa, map[string]any{"kid": "old"}, claims(nil)), ErrTokenSignature},
		{"wrong EC key", es, sign(t, "ES256", mustEC(t), nil, claims(nil)), ErrTokenSignature},
		{"alg none", hs, sign(t, "none", nil, nil, claims(nil)), ErrTokenAlgorithm},
		{"alg None", hs, sign(t, "None", nil, nil, claims(nil)), ErrTokenAlgorithm},
		{"alg none on RS256", rs, sign(t, "none", nil, nil, claims(nil)), ErrTokenAlgorithm},
		{"alg hs256 lower case", hs, sign(t, "hs256", k.hmac, nil, claims(nil)), ErrTokenAlgorithm},
		// The classic confusion: the RSA public key used as an HMAC secret.
		{"HS256 with RSA public key PEM as secret", rs, sign(t, "HS256", k.rsaPEM, nil, claims(nil)), ErrTokenAlgorithm},
		{"HS256 with RSA public key DER as secret", rs, sign(t, "HS256", rsaPubDER, nil, claims(nil)), ErrTokenAlgorithm},
		{"HS256 with EC public key PEM as secret", es, sign(t, "HS256", k.ecPEM, nil, claims(nil)), ErrTokenAlgorithm},
		{"RS256 on an HS256 verifier", hs, sign(t, "RS256", k.rsa, nil, claims(nil)), ErrTokenAlgorithm},
		{"ES384 on an ES256 verifier", es, sign(t, "ES384", k.ecP384, nil, claims(nil)), ErrTokenAlgorithm},
		{"ES256 with ASN.1 DER signature", es, asn1ES256(t, k.ec), ErrTokenSignature},
		{"crit header", hs, sign(t, "HS256", k.hmac, map[string]any{"crit": []string{"exp"}}, claims(nil)), ErrTokenMalformed},
		{"empty", hs, "", ErrTokenMalformed},
		{"two parts", hs, "a.b", ErrTokenMalformed},
		{"four parts", hs, sign(t, "HS256", k.hmac, nil, claims(nil)) + ".x", ErrTokenMalformed},
		{"padded base64", hs, padded(sign(t, "HS256", k.hmac, nil, claims(nil))), ErrTokenMalformed},
		{"header not json", hs, base64.RawURLEncoding.EncodeToString([]byte("{")) + ".e30.", ErrTokenMalformed},
		{"huge", hs, strings.Repeat("a", MaxTokenSize+1), ErrTokenMalformed},
		{"payload tampered", hs, tamper(sign(t, "HS256", k.hmac, nil, claims(nil)), claims(map[string]any{"sub": "root"})), ErrTokenSignature},
		{"payload array", hs, signRaw(t, k.hmac, `{"alg":"HS256"}`, `[1]`), ErrTokenMalformed},
		// The library reads the first object; this one has no exp.
		{"payload two objects", hs, signRaw(t, k.hmac, `{"alg":"HS256"}`, `{"sub":"a"}{"sub":"b"}`), ErrTokenClaims},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := c.v.Verify(c.token)
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !id.Authenticated || id.Subject != "alice" {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, c.wantErr)
			}
			if id.Authenticated {
				t.Fatal("a refused token gave an authenticated identity")
			}
		})
	}
}

func TestVerifyIdentity(t *testing.T) {
	k := getKeys(t)
	v, err := NewVerifier(VerifierConfig{Algorithm: HS256, Keys: []VerifierKey{{Key: k.hmac}}, GroupsClaim: "roles",
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(sign(t, "HS256", k.hmac, nil, claims(map[string]any{"roles": []any{"a", 7, "b", ""}})))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(id.Groups, ",") != "a,b" || id.Claims["tenant"] != "acme" {
		t.Fatalf("identity = %+v", id)
	}
	id, err = v.Verify(sign(t, "HS256", k.hmac, nil, claims(map[string]any{"roles": "solo"})))
	if err != nil || len(id.Groups) != 1 || id.Groups[0] != "solo" {
		t.Fatalf("string groups claim: %+v %v", id, err)
	}
}

func TestNewVerifierRefusesMismatchedKeys(t *testing.T) {
	k := getKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  VerifierConfig
	}{
		{"no keys", VerifierConfig{Algorithm: HS256}},
		{"short secret", VerifierConfig{Algorithm: HS256, Keys: []VerifierKey{{Key: []byte("short")}}}},
		{"RSA key for HS256", VerifierConfig{Algorithm: HS256, Keys: []VerifierKey{{Key: &k.rsa.PublicKey}}}},
		{"secret for RS256", VerifierConfig{Algorithm: RS256, Keys: []VerifierKey{{Key: k.hmac}}}},
		{"EC key for RS256", VerifierConfig{Algorithm: RS256, Keys: []VerifierKey{{Key: &k.ec.PublicKey}}}},
		{"small RSA", VerifierConfig{Algorithm: RS256, Keys: []VerifierKey{{Key: &small.PublicKey}}}},
		{"P-384 for ES256", VerifierConfig{Algorithm: ES256, Keys: []VerifierKey{{Key: &k.ecP384.PublicKey}}}},
		{"alg none", VerifierConfig{Algorithm: "none", Keys: []VerifierKey{{Key: k.hmac}}}},
		{"negative leeway", VerifierConfig{Algorithm: HS256, Keys: []VerifierKey{{Key: k.hmac}}, Leeway: new(-time.Second)}},
	}
	for _, c := range cases {
		if _, err := NewVerifier(c.cfg); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rsa.pem", append(append([]byte{}, k.rsaPEM...), k.rsaPKCS1PEM...))
	write("ec.pem", k.ecPEM)
	write("secret", k.hmac)
	write("priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))
	write("junk.pem", append(append([]byte{}, k.ecPEM...), "junk"...))

	got, err := LoadKeys(Auth{Algorithm: RS256, Keys: []Key{{File: "rsa.pem", ID: "r"}}}, dir)
	if err != nil || len(got) != 2 || got[0].ID != "r" {
		t.Fatalf("RSA keys: %v %v", got, err)
	}
	v, err := NewVerifier(VerifierConfig{Algorithm: RS256, Keys: got, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	for _, pk := range []*rsa.PrivateKey{k.rsa, k.rsa2} {
		if _, err := v.Verify(sign(t, "RS256", pk, nil, claims(nil))); err != nil {
			t.Fatalf("loaded key does not verify: %v", err)
		}
	}
	if got, err := LoadKeys(Auth{Algorithm: HS256, Keys: []Key{{File: filepath.Join(dir, "secret")}}}, "/nonexistent"); err != nil || string(got[0].Key.([]byte)) != string(k.hmac) {
		t.Fatalf("HMAC secret: %v %v", got, err)
	}
	for _, bad := range []struct {
		alg  Algorithm
		file string
	}{{RS256, "ec.pem"}, {ES256, "rsa.pem"}, {RS256, "secret"}, {ES256, "priv.pem"}, {ES256, "junk.pem"}, {ES256, "missing.pem"}} {
		if _, err := LoadKeys(Auth{Algorithm: bad.alg, Keys: []Key{{File: bad.file}}}, dir); err == nil {
			t.Errorf("LoadKeys(%s, %s) accepted", bad.alg, bad.file)
		}
	}
}

func mustRSA(t testing.TB) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustEC(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// asn1ES256 signs with the ASN.1 DER encoding some libraries wrongly use.
func asn1ES256(t testing.TB, k *ecdsa.PrivateKey) string {
	input := enc(map[string]any{"alg": "ES256"}) + "." + enc(claims(nil))
	digest := sha256.Sum256([]byte(input))
	sig, err := ecdsa.SignASN1(rand.Reader, k, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func signRaw(t testing.TB, key []byte, header, payload string) string {
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	m := hmac.New(sha256.New, key)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func padded(tok string) string {
	parts := strings.Split(tok, ".")
	return parts[0] + "." + parts[1] + "." + base64.URLEncoding.EncodeToString(mustDecode(parts[2]))
}

func mustDecode(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func tamper(tok string, c map[string]any) string {
	parts := strings.Split(tok, ".")
	return parts[0] + "." + enc(c) + "." + parts[2]
}

// FuzzVerify feeds arbitrary tokens to an HS256 verifier: it must never panic,
// and it must accept nothing but the tokens the test signed.
func FuzzVerify(f *testing.F) {
	k := getKeys(f)
	v := newTestVerifier(f, HS256, VerifierKey{Key: k.hmac})
	valid := map[string]bool{}
	for _, c := range []map[string]any{claims(nil), claims(map[string]any{"aud": []string{"chat"}})} {
		tok := sign(f, "HS256", k.hmac, nil, c)
		valid[tok] = true
		f.Add(tok)
	}
	f.Add(sign(f, "none", nil, nil, claims(nil)))
	f.Add(sign(f, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-time.Hour).Unix()})))
	f.Add(signRaw(f, k.hmac, `{"alg":"HS256"}`, `[1]`))
	f.Add("")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.AAAA")
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err == nil && !valid[tok] {
			t.Fatalf("accepted a token nobody signed: %q -> %+v", tok, id)
		}
		if err != nil && id.Authenticated {
			t.Fatalf("error %v with an authenticated identity", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := getKeys(b)
	for _, c := range []struct {
		alg Algorithm
		key any
		pub any
	}{{HS256, k.hmac, k.hmac}, {RS256, k.rsa, &k.rsa.PublicKey}, {ES256, k.ec, &k.ec.PublicKey}} {
		v := newTestVerifier(b, c.alg, VerifierKey{Key: c.pub})
		tok := sign(b, string(c.alg), c.key, nil, claims(nil))
		b.Run(string(c.alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Leeway: nil is DefaultLeeway, an explicit zero is no skew at all, on both
// exp and nbf.
func TestVerifyLeeway(t *testing.T) {
	k := getKeys(t)
	expired5s := sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-5 * time.Second).Unix()}))
	early5s := sign(t, "HS256", k.hmac, nil, claims(map[string]any{"nbf": testNow.Add(5 * time.Second).Unix()}))
	cases := []struct {
		name           string
		leeway         *time.Duration
		expired, early error
	}{
		{"default", nil, nil, nil},
		{"zero", new(time.Duration(0)), ErrTokenExpired, ErrTokenNotYetValid},
		{"4s", new(4 * time.Second), ErrTokenExpired, ErrTokenNotYetValid},
		{"6s", new(6 * time.Second), nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewVerifier(VerifierConfig{Algorithm: HS256, Keys: []VerifierKey{{Key: k.hmac}}, Leeway: c.leeway,
				Now: func() time.Time { return testNow }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(expired5s); !errors.Is(err, c.expired) {
				t.Errorf("token expired 5 s ago: error %v, want %v", err, c.expired)
			}
			if _, err := v.Verify(early5s); !errors.Is(err, c.early) {
				t.Errorf("token valid in 5 s: error %v, want %v", err, c.early)
			}
		})
	}
}

// End to end through the document a broker reads: "leewaySeconds": 0 in
// policy.json is zero skew, and no leewaySeconds is DefaultLeeway.
func TestDocumentLeewayZero(t *testing.T) {
	k := getKeys(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "secret"), k.hmac, 0o600); err != nil {
		t.Fatal(err)
	}
	expired5s := sign(t, "HS256", k.hmac, nil, claims(map[string]any{"exp": testNow.Add(-5 * time.Second).Unix()}))
	cases := []struct {
		name    string
		leeway  *int
		inJSON  string // must appear in policy.json; "" means no leewaySeconds at all
		wantErr error
	}{
		{"absent is the default", nil, "", nil},
		{"explicit zero", new(0), `"leewaySeconds": 0`, ErrTokenExpired},
		{"explicit 30", new(30), `"leewaySeconds": 30`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			auth := Auth{Algorithm: HS256, Keys: []Key{{File: "secret"}}, LeewaySeconds: c.leeway}
			b := docBytes(t, ClusterSettings{Default: Allow, Auth: auth})
			if c.inJSON == "" && bytes.Contains(b, []byte("leewaySeconds")) || !bytes.Contains(b, []byte(c.inJSON)) {
				t.Fatalf("policy.json does not carry the leeway as %q:\n%s", c.inJSON, b)
			}
			path := filepath.Join(dir, "policy.json")
			writeAtomic(t, path, b)
			p, err := LoadFile(path, func() time.Time { return testNow })
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := p.Handshake(expired5s); !errors.Is(err, c.wantErr) {
				t.Fatalf("token expired 5 s ago: error %v, want %v", err, c.wantErr)
			}
		})
	}
}

// Issuer and audience are checked only when configured: empty accepts any
// iss and aud (or none); set, a token must carry the configured value.
func TestVerifyIssuerAudienceOptional(t *testing.T) {
	k := getKeys(t)
	newV := func(iss, aud string) *Verifier {
		v, err := NewVerifier(VerifierConfig{Algorithm: HS256, Issuer: iss, Audience: aud, Keys: []VerifierKey{{Key: k.hmac}},
			Now: func() time.Time { return testNow }})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	open, onlyIss, onlyAud := newV("", ""), newV("https://idp.test", ""), newV("", "chat")
	cases := []struct {
		name    string
		v       *Verifier
		over    map[string]any
		wantErr error
	}{
		{"unset: any issuer", open, map[string]any{"iss": "https://anyone"}, nil},
		{"unset: no issuer", open, map[string]any{"iss": nil}, nil},
		{"unset: any audience", open, map[string]any{"aud": "billing"}, nil},
		{"unset: audience array", open, map[string]any{"aud": []string{"x", "y"}}, nil},
		{"unset: no audience", open, map[string]any{"aud": nil}, nil},
		{"issuer set: match, any audience", onlyIss, map[string]any{"aud": "billing"}, nil},
		{"issuer set: mismatch", onlyIss, map[string]any{"iss": "https://evil"}, ErrTokenIssuer},
		{"issuer set: absent", onlyIss, map[string]any{"iss": nil}, ErrTokenIssuer},
		{"issuer set: not a string", onlyIss, map[string]any{"iss": 7}, ErrTokenIssuer},
		{"audience set: match, any issuer", onlyAud, map[string]any{"iss": "https://anyone"}, nil},
		{"audience set: mismatch", onlyAud, map[string]any{"aud": "billing"}, ErrTokenAudience},
		{"audience set: absent", onlyAud, map[string]any{"aud": nil}, ErrTokenAudience},
		{"audience set: prefix only", onlyAud, map[string]any{"aud": "chatty"}, ErrTokenAudience},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.v.Verify(sign(t, "HS256", k.hmac, nil, claims(c.over)))
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, c.wantErr)
			}
		})
	}
}
