package policy

import (
	"fmt"
	"strconv"
	"time"
)

// Identity is who a client is, as established at handshake.
type Identity struct {
	// Subject is the token's sub claim; empty when anonymous.
	Subject string
	// Groups are taken from the token's groups claim (Auth.GroupsClaim).
	Groups []string
	// Claims are all of the token's claims, decoded from JSON (numbers as
	// json.Number). Nil when anonymous.
	Claims map[string]any
	// Authenticated is true when a valid token was presented.
	Authenticated bool
	// Expires is the token's exp: the session ends then unless the client
	// presents a fresh token. Zero when anonymous.
	Expires time.Time `json:",omitzero"`
}

// Anonymous is the identity of a client that presented no token.
var Anonymous = Identity{}

// Decision is the outcome of an evaluation.
type Decision struct {
	// Allowed says whether the operation may proceed.
	Allowed bool
	// Reason says why, in a few words (one of the Reason constants).
	Reason string
	// Rule and Source name the deciding rule; empty when the default, or a
	// built-in restriction, decided.
	Rule, Source string
}

// Reasons given in a Decision.
const (
	ReasonRuleAllow       = "allowed by rule"
	ReasonRuleDeny        = "denied by rule"
	ReasonDefaultAllow    = "allowed by default"
	ReasonDefaultDeny     = "denied by default"
	ReasonMeta            = "meta channels are reserved to the server"
	ReasonInvalidChannel  = "channel name outside the policy grammar"
	ReasonPublishWildcard = "cannot publish to a wildcard channel"
	ReasonAnonymous       = "anonymous clients are not allowed"
	ReasonUnknownAction   = "unknown action"
)

// rule is a compiled Rule.
type rule struct {
	name, source  string
	deny          bool
	anyone        bool // "*"
	anonymous     bool
	authenticated bool
	users         []string
	groups        []string
	patterns      [][]patSeg
	actions       [4]bool
}

// appliesTo reports whether id is one of the rule's principals.
func (r *rule) appliesTo(id *Identity) bool {
	if r.anyone {
		return true
	}
	if !id.Authenticated {
		return r.anonymous
	}
	if r.authenticated {
		return true
	}
	for _, u := range r.users {
		if u == id.Subject {
			return true
		}
	}
	for _, g := range r.groups {
		for _, h := range id.Groups {
			if g == h {
				return true
			}
		}
	}
	return false
}

// ruleIndex holds one action's rules, indexed by the first segment of their
// patterns: a channel whose first segment is literal can only be touched by the
// patterns under that literal and by those starting with a wildcard or template.
type ruleIndex struct {
	byFirst map[string][]idxPat
	generic []idxPat
	all     []idxPat // every pattern, for channels starting with a wildcard
}

type idxPat struct {
	r   *rule
	pat []patSeg
}

// ACL is a compiled, immutable Document, safe for concurrent use.
type ACL struct {
	doc            Document
	defaultAllow   bool
	allowAnonymous bool
	handshake      []*rule
	index          [4]ruleIndex // by Action.index(); [0] unused
}

// NewACL compiles doc for evaluation. It validates doc first.
func NewACL(doc Document) (*ACL, error) {
	if err := ValidateDocument(doc); err != nil {
		return nil, err
	}
	if doc.Version == "" {
		doc.Version = ComputeVersion(doc)
	}
	a := &ACL{doc: doc, defaultAllow: doc.Default == Allow, allowAnonymous: doc.AllowAnonymous}
	for i := range a.index {
		a.index[i].byFirst = map[string][]idxPat{}
	}
	for _, dr := range doc.Rules {
		r := &rule{name: dr.Name, source: dr.Source, deny: dr.Effect == Deny}
		for _, p := range dr.Principals {
			switch {
			case p == "*":
				r.anyone = true
			case p == "anonymous":
				r.anonymous = true
			case p == "authenticated":
				r.authenticated = true
			case len(p) > 5 && p[:5] == "user:":
				r.users = append(r.users, p[5:])
			case len(p) > 6 && p[:6] == "group:":
				r.groups = append(r.groups, p[6:])
			}
		}
		for _, c := range dr.Channels {
			segs, err := parsePattern(c)
			if err != nil { // ValidateDocument checked it
				return nil, fmt.Errorf("policy: rule %s: %w", dr.Name, err)
			}
			r.patterns = append(r.patterns, segs)
		}
		for _, act := range dr.Actions {
			r.actions[act.index()] = true
			if act == ActionHandshake {
				a.handshake = append(a.handshake, r)
				continue
			}
			ix := &a.index[act.index()]
			for _, p := range r.patterns {
				ip := idxPat{r: r, pat: p}
				ix.all = append(ix.all, ip)
				if p[0].kind == segLit {
					ix.byFirst[p[0].lit] = append(ix.byFirst[p[0].lit], ip)
				} else {
					ix.generic = append(ix.generic, ip)
				}
			}
		}
	}
	return a, nil
}

// Document returns the document the ACL was compiled from.
func (a *ACL) Document() Document { return a.doc }

// Version returns the document's version.
func (a *ACL) Version() string { return a.doc.Version }

// Evaluate decides whether id may perform action on channel.
//
//   - A deny rule that matches wins over any allow rule; when no rule matches,
//     the document's Default applies.
//   - Handshake: an anonymous identity is denied unless AllowAnonymous; then the
//     rules with the handshake action (their channels are ignored) and the
//     Default decide.
//   - Meta channels (/meta and below) are never under the rules' control:
//     subscribe, publish and create on them are denied here; the server handles
//     meta messages itself and never asks.
//   - channel must be in the policy grammar (ChannelRegexp), otherwise it is
//     denied: percent-encoded bytes, "." or ".." segments, empty segments, a
//     trailing slash or non-ASCII characters cannot slip past a rule.
//   - Publishing to a wildcard channel is denied.
//   - A wildcard channel (subscribe or create on "/a/*" or "/a/**") names a set
//     of channels, and is judged conservatively: it is denied when a deny rule
//     matches any channel of the set, and allowed by a rule only when one allow
//     pattern matches every channel of the set. So with only "/chat/public"
//     allowed, "/chat/*" and "/**" are denied.
//   - Template segments ({sub}, {claim:x}) take the identity's value, which
//     must be a valid literal segment. Otherwise (missing, empty, or holding '/',
//     '*', '%', non-ASCII...) an allow pattern does not match at all, and a deny
//     pattern treats the segment as "*", so a strange value never widens access.
func (a *ACL) Evaluate(id Identity, action Action, channel string) Decision {
	return a.evaluate(&id, action, channel)
}

func (a *ACL) evaluate(id *Identity, action Action, channel string) Decision {
	ai := action.index()
	if ai < 0 {
		return Decision{Reason: ReasonUnknownAction}
	}
	if action == ActionHandshake {
		return a.evalHandshake(id)
	}
	var buf [MaxDepth]string
	cs, ok := parseChannel(channel, &buf)
	if !ok {
		return Decision{Reason: ReasonInvalidChannel}
	}
	if cs.segs[0] == "meta" {
		return Decision{Reason: ReasonMeta}
	}
	if action == ActionPublish && cs.wild != segLit {
		return Decision{Reason: ReasonPublishWildcard}
	}
	ix := &a.index[ai]
	var allowBy *rule
	check := func(list []idxPat) *rule {
		for i := range list {
			ip := &list[i]
			if !ip.r.appliesTo(id) {
				continue
			}
			if ip.r.deny {
				if overlaps(ip.pat, id, &cs) {
					return ip.r
				}
			} else if allowBy == nil && covers(ip.pat, id, &cs) {
				allowBy = ip.r
			}
		}
		return nil
	}
	var deny *rule
	if cs.segs[0] == "*" || cs.segs[0] == "**" {
		deny = check(ix.all)
	} else {
		deny = check(ix.generic)
		if deny == nil {
			deny = check(ix.byFirst[cs.segs[0]])
		}
	}
	switch {
	case deny != nil:
		return Decision{Reason: ReasonRuleDeny, Rule: deny.name, Source: deny.source}
	case allowBy != nil:
		return Decision{Allowed: true, Reason: ReasonRuleAllow, Rule: allowBy.name, Source: allowBy.source}
	}
	return a.byDefault()
}

func (a *ACL) byDefault() Decision {
	if a.defaultAllow {
		return Decision{Allowed: true, Reason: ReasonDefaultAllow}
	}
	return Decision{Reason: ReasonDefaultDeny}
}

func (a *ACL) evalHandshake(id *Identity) Decision {
	if !id.Authenticated && !a.allowAnonymous {
		return Decision{Reason: ReasonAnonymous}
	}
	var allowBy *rule
	for _, r := range a.handshake {
		if !r.appliesTo(id) {
			continue
		}
		if r.deny {
			return Decision{Reason: ReasonRuleDeny, Rule: r.name, Source: r.source}
		}
		if allowBy == nil {
			allowBy = r
		}
	}
	if allowBy != nil {
		return Decision{Allowed: true, Reason: ReasonRuleAllow, Rule: allowBy.name, Source: allowBy.source}
	}
	return a.byDefault()
}

// resolve returns the effective kind and literal of pattern segment s for id.
// ok is false when an allow pattern cannot apply (an unusable template value);
// a deny pattern's unusable template becomes "*" instead.
func resolve(s *patSeg, id *Identity, deny bool) (kind segKind, lit string, ok bool) {
	if s.kind != segTmpl {
		return s.kind, s.lit, true
	}
	v, good := templateValue(s.claim, id)
	if good {
		return segLit, v, true
	}
	if deny {
		return segStar, "", true
	}
	return 0, "", false
}

// templateValue returns the identity's value for a template: the subject when
// claim is empty, else the claim, which must be a string or an integer. The
// value must be a valid literal segment.
func templateValue(claim string, id *Identity) (string, bool) {
	if !id.Authenticated {
		return "", false
	}
	var v string
	if claim == "" {
		v = id.Subject
	} else {
		switch c := id.Claims[claim].(type) {
		case string:
			v = c
		case interface{ String() string }: // json.Number
			v = c.String()
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return "", false
			}
		default:
			return "", false
		}
	}
	return v, validSegment(v)
}

// covers reports whether pattern p (a rule's, resolved for id) matches every
// channel named by cs. It is only asked for allow rules.
func covers(p []patSeg, id *Identity, cs *chanSet) bool {
	n := len(cs.segs)
	for i := range p {
		pk, plit, ok := resolve(&p[i], id, false)
		if !ok {
			return false
		}
		if pk == segDeep {
			return i < n // every channel of cs has at least n > i segments
		}
		if i >= n {
			return false
		}
		sk := segLit
		if i == n-1 {
			sk = cs.wild
		}
		switch sk {
		case segLit:
			if pk == segLit && plit != cs.segs[i] {
				return false
			}
		case segStar:
			if pk != segStar {
				return false
			}
		case segDeep:
			return false // cs also names deeper channels, which p cannot match
		}
	}
	return n == len(p)
}

// overlaps reports whether pattern p (resolved for id) matches at least one
// channel named by cs. It is only asked for deny rules.
func overlaps(p []patSeg, id *Identity, cs *chanSet) bool {
	n := len(cs.segs)
	for i := range p {
		pk, plit, _ := resolve(&p[i], id, true)
		if pk == segDeep {
			return i < n
		}
		if i >= n {
			return false
		}
		sk := segLit
		if i == n-1 {
			sk = cs.wild
		}
		if sk == segDeep {
			return true // "**" matches the rest of p, at least one segment
		}
		if sk == segLit && pk == segLit && plit != cs.segs[i] {
			return false
		}
	}
	return n == len(p)
}
