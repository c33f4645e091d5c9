package policy

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// Token verification limits and defaults.
const (
	// DefaultLeeway is the clock skew tolerated on exp and nbf when none is set.
	DefaultLeeway = 30 * time.Second
	// MaxTokenSize is the longest token accepted, in bytes.
	MaxTokenSize = 16 << 10
	// MinHMACKeySize is the shortest HS256 secret accepted (RFC 7518 §3.2).
	MinHMACKeySize = 32
	// MinRSAKeyBits is the smallest RSA modulus accepted.
	MinRSAKeyBits = 2048
)

// Token errors; Verify wraps one of them with details.
var (
	ErrTokenMalformed   = errors.New("malformed token")
	ErrTokenAlgorithm   = errors.New("token algorithm not accepted")
	ErrTokenSignature   = errors.New("token signature invalid")
	ErrTokenExpired     = errors.New("token expired")
	ErrTokenNotYetValid = errors.New("token not yet valid")
	ErrTokenIssuer      = errors.New("token issuer not accepted")
	ErrTokenAudience    = errors.New("token audience not accepted")
	ErrTokenClaims      = errors.New("token claims invalid")
)

var b64 = base64.RawURLEncoding.Strict()

// VerifierKey is one verification key.
type VerifierKey struct {
	// ID is the JWS kid the key answers to; empty matches any token.
	ID string
	// Key is a []byte secret (HS256), an *rsa.PublicKey (RS256) or an
	// *ecdsa.PublicKey on P-256 (ES256).
	Key any
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Algorithm is the only algorithm accepted. Required.
	Algorithm Algorithm
	// Issuer, when set, must equal the token's iss. Empty means not checked.
	Issuer string
	// Audience, when set, must be the token's aud or one of its entries. Empty
	// means not checked.
	Audience string
	// Keys verify signatures; at least one, all of the Algorithm's type.
	Keys []VerifierKey
	// Leeway, when not nil, is the clock skew tolerated on exp and nbf; zero
	// means none. Nil means DefaultLeeway; negative is an error.
	Leeway *time.Duration
	// GroupsClaim names the groups claim. Empty means DefaultGroupsClaim.
	GroupsClaim string
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Verifier checks JWTs (JWS compact serialization) against a fixed algorithm
// and key set. It is immutable and safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig
}

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("policy: verifier: no keys")
	}
	for i, k := range cfg.Keys {
		if err := checkKey(cfg.Algorithm, k.Key); err != nil {
			return nil, fmt.Errorf("policy: verifier: key %d (id %q): %w", i, k.ID, err)
		}
	}
	leeway := DefaultLeeway
	if cfg.Leeway != nil {
		leeway = *cfg.Leeway
	}
	if leeway < 0 {
		return nil, fmt.Errorf("policy: verifier: negative leeway %v", leeway)
	}
	cfg.Leeway = &leeway
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Keys = append([]VerifierKey(nil), cfg.Keys...)
	return &Verifier{cfg: cfg}, nil
}

func checkKey(alg Algorithm, key any) error {
	switch alg {
	case HS256:
		k, ok := key.([]byte)
		if !ok {
			return fmt.Errorf("HS256 needs a []byte secret, got %T", key)
		}
		if len(k) < MinHMACKeySize {
			return fmt.Errorf("HS256 secret is %d bytes, at least %d required", len(k), MinHMACKeySize)
		}
	case RS256:
		k, ok := key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("RS256 needs an RSA public key, got %s", keyKind(key))
		}
		if k.N.BitLen() < MinRSAKeyBits {
			return fmt.Errorf("RSA key is %d bits, at least %d required", k.N.BitLen(), MinRSAKeyBits)
		}
	case ES256:
		k, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("ES256 needs an ECDSA public key, got %s", keyKind(key))
		}
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ES256 needs a P-256 key, got %s", k.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("algorithm %q is not supported (want %s, %s or %s)", alg, HS256, RS256, ES256)
	}
	return nil
}

func keyKind(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "an RSA key"
	case *ecdsa.PublicKey:
		return "an ECDSA key"
	case []byte:
		return "a secret"
	}
	return fmt.Sprintf("a %T", key)
}

// Algorithm returns the algorithm the verifier accepts.
func (v *Verifier) Algorithm() Algorithm { return v.cfg.Algorithm }

type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// Verify checks token's form, algorithm, signature, exp, nbf, iss and aud, and
// returns the authenticated identity. The token must carry exp and a non-empty
// sub. Errors wrap one of the ErrToken values.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > MaxTokenSize {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxTokenSize)
	}
	h64, rest, ok1 := strings.Cut(token, ".")
	p64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return Identity{}, fmt.Errorf("%w: want three dot-separated parts", ErrTokenMalformed)
	}
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	var hdr jwsHeader
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return Identity{}, fmt.Errorf("%w: header: %v", ErrTokenMalformed, err)
	}
	if hdr.Alg != string(v.cfg.Algorithm) {
		return Identity{}, fmt.Errorf("%w: header says %q, only %s is configured", ErrTokenAlgorithm, hdr.Alg, v.cfg.Algorithm)
	}
	if len(hdr.Crit) > 0 {
		return Identity{}, fmt.Errorf("%w: critical header extensions are not supported", ErrTokenMalformed)
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: signature: %v", ErrTokenMalformed, err)
	}
	if !v.verifySignature(token[:len(h64)+1+len(p64)], sig, hdr.Kid) {
		return Identity{}, ErrTokenSignature
	}
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: payload: %v", ErrTokenMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil || dec.More() {
		return Identity{}, fmt.Errorf("%w: payload is not one JSON object", ErrTokenMalformed)
	}
	return v.checkClaims(claims)
}

func (v *Verifier) verifySignature(input string, sig []byte, kid string) bool {
	digest := sha256.Sum256([]byte(input))
	byID := false
	if kid != "" {
		for _, k := range v.cfg.Keys {
			if k.ID == kid {
				byID = true
				break
			}
		}
	}
	for _, k := range v.cfg.Keys {
		if byID && k.ID != kid {
			continue
		}
		switch key := k.Key.(type) {
		case []byte:
			m := hmac.New(sha256.New, key)
			m.Write([]byte(input))
			if hmac.Equal(m.Sum(nil), sig) {
				return true
			}
		case *rsa.PublicKey:
			if rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig) == nil {
				return true
			}
		case *ecdsa.PublicKey:
			// JWS (RFC 7518 §3.4): R and S as 32-byte big-endian integers, concatenated.
			if len(sig) != 64 {
				continue
			}
			r := new(big.Int).SetBytes(sig[:32])
			s := new(big.Int).SetBytes(sig[32:])
			if ecdsa.Verify(key, digest[:], r, s) {
				return true
			}
		}
	}
	return false
}

func (v *Verifier) checkClaims(c map[string]any) (Identity, error) {
	now := v.cfg.Now()
	nowSec := float64(now.UnixNano()) / 1e9
	leeway := v.cfg.Leeway.Seconds()

	exp, ok, err := numericClaim(c, "exp")
	if err != nil {
		return Identity{}, err
	}
	if !ok {
		return Identity{}, fmt.Errorf("%w: no exp", ErrTokenClaims)
	}
	if nowSec > exp+leeway {
		return Identity{}, fmt.Errorf("%w at %s", ErrTokenExpired, secondsToTime(exp).UTC().Format(time.RFC3339))
	}
	nbf, ok, err := numericClaim(c, "nbf")
	if err != nil {
		return Identity{}, err
	}
	if ok && nowSec < nbf-leeway {
		return Identity{}, fmt.Errorf("%w before %s", ErrTokenNotYetValid, secondsToTime(nbf).UTC().Format(time.RFC3339))
	}
	if v.cfg.Issuer != "" {
		if iss, _ := c["iss"].(string); iss != v.cfg.Issuer {
			return Identity{}, fmt.Errorf("%w: %q", ErrTokenIssuer, iss)
		}
	}
	if v.cfg.Audience != "" && !hasAudience(c["aud"], v.cfg.Audience) {
		return Identity{}, fmt.Errorf("%w: want %q", ErrTokenAudience, v.cfg.Audience)
	}
	sub, _ := c["sub"].(string)
	if sub == "" {
		return Identity{}, fmt.Errorf("%w: no sub", ErrTokenClaims)
	}
	var groups []string
	switch g := c[v.cfg.GroupsClaim].(type) {
	case string:
		if g != "" {
			groups = []string{g}
		}
	case []any:
		for _, e := range g {
			if s, ok := e.(string); ok && s != "" {
				groups = append(groups, s)
			}
		}
	}
	return Identity{Subject: sub, Groups: groups, Claims: c, Authenticated: true}, nil
}

func numericClaim(c map[string]any, name string) (float64, bool, error) {
	raw, present := c[name]
	if !present {
		return 0, false, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return 0, false, fmt.Errorf("%w: %s is not a number", ErrTokenClaims, name)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false, fmt.Errorf("%w: %s is not a usable number", ErrTokenClaims, name)
	}
	return f, true, nil
}

func secondsToTime(s float64) time.Time {
	if s > 1e11 || s < -1e11 {
		return time.Unix(int64(math.Copysign(1e11, s)), 0)
	}
	return time.Unix(int64(s), 0)
}

func hasAudience(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// ParsePublicKeys decodes every PEM block of data: PUBLIC KEY (PKIX), RSA
// PUBLIC KEY (PKCS #1) or CERTIFICATE (its public key; the certificate is a
// key container only, its validity is not checked). Other block types and
// trailing text are an error, so a private key put there by mistake is
// reported rather than silently skipped.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PUBLIC KEY block %d: %w", len(keys), err)
			}
			keys = append(keys, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("RSA PUBLIC KEY block %d: %w", len(keys), err)
			}
			keys = append(keys, k)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("CERTIFICATE block %d: %w", len(keys), err)
			}
			keys = append(keys, cert.PublicKey)
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("data that is not a PEM block")
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block")
	}
	return keys, nil
}
