package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
)

// APIVersion is the format version of a Document. A broker refuses a document
// with another apiVersion (and keeps the rules it enforces), so a change of
// meaning gets a new version.
const APIVersion = "cometd.bayeux.dev/policy/v1"

// ConfigMapKey is the key of the document in the cluster's policy ConfigMap,
// and so the file name under the directory where brokers mount it.
const ConfigMapKey = "policy.json"

// DefaultGroupsClaim is the token claim read for group membership when
// Auth.GroupsClaim is empty.
const DefaultGroupsClaim = "groups"

// Effect is what a rule does to the operations it matches, and what the
// document's default does to the operations no rule matches.
type Effect string

// Effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Action is an operation a client asks for.
type Action string

// Actions, in canonical order.
const (
	ActionHandshake Action = "handshake"
	ActionSubscribe Action = "subscribe"
	ActionPublish   Action = "publish"
	ActionCreate    Action = "create"
)

// Actions lists every action in canonical order.
var Actions = []Action{ActionHandshake, ActionSubscribe, ActionPublish, ActionCreate}

func (a Action) index() int {
	switch a {
	case ActionHandshake:
		return 0
	case ActionSubscribe:
		return 1
	case ActionPublish:
		return 2
	case ActionCreate:
		return 3
	}
	return -1
}

// Algorithm is a JWT signature algorithm (JWS "alg").
type Algorithm string

// Supported algorithms.
const (
	HS256 Algorithm = "HS256"
	RS256 Algorithm = "RS256"
	ES256 Algorithm = "ES256"
)

// Document is the compiled ACL: the content of the cluster's policy ConfigMap
// (key policy.json). See the package documentation for the format.
type Document struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Version is the content hash, ComputeVersion(doc). Empty in a hand-written
	// file means "compute it"; a non-empty value that does not match the content
	// makes the document invalid.
	Version string `json:"version,omitempty"`
	// Default applies to operations no rule matches. Required.
	Default Effect `json:"default"`
	// AllowAnonymous lets clients without a token handshake (they are then the
	// "anonymous" principal). False means a handshake needs a valid token.
	AllowAnonymous bool `json:"allowAnonymous,omitempty"`
	// Auth configures token verification. A zero Auth means no tokens are
	// accepted: only anonymous clients, if AllowAnonymous.
	Auth Auth `json:"auth,omitzero"`
	// Rules in deterministic order (by source, then as declared).
	Rules []Rule `json:"rules,omitempty"`
}

// Auth configures the verification of the JWT a client sends in ext.auth.token.
type Auth struct {
	// Algorithm is the only algorithm accepted; a token whose header names
	// another is refused. Empty means tokens are not accepted.
	Algorithm Algorithm `json:"algorithm,omitempty"`
	// Issuer, when set, must equal the token's iss claim.
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, must be the token's aud claim or one of its entries.
	// Empty means aud is not checked.
	Audience string `json:"audience,omitempty"`
	// Keys are the verification keys, read from files (mounted from a Secret, so
	// no key material is ever in the ConfigMap). Required when Algorithm is
	// set, unless JWKSURL is.
	Keys []Key `json:"keys,omitempty"`
	// JWKSURL, when set, is a JWK Set (RFC 7517) to take the keys from
	// instead (RS256 or ES256 only): fetched at load, refreshed every hour
	// and, at most every 5 minutes, when a token names a kid it lacks.
	JWKSURL string `json:"jwksURL,omitempty"`
	// LeewaySeconds is the clock skew tolerated on exp and nbf, in seconds.
	// Nil (the field absent) means DefaultLeeway; 0 means none: a token is
	// refused from the second after its exp. It must not be negative.
	LeewaySeconds *int `json:"leewaySeconds,omitempty"`
	// GroupsClaim names the claim holding the token's groups (a string or an
	// array of strings). Empty means DefaultGroupsClaim.
	GroupsClaim string `json:"groupsClaim,omitempty"`
}

// Key names one key file, or a directory of key files. Exactly one of File and
// Dir is set.
//
// For HS256 a file's bytes are the secret, exactly (no trimming), at least 32
// bytes. For RS256 and ES256 a file holds one or more PEM blocks: PUBLIC KEY
// (PKIX), RSA PUBLIC KEY (PKCS #1) or CERTIFICATE.
type Key struct {
	// File is the path of a key file; a relative path is relative to the
	// document's directory.
	File string `json:"file,omitempty"`
	// Dir is a directory whose every file not starting with "." is a key file
	// (in name order): the whole key Secret mounted as a volume, so keys can be
	// added to and removed from the Secret without a new document. Relative
	// like File.
	Dir string `json:"dir,omitempty"`
	// ID, when set, is the JWS "kid" of the key(s). Empty means, for a File,
	// no ID; for a Dir, each file's name without a ".pem" suffix. A token with
	// a kid is checked only against the keys of that ID when any key has it; a
	// token without a kid, or whose kid no key has, is checked against every key.
	ID string `json:"id,omitempty"`
}

// Rule grants or denies actions on channel patterns to principals.
type Rule struct {
	// Name identifies the rule within its source.
	Name string `json:"name"`
	// Source names the policy the rule comes from ("namespace/name" of the
	// ChannelPolicy), for errors and decisions.
	Source string `json:"source,omitempty"`
	// Effect is allow or deny.
	Effect Effect `json:"effect"`
	// Actions the rule applies to, at least one.
	Actions []Action `json:"actions"`
	// Channels are the channel patterns (see PatternRegexp). Required unless the
	// only action is handshake; handshake ignores them.
	Channels []string `json:"channels,omitempty"`
	// Principals the rule applies to, at least one (see PrincipalRegexp).
	Principals []string `json:"principals"`
}

// ComputeVersion returns the content hash of doc, ignoring doc.Version: the
// first 16 hex digits of the SHA-256 of its canonical JSON. The operator and the
// brokers both use it, so they agree on what "the latest version" is.
func ComputeVersion(doc Document) string {
	doc.Version = ""
	b, err := json.Marshal(doc)
	if err != nil { // a Document has only strings, ints, bools, slices and pointers to ints
		panic("policy: marshal document: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Marshal renders doc as indented JSON with its Version set, deterministically.
func Marshal(doc Document) ([]byte, error) {
	doc.Version = ComputeVersion(doc)
	return json.MarshalIndent(doc, "", "  ")
}

// Parse decodes a document, refusing unknown fields (a field this broker does
// not understand might be a restriction it would ignore), validates it, and
// fills in Version when it is empty.
func Parse(b []byte) (Document, error) {
	var doc Document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return Document{}, fmt.Errorf("policy: parse document: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Document{}, errors.New("policy: parse document: trailing data after the JSON object")
	}
	if err := ValidateDocument(doc); err != nil {
		return Document{}, err
	}
	if v := ComputeVersion(doc); doc.Version == "" {
		doc.Version = v
	} else if doc.Version != v {
		return Document{}, fmt.Errorf("policy: document version %q does not match its content (computed %q): edited by hand? clear the version field", doc.Version, v)
	}
	return doc, nil
}

// ValidateDocument reports everything wrong with doc, joined in one error.
func ValidateDocument(doc Document) error {
	var errs []error
	if doc.APIVersion != APIVersion {
		errs = append(errs, fmt.Errorf("apiVersion is %q, want %q", doc.APIVersion, APIVersion))
	}
	if doc.Default != Allow && doc.Default != Deny {
		errs = append(errs, fmt.Errorf("default is %q, want %q or %q", doc.Default, Allow, Deny))
	}
	if err := ValidateAuth(doc.Auth); err != nil {
		errs = append(errs, err)
	}
	for i, r := range doc.Rules {
		for _, err := range ValidateRule(r) {
			errs = append(errs, &RuleError{Policy: r.Source, Rule: r.Name, Index: i, Err: err})
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("policy: invalid document: %w", errors.Join(errs...))
}

// ValidateAuth reports what is wrong with an Auth (key files are not read).
func ValidateAuth(a Auth) error {
	switch a.Algorithm {
	case "":
		if len(a.Keys) > 0 || a.Issuer != "" || a.Audience != "" || a.JWKSURL != "" {
			return errors.New("auth: keys, jwksURL, issuer or audience set without an algorithm")
		}
	case HS256, RS256, ES256:
		switch {
		case a.JWKSURL != "" && len(a.Keys) > 0:
			return errors.New("auth: set keys or jwksURL, not both")
		case a.JWKSURL != "" && a.Algorithm == HS256:
			return errors.New("auth: a JWK Set holds public keys: use RS256 or ES256 with jwksURL")
		case a.JWKSURL != "":
			if u, err := url.Parse(a.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return fmt.Errorf("auth: jwksURL %q is not an http(s) URL", a.JWKSURL)
			}
		case len(a.Keys) == 0:
			return fmt.Errorf("auth: algorithm %s needs at least one key file or a jwksURL", a.Algorithm)
		}
		for i, k := range a.Keys {
			if (k.File == "") == (k.Dir == "") {
				return fmt.Errorf("auth: keys[%d] must have exactly one of file and dir", i)
			}
		}
	default:
		return fmt.Errorf("auth: algorithm %q is not supported (want %s, %s or %s)", a.Algorithm, HS256, RS256, ES256)
	}
	if a.LeewaySeconds != nil && *a.LeewaySeconds < 0 {
		return fmt.Errorf("auth: leewaySeconds must not be negative, got %d", *a.LeewaySeconds)
	}
	return nil
}

// ValidateRule reports every problem of one rule; each error names the field.
func ValidateRule(r Rule) []error {
	var errs []error
	if r.Effect != Allow && r.Effect != Deny {
		errs = append(errs, fmt.Errorf("effect is %q, want %q or %q", r.Effect, Allow, Deny))
	}
	if len(r.Actions) == 0 {
		errs = append(errs, errors.New("actions: at least one is required"))
	}
	onlyHandshake := true
	for _, a := range r.Actions {
		if a.index() < 0 {
			errs = append(errs, fmt.Errorf("actions: %q is not one of handshake, subscribe, publish, create", a))
		}
		if a != ActionHandshake {
			onlyHandshake = false
		}
	}
	if len(r.Channels) == 0 && !onlyHandshake {
		errs = append(errs, errors.New("channels: at least one pattern is required for subscribe, publish and create"))
	}
	for _, c := range r.Channels {
		if err := ValidatePattern(c); err != nil {
			errs = append(errs, fmt.Errorf("channels: %w", err))
		}
	}
	if len(r.Principals) == 0 {
		errs = append(errs, errors.New("principals: at least one is required"))
	}
	for _, p := range r.Principals {
		if err := ValidatePrincipal(p); err != nil {
			errs = append(errs, fmt.Errorf("principals: %w", err))
		}
	}
	return errs
}

// RuleError is a problem with one rule, naming its policy and rule.
type RuleError struct {
	// Policy is the source policy ("namespace/name").
	Policy string
	// Rule is the rule's name.
	Rule string
	// Index is the rule's position in its policy (or document).
	Index int
	// Err says what is wrong.
	Err error
}

func (e *RuleError) Error() string {
	name := e.Rule
	if name == "" {
		name = fmt.Sprintf("#%d", e.Index)
	}
	if e.Policy == "" {
		return fmt.Sprintf("rule %s: %v", name, e.Err)
	}
	return fmt.Sprintf("policy %s, rule %s: %v", e.Policy, name, e.Err)
}

func (e *RuleError) Unwrap() error { return e.Err }

// canonicalRule sorts and de-duplicates a rule's lists, so that reordering
// them does not change the version.
func canonicalRule(r Rule) Rule {
	acts := slices.Clone(r.Actions)
	slices.SortFunc(acts, func(a, b Action) int { return a.index() - b.index() })
	r.Actions = slices.Compact(acts)
	r.Channels = sortedSet(r.Channels)
	r.Principals = sortedSet(r.Principals)
	return r
}

func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}
