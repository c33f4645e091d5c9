package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SourcePolicy is one declared policy (a ChannelPolicy object) as the operator
// hands it to Compile.
type SourcePolicy struct {
	// Name identifies the policy, conventionally "namespace/name". Required and
	// unique among the inputs of one Compile.
	Name string
	// Rules as declared. Rule.Source is ignored (Compile sets it to Name); an
	// empty Rule.Name becomes "rule-<index>".
	Rules []Rule
}

// ClusterSettings are the cluster-wide parts of a Document.
type ClusterSettings struct {
	// Default applies when no rule matches. Empty means Deny.
	Default Effect
	// AllowAnonymous lets clients without a token handshake.
	AllowAnonymous bool
	// Auth configures token verification (see Auth). Key files are paths inside
	// the broker pod, where the operator mounts the key Secret.
	Auth Auth
}

// Compile builds the document for one cluster from its policies.
//
// Each policy is validated as a whole (ValidatePolicy); a policy with any error
// is left out entirely, and its errors (each a *RuleError or a *PolicyError
// naming the policy) are returned, so the operator can set that policy's
// Accepted condition to False while the valid policies still apply. Beware that
// leaving out a policy of deny rules widens access: an operator that prefers to
// fail closed keeps the previous document when errs is not empty. Invalid
// cluster settings are returned as errors too, and the returned document then
// carries them unchanged (ValidateDocument will refuse it).
//
// The result is deterministic: policies are ordered by name, rules keep their
// declared order, and each rule's actions, channels and principals are sorted
// and de-duplicated. Its Version is set with ComputeVersion.
func Compile(inputs []SourcePolicy, cluster ClusterSettings) (Document, []error) {
	doc := Document{
		APIVersion:     APIVersion,
		Default:        cluster.Default,
		AllowAnonymous: cluster.AllowAnonymous,
		Auth:           cluster.Auth,
	}
	if doc.Default == "" {
		doc.Default = Deny
	}
	var errs []error
	if doc.Default != Allow && doc.Default != Deny {
		errs = append(errs, fmt.Errorf("cluster default is %q, want %q or %q", doc.Default, Allow, Deny))
	}
	if err := ValidateAuth(doc.Auth); err != nil {
		errs = append(errs, err)
	}
	doc.Auth.Keys = slices.Clone(doc.Auth.Keys)

	sorted := slices.Clone(inputs)
	slices.SortStableFunc(sorted, func(a, b SourcePolicy) int { return strings.Compare(a.Name, b.Name) })
	for i, p := range sorted {
		if i > 0 && sorted[i-1].Name == p.Name {
			errs = append(errs, &PolicyError{Policy: p.Name, Err: errors.New("two policies have this name")})
			continue
		}
		if perrs := ValidatePolicy(p); len(perrs) > 0 {
			errs = append(errs, perrs...)
			continue
		}
		for j, r := range p.Rules {
			r.Source = p.Name
			if r.Name == "" {
				r.Name = fmt.Sprintf("rule-%d", j)
			}
			doc.Rules = append(doc.Rules, canonicalRule(r))
		}
	}
	doc.Version = ComputeVersion(doc)
	return doc, errs
}

// ValidatePolicy reports every problem of one source policy, each naming the
// policy and the rule; nil means the policy is accepted. The operator uses it
// for the ChannelPolicy's Accepted condition.
func ValidatePolicy(p SourcePolicy) []error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, &PolicyError{Err: errors.New("policy has no name")})
	}
	if len(p.Rules) > MaxRulesPerPolicy {
		errs = append(errs, &PolicyError{Policy: p.Name, Err: fmt.Errorf("%d rules, at most %d allowed", len(p.Rules), MaxRulesPerPolicy)})
	}
	seen := make(map[string]int, len(p.Rules))
	for i, r := range p.Rules {
		if r.Name != "" {
			if j, dup := seen[r.Name]; dup {
				errs = append(errs, &RuleError{Policy: p.Name, Rule: r.Name, Index: i,
					Err: fmt.Errorf("name already used by rule #%d", j)})
			}
			seen[r.Name] = i
		}
		for _, err := range ValidateRule(r) {
			errs = append(errs, &RuleError{Policy: p.Name, Rule: r.Name, Index: i, Err: err})
		}
	}
	return errs
}

// PolicyError is a problem with a whole source policy.
type PolicyError struct {
	// Policy is the source policy's name.
	Policy string
	// Err says what is wrong.
	Err error
}

func (e *PolicyError) Error() string { return fmt.Sprintf("policy %s: %v", e.Policy, e.Err) }

func (e *PolicyError) Unwrap() error { return e.Err }
