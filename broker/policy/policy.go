package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Handshake errors from Policy.Authenticate.
var (
	// ErrAnonymousNotAllowed: no token, and the document does not allow anonymous clients.
	ErrAnonymousNotAllowed = errors.New("a token is required")
	// ErrTokensNotAccepted: a token was sent, but the document configures no verification.
	ErrTokensNotAccepted = errors.New("tokens are not accepted: no auth configured")
)

// PolicyConfig configures NewPolicy.
type PolicyConfig struct {
	// BaseDir resolves relative key file paths. Empty means the current directory.
	BaseDir string
	// Now is the clock for token checks. Nil means time.Now.
	Now func() time.Time
}

// Policy is a loaded document: its compiled ACL and its token verifier. It is
// immutable and safe for concurrent use.
type Policy struct {
	acl      *ACL
	verifier *Verifier // nil when the document accepts no tokens
}

// Leeway is the clock skew the policy tolerates on token times (0 when it
// accepts no tokens).
func (p *Policy) Leeway() time.Duration {
	if p == nil || p.verifier == nil {
		return 0
	}
	return *p.verifier.cfg.Leeway
}

// NewPolicy compiles doc and loads its key files.
func NewPolicy(doc Document, cfg PolicyConfig) (*Policy, error) {
	acl, err := NewACL(doc)
	if err != nil {
		return nil, err
	}
	if doc.Auth.Algorithm == "" {
		return &Policy{acl: acl}, nil
	}
	if doc.Auth.JWKSURL != "" {
		return newPolicy(acl, nil, cfg)
	}
	keys, err := LoadKeys(doc.Auth, cfg.BaseDir)
	if err != nil {
		return nil, err
	}
	return newPolicy(acl, keys, cfg)
}

func newPolicy(acl *ACL, keys []VerifierKey, cfg PolicyConfig) (*Policy, error) {
	var jwks JWKS
	if u := acl.doc.Auth.JWKSURL; u != "" {
		var err error
		if jwks, err = remoteJWKS(u); err != nil {
			return nil, err
		}
	}
	a := acl.doc.Auth
	var leeway *time.Duration
	if a.LeewaySeconds != nil {
		d := time.Duration(*a.LeewaySeconds) * time.Second
		leeway = &d
	}
	v, err := NewVerifier(VerifierConfig{
		Algorithm:   a.Algorithm,
		Issuer:      a.Issuer,
		Audience:    a.Audience,
		Keys:        keys,
		Leeway:      leeway,
		GroupsClaim: a.GroupsClaim,
		Now:         cfg.Now,
		JWKS:        jwks,
	})
	if err != nil {
		return nil, err
	}
	return &Policy{acl: acl, verifier: v}, nil
}

// LoadFile reads, validates and loads the document at path; relative key files
// are resolved against path's directory.
func LoadFile(path string, now func() time.Time) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	doc, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return NewPolicy(doc, PolicyConfig{BaseDir: filepath.Dir(path), Now: now})
}

// Version returns the version of the enforced document.
func (p *Policy) Version() string { return p.acl.doc.Version }

// Document returns the enforced document.
func (p *Policy) Document() Document { return p.acl.doc }

// ACL returns the compiled rules.
func (p *Policy) ACL() *ACL { return p.acl }

// Evaluate decides whether id may perform action on channel (see ACL.Evaluate).
func (p *Policy) Evaluate(id Identity, action Action, channel string) Decision {
	return p.acl.evaluate(&id, action, channel)
}

// Authenticate turns the token of a handshake (ext.auth.token; "" when absent)
// into an identity: Anonymous when there is no token and the document allows
// anonymous clients, the token's identity when it verifies, and an error
// otherwise. It does not apply handshake rules: call Evaluate with
// ActionHandshake on the identity, or use Handshake.
func (p *Policy) Authenticate(token string) (Identity, error) {
	if token == "" {
		if p.acl.allowAnonymous {
			return Anonymous, nil
		}
		return Identity{}, ErrAnonymousNotAllowed
	}
	if p.verifier == nil {
		return Identity{}, ErrTokensNotAccepted
	}
	return p.verifier.Verify(token)
}

// Handshake authenticates token and applies the handshake rules. err is set
// when authentication failed; otherwise the decision says whether the
// identity may handshake.
func (p *Policy) Handshake(token string) (Identity, Decision, error) {
	id, err := p.Authenticate(token)
	if err != nil {
		return Identity{}, Decision{Reason: err.Error()}, err
	}
	return id, p.acl.evalHandshake(&id), nil
}

// Subscription is one channel subscription a broker holds for a session.
type Subscription struct {
	// SessionID is the session's clientId.
	SessionID string
	// Identity is the session's identity, as established at handshake.
	Identity Identity
	// Channel is the subscribed channel or wildcard pattern.
	Channel string
}

// Revocation is a subscription the policy no longer allows, with the decision
// that refused it.
type Revocation struct {
	Subscription
	Decision Decision
}

// Recheck returns the subscriptions p forbids, in input order. After a reload
// the broker passes its subscriptions and removes the ones returned, telling
// each client why.
func (p *Policy) Recheck(subs []Subscription) []Revocation {
	var out []Revocation
	for i := range subs {
		s := &subs[i]
		if d := p.acl.evaluate(&s.Identity, ActionSubscribe, s.Channel); !d.Allowed {
			out = append(out, Revocation{Subscription: *s, Decision: d})
		}
	}
	return out
}
