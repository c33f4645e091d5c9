package policy

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestCompileDeterministic(t *testing.T) {
	p1 := SourcePolicy{Name: "ns/b", Rules: []Rule{
		{Name: "r", Effect: Allow, Actions: []Action{ActionPublish, ActionSubscribe, ActionPublish},
			Channels: []string{"/z/**", "/a/*", "/z/**"}, Principals: []string{"group:x", "anonymous"}},
	}}
	p2 := SourcePolicy{Name: "ns/a", Rules: []Rule{
		{Effect: Deny, Actions: []Action{ActionCreate}, Channels: []string{"/q"}, Principals: []string{"*"}},
	}}
	d1, errs := Compile([]SourcePolicy{p1, p2}, ClusterSettings{})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	// Reordered inputs and reordered lists compile to the same document.
	p1r := p1
	p1r.Rules = []Rule{{Name: "r", Effect: Allow, Actions: []Action{ActionSubscribe, ActionPublish},
		Channels: []string{"/a/*", "/z/**"}, Principals: []string{"anonymous", "group:x"}}}
	d2, errs := Compile([]SourcePolicy{p2, p1r}, ClusterSettings{})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	b1, _ := Marshal(d1)
	b2, _ := Marshal(d2)
	if string(b1) != string(b2) || d1.Version != d2.Version {
		t.Fatalf("not deterministic:\n%s\n%s", b1, b2)
	}
	if d1.Default != Deny {
		t.Fatalf("empty default compiled to %q, want deny", d1.Default)
	}
	if d1.Rules[0].Source != "ns/a" || d1.Rules[0].Name != "rule-0" || d1.Rules[1].Source != "ns/b" {
		t.Fatalf("rules not ordered by source or unnamed rule not named: %+v", d1.Rules)
	}
	if got := strings.Join(d1.Rules[1].Channels, ","); got != "/a/*,/z/**" {
		t.Fatalf("channels = %s", got)
	}
	// A semantic change changes the version.
	p1r.Rules[0].Effect = Deny
	d3, _ := Compile([]SourcePolicy{p2, p1r}, ClusterSettings{})
	if d3.Version == d1.Version {
		t.Fatal("version did not change with the content")
	}
	// The round trip through Parse keeps the version.
	parsed, err := Parse(b1)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Version != d1.Version || ComputeVersion(parsed) != d1.Version {
		t.Fatalf("parsed version %q, want %q", parsed.Version, d1.Version)
	}
}

func TestCompileErrorsNamePolicyAndRule(t *testing.T) {
	good := SourcePolicy{Name: "ns/good", Rules: []Rule{{Name: "ok", Effect: Allow, Actions: []Action{ActionSubscribe}, Channels: []string{"/ok"}, Principals: []string{"*"}}}}
	bad := SourcePolicy{Name: "ns/bad", Rules: []Rule{
		{Name: "fine", Effect: Allow, Actions: []Action{ActionSubscribe}, Channels: []string{"/fine"}, Principals: []string{"*"}},
		{Name: "broken", Effect: "maybe", Actions: []Action{"jump"}, Channels: []string{"/a/**/b", "/meta/**"}, Principals: []string{"robot:x"}},
	}}
	doc, errs := Compile([]SourcePolicy{bad, good}, ClusterSettings{Default: Allow})
	if len(doc.Rules) != 1 || doc.Rules[0].Source != "ns/good" {
		t.Fatalf("the bad policy must be left out whole, got rules %+v", doc.Rules)
	}
	if len(errs) != 5 {
		t.Fatalf("got %d errors, want 5: %v", len(errs), errs)
	}
	for _, e := range errs {
		var re *RuleError
		if !errors.As(e, &re) || re.Policy != "ns/bad" || re.Rule != "broken" || re.Index != 1 {
			t.Fatalf("error %v does not name ns/bad rule broken", e)
		}
		if !strings.Contains(e.Error(), "policy ns/bad, rule broken:") {
			t.Fatalf("message %q does not name the policy and rule", e)
		}
	}
	if _, err := NewACL(doc); err != nil {
		t.Fatalf("the document built from valid policies must be usable: %v", err)
	}

	_, errs = Compile([]SourcePolicy{good, good}, ClusterSettings{})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "two policies") {
		t.Fatalf("duplicate names: %v", errs)
	}
	_, errs = Compile(nil, ClusterSettings{Default: "maybe", Auth: Auth{Algorithm: "none", Keys: []Key{{File: "k"}}}})
	if len(errs) != 2 {
		t.Fatalf("bad cluster settings: %v", errs)
	}
	dupRules := SourcePolicy{Name: "ns/d", Rules: []Rule{good.Rules[0], good.Rules[0]}}
	if errs := ValidatePolicy(dupRules); len(errs) != 1 || !strings.Contains(errs[0].Error(), "already used") {
		t.Fatalf("duplicate rule names: %v", errs)
	}
}

func TestValidatePattern(t *testing.T) {
	re := regexp.MustCompile(PatternRegexp)
	cases := []struct {
		p  string
		ok bool
	}{
		{"/chat", true}, {"/chat/*", true}, {"/chat/**", true}, {"/**", true}, {"/*", true},
		{"/user/{sub}/**", true}, {"/t/{claim:tenant}/*", true}, {"/*/inbox", true},
		{"/a.b/c-d/e_f/~!$@()+=,:", true}, {"/service/x", true},
		{"", false}, {"chat", false}, {"/", false}, {"/chat/", false}, {"//chat", false},
		{"/a/**/b", false}, {"/a/***", false}, {"/a/b*", false}, {"/a/{sub}x", false},
		{"/a/{claim:}", false}, {"/a/{claim:a/b}", false}, {"/a/{other}", false},
		{"/meta", false}, {"/meta/**", false}, {"/meta/connect", false},
		{"/a/..", false}, {"/a/.", false}, {"/a/%2F", false}, {"/a b", false}, {"/ｃhat", false},
		{strings.Repeat("/a", MaxDepth+1), false}, {"/" + strings.Repeat("a", MaxPatternLength), false},
	}
	for _, c := range cases {
		err := ValidatePattern(c.p)
		if (err == nil) != c.ok {
			t.Errorf("ValidatePattern(%q) = %v, want ok=%v", c.p, err, c.ok)
		}
		// The exported regexp agrees, except for what it documents it cannot say.
		meta := strings.HasPrefix(c.p+"/", "/meta/")
		long := len(c.p) > MaxPatternLength || strings.Count(c.p, "/") > MaxDepth
		if !meta && !long && re.MatchString(c.p) != c.ok {
			t.Errorf("PatternRegexp on %q = %v, want %v", c.p, !c.ok, c.ok)
		}
	}
}

func TestValidatePrincipal(t *testing.T) {
	for _, p := range []string{"*", "anonymous", "authenticated", "user:bob", "user:https://idp/x|1", "group:ops"} {
		if err := ValidatePrincipal(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "anyone", "user:", "group:", "user:a b", "role:x", "Anonymous", "user:" + strings.Repeat("x", MaxPrincipalLength)} {
		if err := ValidatePrincipal(p); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestChannelRegexpAgreesWithParser(t *testing.T) {
	re := regexp.MustCompile(ChannelRegexp)
	for _, ch := range []string{"/a", "/a/b", "/a/*", "/a/**", "/**", "/a/*/b", "/a/", "", "/", "/a/..", "/a/%41", "/é", "/a/b c"} {
		if got, want := re.MatchString(ch), ValidateChannel(ch) == nil; got != want {
			t.Errorf("%q: regexp %v, parser %v", ch, got, want)
		}
	}
}

func TestParseDocument(t *testing.T) {
	doc, errs := Compile([]SourcePolicy{{Name: "n/p", Rules: []Rule{{Name: "r", Effect: Allow, Actions: []Action{ActionSubscribe}, Channels: []string{"/x"}, Principals: []string{"*"}}}}}, ClusterSettings{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	good, _ := Marshal(doc)
	cases := []struct {
		name, json, wantErr string
	}{
		{"unknown field", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","extra":1}`, "unknown field"},
		{"wrong apiVersion", `{"apiVersion":"v0","default":"deny"}`, "apiVersion"},
		{"no default", `{"apiVersion":"cometd.bayeux.dev/policy/v1"}`, "default"},
		{"trailing data", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny"} {}`, "trailing"},
		{"not json", `{"apiVersion":`, "parse"},
		{"stale version", strings.Replace(string(good), `"/x"`, `"/y"`, 1), "does not match"},
		{"bad rule", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","rules":[{"name":"r","source":"s","effect":"allow","actions":["subscribe"],"channels":["/a/**/b"],"principals":["*"]}]}`, "policy s, rule r"},
		{"auth without keys", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","auth":{"algorithm":"RS256"}}`, "key file"},
		{"auth alg none", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","auth":{"algorithm":"none","keys":[{"file":"k"}]}}`, "not supported"},
		{"key with file and dir", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","auth":{"algorithm":"HS256","keys":[{"file":"k","dir":"d"}]}}`, "exactly one"},
		{"key with neither", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","auth":{"algorithm":"HS256","keys":[{"id":"x"}]}}`, "exactly one"},
		{"negative leeway", `{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","auth":{"algorithm":"HS256","keys":[{"file":"k"}],"leewaySeconds":-1}}`, "negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.json))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Parse = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
	d, err := Parse([]byte(`{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"allow"}`))
	if err != nil || d.Version != ComputeVersion(d) || d.Version == "" {
		t.Fatalf("hand-written document: %v, version %q", err, d.Version)
	}
}

// FuzzParse: Parse never panics, and whatever it accepts compiles, re-renders
// and parses back to the same version.
func FuzzParse(f *testing.F) {
	doc, _ := Compile([]SourcePolicy{{Name: "n/p", Rules: []Rule{
		{Name: "r", Effect: Allow, Actions: []Action{ActionSubscribe, ActionHandshake}, Channels: []string{"/a/*", "/u/{sub}/**"}, Principals: []string{"*", "group:g"}},
	}}}, ClusterSettings{AllowAnonymous: true, Auth: Auth{Algorithm: ES256, Keys: []Key{{Dir: "k"}}}})
	b, _ := Marshal(doc)
	f.Add(b)
	f.Add([]byte(`{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"allow"}`))
	f.Add([]byte(`{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"deny","rules":[{"name":"x","effect":"deny","actions":["publish"],"channels":["/**"],"principals":["anonymous"]}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		if _, err := NewACL(d); err != nil {
			t.Fatalf("parsed but does not compile: %v", err)
		}
		out, err := Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		d2, err := Parse(out)
		if err != nil || d2.Version != d.Version {
			t.Fatalf("round trip: %v, %s vs %s", err, d2.Version, d.Version)
		}
	})
}
