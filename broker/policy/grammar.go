package policy

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/cometd-operator/cometd-operator/broker/bayeux"
)

// The grammar of rule patterns, principals and channels. The operator puts the
// same expressions on the ChannelPolicy CRD as OpenAPI `pattern` markers, so the
// API server refuses what Compile would refuse. They are RE2 expressions (what
// the Kubernetes API server evaluates) with no look-around.
const (
	// SegmentCharClass is the character class of a literal channel segment:
	// ASCII letters and digits and the marks - _ . ~ ! $ @ ( ) + = , :
	// Everything else (%, /, *, spaces, quotes, non-ASCII) is outside the policy
	// grammar: a channel containing it is always denied while a policy is active.
	SegmentCharClass = `[A-Za-z0-9_.~!$@()+=,:-]`

	// SegmentRegexp matches one literal segment: one or more SegmentCharClass
	// characters, not only dots (so "." and ".." are refused).
	SegmentRegexp = `[A-Za-z0-9_.~!$@()+=,:-]*[A-Za-z0-9_~!$@()+=,:-][A-Za-z0-9_.~!$@()+=,:-]*`

	// TemplateRegexp matches one template segment: {sub} or {claim:<name>}. A
	// template is always a whole segment.
	TemplateRegexp = `\{sub\}|\{claim:[A-Za-z0-9_.-]+\}`

	// PatternRegexp matches a whole rule channel pattern: one or more segments,
	// each a literal, a template or "*", optionally ending in "/**". The API
	// server cannot express one more rule, which Compile checks: the first segment
	// must not be "meta" (use the CEL rule
	// `!(self == '/meta' || self.startsWith('/meta/'))`). Patterns are at most
	// MaxPatternLength bytes and MaxDepth segments.
	PatternRegexp = `^(/(` + SegmentRegexp + `|` + TemplateRegexp + `|\*))*(/(` + SegmentRegexp + `|` + TemplateRegexp + `|\*|\*\*))$`

	// PrincipalRegexp matches a principal: "*" (everyone, anonymous included),
	// "anonymous", "authenticated", "user:<subject>" or "group:<name>", where the
	// subject or name is one or more characters other than whitespace. Principals
	// are at most MaxPrincipalLength bytes.
	PrincipalRegexp = `^(\*|anonymous|authenticated|(user|group):\S+)$`

	// ChannelRegexp matches a channel name a client may use while a policy is
	// active: literal segments, optionally ending in "/*" or "/**".
	ChannelRegexp = `^(/` + SegmentRegexp + `)*(/(` + SegmentRegexp + `|\*|\*\*))$`
)

// Limits of the grammar.
const (
	// MaxDepth is the most segments a pattern or channel may have.
	MaxDepth = 32
	// MaxPatternLength is the longest rule pattern, in bytes.
	MaxPatternLength = 512
	// MaxChannelLength is the longest channel name evaluated; longer ones are denied.
	// It is the Bayeux grammar's bound.
	MaxChannelLength = bayeux.MaxChannelLength
	// MaxPrincipalLength is the longest principal, in bytes.
	MaxPrincipalLength = 256
	// MaxRulesPerPolicy bounds the rules of one source policy.
	MaxRulesPerPolicy = 256
)

var (
	patternRE   = regexp.MustCompile(PatternRegexp)
	principalRE = regexp.MustCompile(PrincipalRegexp)
)

// segment classes, kept in a table so checks need no regexp at evaluation time.
var segChar [256]bool

func init() {
	for c := 'a'; c <= 'z'; c++ {
		segChar[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		segChar[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		segChar[c] = true
	}
	for _, c := range "_.~!$@()+=,:-" {
		segChar[c] = true
	}
}

// validSegment reports whether s is a literal segment of the policy grammar.
func validSegment(s string) bool {
	if s == "" {
		return false
	}
	nonDot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !segChar[c] {
			return false
		}
		if c != '.' {
			nonDot = true
		}
	}
	return nonDot
}

type segKind uint8

const (
	segLit  segKind = iota // a literal segment
	segStar                // "*": exactly one segment
	segDeep                // "**": one or more segments (last only)
	segTmpl                // "{sub}" or "{claim:x}": a literal taken from the identity
)

// patSeg is one compiled segment of a rule pattern.
type patSeg struct {
	kind  segKind
	lit   string // segLit: the literal
	claim string // segTmpl: the claim name; "" means the subject
}

// ValidatePattern reports whether p is a valid rule channel pattern, with a
// message saying what is wrong.
func ValidatePattern(p string) error {
	_, err := parsePattern(p)
	return err
}

func parsePattern(p string) ([]patSeg, error) {
	if p == "" {
		return nil, fmt.Errorf("empty channel pattern")
	}
	if len(p) > MaxPatternLength {
		return nil, fmt.Errorf("channel pattern longer than %d bytes", MaxPatternLength)
	}
	if p[0] != '/' {
		return nil, fmt.Errorf("channel pattern %q must start with '/'", p)
	}
	parts := strings.Split(p[1:], "/")
	if len(parts) > MaxDepth {
		return nil, fmt.Errorf("channel pattern %q has more than %d segments", p, MaxDepth)
	}
	segs := make([]patSeg, 0, len(parts))
	for i, s := range parts {
		last := i == len(parts)-1
		switch {
		case s == "":
			return nil, fmt.Errorf("channel pattern %q has an empty segment", p)
		case s == "**":
			if !last {
				return nil, fmt.Errorf("channel pattern %q: \"**\" may only be the last segment", p)
			}
			segs = append(segs, patSeg{kind: segDeep})
		case s == "*":
			segs = append(segs, patSeg{kind: segStar})
		case s == "{sub}":
			segs = append(segs, patSeg{kind: segTmpl})
		case strings.HasPrefix(s, "{claim:") && strings.HasSuffix(s, "}"):
			name := s[len("{claim:") : len(s)-1]
			if !validClaimName(name) {
				return nil, fmt.Errorf("channel pattern %q: bad claim name %q in template (want letters, digits, '_', '.', '-')", p, name)
			}
			segs = append(segs, patSeg{kind: segTmpl, claim: name})
		case strings.ContainsAny(s, "{}"):
			return nil, fmt.Errorf("channel pattern %q: a template must be a whole segment, {sub} or {claim:<name>}, got %q", p, s)
		case strings.Contains(s, "*"):
			return nil, fmt.Errorf("channel pattern %q: '*' must be a whole segment, got %q", p, s)
		case !validSegment(s):
			return nil, fmt.Errorf("channel pattern %q: segment %q is not allowed (want %s characters, not only dots)", p, s, SegmentCharClass)
		default:
			segs = append(segs, patSeg{kind: segLit, lit: s})
		}
	}
	if segs[0].kind == segLit && segs[0].lit == "meta" {
		return nil, fmt.Errorf("channel pattern %q: meta channels are reserved to the server and cannot appear in a policy", p)
	}
	if !patternRE.MatchString(p) { // the exported grammar must agree with this parser
		return nil, fmt.Errorf("channel pattern %q does not match %s", p, PatternRegexp)
	}
	return segs, nil
}

func validClaimName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidatePrincipal reports whether p is a valid principal.
func ValidatePrincipal(p string) error {
	if len(p) > MaxPrincipalLength {
		return fmt.Errorf("principal longer than %d bytes", MaxPrincipalLength)
	}
	if !principalRE.MatchString(p) {
		return fmt.Errorf("principal %q is not one of \"*\", \"anonymous\", \"authenticated\", \"user:<subject>\", \"group:<name>\"", p)
	}
	return nil
}

// chanSet is a parsed channel name: the set of concrete channels it names. segs
// holds the segments; when wild is segStar or segDeep the last one is "*" or "**".
type chanSet struct {
	segs []string
	wild segKind // segLit: a concrete channel
}

// parseChannel splits a client-supplied channel name into buf. It accepts only
// the policy grammar (ChannelRegexp), which is the Bayeux grammar
// (bayeux.ParseChannel) narrowed: at most MaxDepth segments, each literal
// segment made of SegmentCharClass characters and not only dots. Anything
// else, including percent-encoded bytes, "." and ".." segments, empty segments,
// a trailing slash and non-ASCII characters, returns false. It does not
// allocate.
func parseChannel(ch string, buf *[MaxDepth]string) (chanSet, bool) {
	id, err := bayeux.ParseChannel(ch)
	if err != nil || id.Depth() > MaxDepth {
		return chanSet{}, false
	}
	wild := segLit
	switch {
	case id.IsWild():
		wild = segStar
	case id.IsDeepWild():
		wild = segDeep
	}
	segs := buf[:0] // Depth() <= MaxDepth: no growth
	rest := ch[1:]
	for {
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			break
		}
		if !validSegment(rest[:i]) {
			return chanSet{}, false // a literal outside the policy grammar
		}
		segs = append(segs, rest[:i])
		rest = rest[i+1:]
	}
	// The last segment: a literal, or the wildcard ParseChannel found.
	if wild == segLit && !validSegment(rest) {
		return chanSet{}, false
	}
	return chanSet{segs: append(segs, rest), wild: wild}, true
}

// ValidateChannel reports whether ch is a channel name the policy grammar
// accepts (a channel outside it is always denied while a policy is active).
func ValidateChannel(ch string) error {
	var buf [MaxDepth]string
	if _, ok := parseChannel(ch, &buf); !ok {
		return fmt.Errorf("channel %q is outside the policy grammar %s (at most %d segments, %d bytes)", ch, ChannelRegexp, MaxDepth, MaxChannelLength)
	}
	return nil
}
