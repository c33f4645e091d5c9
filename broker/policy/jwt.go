package policy

import (
	"github.com/golang-jwt/jwt/v5"

	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
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
	// JWKS, when set, supplies the keys (a remote JWK Set, refreshed) in
	// place of Keys.
	JWKS JWKS
}

// JWKS supplies verification keys from a JWK Set (keyfunc.Keyfunc is one).
type JWKS interface {
	Keyfunc(token *jwt.Token) (any, error)
}

// Verifier checks JWTs (JWS compact serialization) against a fixed algorithm
// and key set. It is immutable and safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig
}

// NewVerifier validates cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Keys) == 0 && cfg.JWKS == nil {
		return nil, errors.New("policy: verifier: no keys")
	}
	if cfg.JWKS != nil && cfg.Algorithm == HS256 {
		return nil, errors.New("policy: verifier: a JWK Set holds public keys: use RS256 or ES256 with it")
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

// Verify checks token's form, algorithm, signature, exp, nbf, iss and aud
// (with github.com/golang-jwt/jwt/v5, restricted to the one configured
// algorithm), and returns the authenticated identity. The token must carry
// exp and a non-empty sub. Errors wrap one of the ErrToken values.
func (v *Verifier) Verify(token string) (Identity, error) {
	if len(token) > MaxTokenSize {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxTokenSize)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{string(v.cfg.Algorithm)}),
		jwt.WithLeeway(*v.cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.cfg.Now),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	claims := jwt.MapClaims{}
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, claims, v.keys)
	if err != nil {
		return Identity{}, v.tokenError(tok, claims, err)
	}
	if _, crit := tok.Header["crit"]; crit {
		return Identity{}, fmt.Errorf("%w: critical header extensions are not supported", ErrTokenMalformed)
	}
	return v.identity(claims)
}

// keys is the jwt.Keyfunc: the static keys that answer to the token's kid
// (all of them when it has none, or none answers to it), or the JWKS's.
func (v *Verifier) keys(tok *jwt.Token) (any, error) {
	if v.cfg.JWKS != nil {
		return v.cfg.JWKS.Keyfunc(tok)
	}
	kid, _ := tok.Header["kid"].(string)
	var set jwt.VerificationKeySet
	for _, k := range v.cfg.Keys {
		if kid != "" && k.ID == kid {
			set.Keys = append(set.Keys, k.Key)
		}
	}
	if len(set.Keys) == 0 {
		for _, k := range v.cfg.Keys {
			set.Keys = append(set.Keys, k.Key)
		}
	}
	return set, nil
}

// tokenError maps the library's errors onto the ErrToken values.
func (v *Verifier) tokenError(tok *jwt.Token, claims jwt.MapClaims, err error) error {
	if tok != nil && tok.Header != nil {
		if alg, _ := tok.Header["alg"].(string); alg != string(v.cfg.Algorithm) {
			return fmt.Errorf("%w: header says %q, only %s is configured", ErrTokenAlgorithm, alg, v.cfg.Algorithm)
		}
	}
	// A missing or mistyped iss or aud is as unacceptable as a wrong one.
	if errors.Is(err, jwt.ErrTokenInvalidClaims) {
		if _, ok := claims["exp"]; !ok {
			return fmt.Errorf("%w: no exp", ErrTokenClaims)
		}
		if iss, ok := claims["iss"].(string); v.cfg.Issuer != "" && (!ok || iss != v.cfg.Issuer) {
			return fmt.Errorf("%w: %q", ErrTokenIssuer, iss)
		}
		if aud, _ := claims.GetAudience(); v.cfg.Audience != "" && !slices.Contains(aud, v.cfg.Audience) {
			return fmt.Errorf("%w: want %q", ErrTokenAudience, v.cfg.Audience)
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: %v", ErrTokenSignature, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		exp, _ := claims.GetExpirationTime()
		if exp != nil {
			return fmt.Errorf("%w at %s", ErrTokenExpired, exp.UTC().Format(time.RFC3339))
		}
		return ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		nbf, _ := claims.GetNotBefore()
		if nbf != nil {
			return fmt.Errorf("%w before %s", ErrTokenNotYetValid, nbf.UTC().Format(time.RFC3339))
		}
		return ErrTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		iss, _ := claims.GetIssuer()
		return fmt.Errorf("%w: %q", ErrTokenIssuer, iss)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("%w: want %q", ErrTokenAudience, v.cfg.Audience)
	}
	return fmt.Errorf("%w: %v", ErrTokenClaims, err)
}

// identity builds the identity of verified claims: sub is required, groups
// come from the groups claim, exp becomes Expires.
func (v *Verifier) identity(c jwt.MapClaims) (Identity, error) {
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
	id := Identity{Subject: sub, Groups: groups, Claims: map[string]any(c), Authenticated: true}
	if exp, err := c.GetExpirationTime(); err == nil && exp != nil {
		id.Expires = exp.Time
	}
	return id, nil
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
