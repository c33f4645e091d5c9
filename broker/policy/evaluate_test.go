package policy

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

func mustACL(t testing.TB, def Effect, anon bool, rules ...Rule) *ACL {
	t.Helper()
	doc, errs := Compile([]SourcePolicy{{Name: "ns/p", Rules: rules}}, ClusterSettings{Default: def, AllowAnonymous: anon})
	if len(errs) > 0 {
		t.Fatalf("compile: %v", errs)
	}
	a, err := NewACL(doc)
	if err != nil {
		t.Fatalf("NewACL: %v", err)
	}
	return a
}

func allow(name string, acts []Action, chans []string, principals ...string) Rule {
	return Rule{Name: name, Effect: Allow, Actions: acts, Channels: chans, Principals: principals}
}

func deny(name string, acts []Action, chans []string, principals ...string) Rule {
	return Rule{Name: name, Effect: Deny, Actions: acts, Channels: chans, Principals: principals}
}

var (
	sub     = []Action{ActionSubscribe}
	pub     = []Action{ActionPublish}
	subPub  = []Action{ActionSubscribe, ActionPublish}
	allActs = []Action{ActionSubscribe, ActionPublish, ActionCreate}
	alice   = Identity{Subject: "alice", Groups: []string{"staff"}, Authenticated: true,
		Claims: map[string]any{"sub": "alice", "tenant": "acme", "num": json.Number("42"), "frac": json.Number("1.5"), "bad": "a/b"}}
	bob = Identity{Subject: "bob", Authenticated: true, Claims: map[string]any{"sub": "bob"}}
)

type evalCase struct {
	name    string
	id      Identity
	action  Action
	channel string
	want    bool
	reason  string // optional
}

func runCases(t *testing.T, a *ACL, cases []evalCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := a.Evaluate(c.id, c.action, c.channel)
			if d.Allowed != c.want {
				t.Fatalf("Evaluate(%s, %s, %q) = %+v, want allowed=%v", c.id.Subject, c.action, c.channel, d, c.want)
			}
			if c.reason != "" && d.Reason != c.reason {
				t.Fatalf("Evaluate(%s, %s, %q) reason = %q, want %q", c.id.Subject, c.action, c.channel, d.Reason, c.reason)
			}
		})
	}
}

// Only /chat/public is allowed: every attempt to reach more must fail.
func TestEvaluateOnlyChatPublic(t *testing.T) {
	a := mustACL(t, Deny, true, allow("public", allActs, []string{"/chat/public"}, "*"))
	runCases(t, a, []evalCase{
		{"exact subscribe", Anonymous, ActionSubscribe, "/chat/public", true, ReasonRuleAllow},
		{"exact publish", Anonymous, ActionPublish, "/chat/public", true, ReasonRuleAllow},
		{"sibling", Anonymous, ActionSubscribe, "/chat/private", false, ReasonDefaultDeny},
		{"child", Anonymous, ActionSubscribe, "/chat/public/x", false, ReasonDefaultDeny},
		{"parent", Anonymous, ActionSubscribe, "/chat", false, ReasonDefaultDeny},
		{"subscribe /**", Anonymous, ActionSubscribe, "/**", false, ReasonDefaultDeny},
		{"subscribe /*", Anonymous, ActionSubscribe, "/*", false, ReasonDefaultDeny},
		{"subscribe /chat/*", Anonymous, ActionSubscribe, "/chat/*", false, ReasonDefaultDeny},
		{"subscribe /chat/**", Anonymous, ActionSubscribe, "/chat/**", false, ReasonDefaultDeny},
		{"subscribe /chat/public/*", Anonymous, ActionSubscribe, "/chat/public/*", false, ReasonDefaultDeny},
		{"create /chat/*", Anonymous, ActionCreate, "/chat/*", false, ReasonDefaultDeny},
		{"publish /chat/*", Anonymous, ActionPublish, "/chat/*", false, ReasonPublishWildcard},
		{"publish /meta/handshake", Anonymous, ActionPublish, "/meta/handshake", false, ReasonMeta},
		{"publish /meta/subscribe", alice, ActionPublish, "/meta/subscribe", false, ReasonMeta},
		{"publish /meta/*", Anonymous, ActionPublish, "/meta/*", false, ReasonMeta},
		{"publish /meta", Anonymous, ActionPublish, "/meta", false, ReasonMeta},
		{"subscribe /meta/connect", Anonymous, ActionSubscribe, "/meta/connect", false, ReasonMeta},
		// encoded and malformed names
		{"percent-encoded slash", Anonymous, ActionSubscribe, "/chat%2Fpublic", false, ReasonInvalidChannel},
		{"percent-encoded segment", Anonymous, ActionSubscribe, "/chat/%70ublic", false, ReasonInvalidChannel},
		{"percent-encoded star", Anonymous, ActionSubscribe, "/chat/%2A", false, ReasonInvalidChannel},
		{"dot-dot", Anonymous, ActionSubscribe, "/chat/public/../private", false, ReasonInvalidChannel},
		{"dot", Anonymous, ActionSubscribe, "/chat/./public", false, ReasonInvalidChannel},
		{"empty segment", Anonymous, ActionSubscribe, "/chat//public", false, ReasonInvalidChannel},
		{"trailing slash", Anonymous, ActionSubscribe, "/chat/public/", false, ReasonInvalidChannel},
		{"double leading slash", Anonymous, ActionSubscribe, "//chat/public", false, ReasonInvalidChannel},
		{"no leading slash", Anonymous, ActionSubscribe, "chat/public", false, ReasonInvalidChannel},
		{"empty", Anonymous, ActionSubscribe, "", false, ReasonInvalidChannel},
		{"root", Anonymous, ActionSubscribe, "/", false, ReasonInvalidChannel},
		{"fullwidth letter", Anonymous, ActionSubscribe, "/chat/ｐublic", false, ReasonInvalidChannel},
		{"cyrillic a", Anonymous, ActionSubscribe, "/chаt/public", false, ReasonInvalidChannel},
		{"fullwidth solidus", Anonymous, ActionSubscribe, "/chat／public", false, ReasonInvalidChannel},
		{"NUL byte", Anonymous, ActionSubscribe, "/chat/public\x00", false, ReasonInvalidChannel},
		{"space", Anonymous, ActionSubscribe, "/chat/public ", false, ReasonInvalidChannel},
		{"backslash", Anonymous, ActionSubscribe, "/chat\\public", false, ReasonInvalidChannel},
		{"mid wildcard", Anonymous, ActionSubscribe, "/*/public", false, ReasonInvalidChannel},
		{"mid deep wildcard", Anonymous, ActionSubscribe, "/**/public", false, ReasonInvalidChannel},
		{"partial wildcard", Anonymous, ActionSubscribe, "/chat/pub*", false, ReasonInvalidChannel},
		{"triple star", Anonymous, ActionSubscribe, "/chat/***", false, ReasonInvalidChannel},
		{"too deep", Anonymous, ActionSubscribe, strings.Repeat("/a", MaxDepth+1), false, ReasonInvalidChannel},
		{"too long", Anonymous, ActionSubscribe, "/" + strings.Repeat("a", MaxChannelLength), false, ReasonInvalidChannel},
		{"unknown action", Anonymous, Action("unsubscribe"), "/chat/public", false, ReasonUnknownAction},
	})
}

func TestEvaluateWildcards(t *testing.T) {
	a := mustACL(t, Deny, true,
		allow("one-level", sub, []string{"/one/*"}, "*"),
		allow("deep", sub, []string{"/deep/**"}, "*"),
		allow("mid", sub, []string{"/user/*/inbox"}, "*"),
		allow("all-news", sub, []string{"/news/**"}, "*"),
		deny("no-secret-news", sub, []string{"/news/secret"}, "*"),
	)
	runCases(t, a, []evalCase{
		{"* matches one", Anonymous, ActionSubscribe, "/one/x", true, ""},
		{"* not two", Anonymous, ActionSubscribe, "/one/x/y", false, ""},
		{"* not zero", Anonymous, ActionSubscribe, "/one", false, ""},
		{"** matches one", Anonymous, ActionSubscribe, "/deep/x", true, ""},
		{"** matches two", Anonymous, ActionSubscribe, "/deep/x/y", true, ""},
		{"** not zero", Anonymous, ActionSubscribe, "/deep", false, ""},
		{"mid * matches", Anonymous, ActionSubscribe, "/user/bob/inbox", true, ""},
		{"mid * wrong tail", Anonymous, ActionSubscribe, "/user/bob/outbox", false, ""},
		// wildcard subscriptions: allowed when an allow pattern covers the set
		{"sub /one/* covered by /one/*", Anonymous, ActionSubscribe, "/one/*", true, ""},
		{"sub /one/** not covered by /one/*", Anonymous, ActionSubscribe, "/one/**", false, ""},
		{"sub /deep/* covered by /deep/**", Anonymous, ActionSubscribe, "/deep/*", true, ""},
		{"sub /deep/** covered by /deep/**", Anonymous, ActionSubscribe, "/deep/**", true, ""},
		{"sub /deep/x/** covered", Anonymous, ActionSubscribe, "/deep/x/**", true, ""},
		{"sub /user/*/inbox is not a channel", Anonymous, ActionSubscribe, "/user/*/inbox", false, ReasonInvalidChannel},
		{"sub /user/bob/* not covered by /user/*/inbox", Anonymous, ActionSubscribe, "/user/bob/*", false, ""},
		// a deny overlapping the set denies the wildcard
		{"news item", Anonymous, ActionSubscribe, "/news/today", true, ""},
		{"secret news", Anonymous, ActionSubscribe, "/news/secret", false, ReasonRuleDeny},
		{"news/* overlaps the deny", Anonymous, ActionSubscribe, "/news/*", false, ReasonRuleDeny},
		{"news/** overlaps the deny", Anonymous, ActionSubscribe, "/news/**", false, ReasonRuleDeny},
		{"/** overlaps the deny", Anonymous, ActionSubscribe, "/**", false, ReasonRuleDeny},
		{"/* does not overlap /news/secret", Anonymous, ActionSubscribe, "/*", false, ReasonDefaultDeny},
		{"news/secret/* does not overlap", Anonymous, ActionSubscribe, "/news/secret/*", true, ""},
	})
}

func TestEvaluateDenyWinsAndDefaults(t *testing.T) {
	a := mustACL(t, Allow, true,
		allow("staff-admin", subPub, []string{"/admin/**"}, "group:staff"),
		deny("no-admin", subPub, []string{"/admin/**"}, "anonymous"),
		deny("bob-banned", subPub, []string{"/**"}, "user:bob"),
		deny("ro-announce", pub, []string{"/announce"}, "*"),
		allow("announce-all", pub, []string{"/announce"}, "*"),
	)
	runCases(t, a, []evalCase{
		{"default allow", Anonymous, ActionSubscribe, "/anything", true, ReasonDefaultAllow},
		{"anon admin denied", Anonymous, ActionSubscribe, "/admin/x", false, ReasonRuleDeny},
		{"staff admin allowed", alice, ActionSubscribe, "/admin/x", true, ReasonRuleAllow},
		{"bob denied everywhere", bob, ActionPublish, "/anything", false, ReasonRuleDeny},
		{"bob /** denied", bob, ActionSubscribe, "/**", false, ReasonRuleDeny},
		{"deny beats allow", alice, ActionPublish, "/announce", false, ReasonRuleDeny},
		{"subscribe unaffected by publish rules", alice, ActionSubscribe, "/announce", true, ReasonDefaultAllow},
		{"anon /** overlaps /admin deny", Anonymous, ActionSubscribe, "/**", false, ReasonRuleDeny},
		{"alice /** allowed by default", alice, ActionSubscribe, "/**", true, ReasonDefaultAllow},
		{"meta still reserved under default allow", alice, ActionPublish, "/meta/connect", false, ReasonMeta},
		{"bad name still denied under default allow", alice, ActionSubscribe, "/a/%2e%2e", false, ReasonInvalidChannel},
	})
	d := a.Evaluate(bob, ActionPublish, "/x")
	if d.Rule != "bob-banned" || d.Source != "ns/p" {
		t.Fatalf("decision names %q from %q, want bob-banned from ns/p", d.Rule, d.Source)
	}
}

func TestEvaluatePrincipals(t *testing.T) {
	carol := Identity{Subject: "carol", Groups: []string{"ops", "staff"}, Authenticated: true}
	a := mustACL(t, Deny, true,
		allow("anon", sub, []string{"/anon"}, "anonymous"),
		allow("authn", sub, []string{"/authn"}, "authenticated"),
		allow("user", sub, []string{"/bob"}, "user:bob"),
		allow("group", sub, []string{"/ops"}, "group:ops"),
		allow("everyone", sub, []string{"/all"}, "*"),
	)
	// A forged identity: claims say "bob" but it is not authenticated.
	forged := Identity{Subject: "bob", Groups: []string{"ops"}}
	runCases(t, a, []evalCase{
		{"anon on anon", Anonymous, ActionSubscribe, "/anon", true, ""},
		{"user on anon", bob, ActionSubscribe, "/anon", false, ""},
		{"anon on authn", Anonymous, ActionSubscribe, "/authn", false, ""},
		{"user on authn", bob, ActionSubscribe, "/authn", true, ""},
		{"bob on bob", bob, ActionSubscribe, "/bob", true, ""},
		{"alice on bob", alice, ActionSubscribe, "/bob", false, ""},
		{"unauthenticated bob on bob", forged, ActionSubscribe, "/bob", false, ""},
		{"unauthenticated ops on ops", forged, ActionSubscribe, "/ops", false, ""},
		{"carol on ops", carol, ActionSubscribe, "/ops", true, ""},
		{"alice on ops", alice, ActionSubscribe, "/ops", false, ""},
		{"anon on all", Anonymous, ActionSubscribe, "/all", true, ""},
		{"user on all", alice, ActionSubscribe, "/all", true, ""},
	})
}

func TestEvaluateTemplates(t *testing.T) {
	a := mustACL(t, Deny, true,
		allow("own", allActs, []string{"/user/{sub}/**"}, "authenticated"),
		allow("tenant", sub, []string{"/tenant/{claim:tenant}/*"}, "authenticated"),
		allow("num", sub, []string{"/n/{claim:num}"}, "authenticated"),
		allow("frac", sub, []string{"/f/{claim:frac}"}, "authenticated"),
		allow("bad", sub, []string{"/b/{claim:bad}"}, "authenticated"),
		allow("any", sub, []string{"/anon/{sub}"}, "*"),
	)
	weird := func(subject string) Identity { return Identity{Subject: subject, Authenticated: true} }
	runCases(t, a, []evalCase{
		{"own channel", alice, ActionSubscribe, "/user/alice/inbox", true, ""},
		{"own deep", alice, ActionPublish, "/user/alice/a/b", true, ""},
		{"own wildcard", alice, ActionSubscribe, "/user/alice/**", true, ""},
		{"other's channel", alice, ActionSubscribe, "/user/bob/inbox", false, ""},
		{"all users", alice, ActionSubscribe, "/user/*", false, ""},
		{"all users deep", alice, ActionSubscribe, "/user/**", false, ""},
		{"tenant", alice, ActionSubscribe, "/tenant/acme/x", true, ""},
		{"tenant wildcard", alice, ActionSubscribe, "/tenant/acme/*", true, ""},
		{"other tenant", alice, ActionSubscribe, "/tenant/other/x", false, ""},
		{"no tenant claim", bob, ActionSubscribe, "/tenant/acme/x", false, ""},
		{"integer claim", alice, ActionSubscribe, "/n/42", true, ""},
		{"fractional claim unusable", alice, ActionSubscribe, "/f/1.5", false, ""},
		{"claim with slash unusable", alice, ActionSubscribe, "/b/a/b", false, ""},
		{"anonymous has no sub", Anonymous, ActionSubscribe, "/anon/", false, ReasonInvalidChannel},
		// a subject crafted to widen the match must not
		{"sub is *", weird("*"), ActionSubscribe, "/user/x/y", false, ""},
		{"sub is * own", weird("*"), ActionSubscribe, "/user/*/y", false, ReasonInvalidChannel},
		{"sub is **", weird("**"), ActionSubscribe, "/user/bob/x", false, ""},
		{"sub with slash", weird("bob/x"), ActionSubscribe, "/user/bob/x/y", false, ""},
		{"sub with slash exact", weird("bob/x"), ActionSubscribe, "/user/bob/x", false, ""},
		{"sub is ..", weird(".."), ActionSubscribe, "/user/bob/x", false, ""},
		{"sub is empty", weird(""), ActionSubscribe, "/user/x", false, ""},
		{"sub percent", weird("bob%2Fx"), ActionSubscribe, "/user/bob/x", false, ""},
		{"sub unicode", weird("bоb"), ActionSubscribe, "/user/bob/x", false, ""},
		{"sub with dots is a literal", weird("a.b"), ActionSubscribe, "/user/a.b/x", true, ""},
	})
}

// A deny pattern's unusable template widens to "*" rather than vanishing.
func TestEvaluateDenyTemplateFailsClosed(t *testing.T) {
	a := mustACL(t, Allow, true,
		deny("not-others", pub, []string{"/tenant/{claim:tenant}/admin"}, "authenticated"),
	)
	runCases(t, a, []evalCase{
		{"tenant resolved: own denied", alice, ActionPublish, "/tenant/acme/admin", false, ReasonRuleDeny},
		{"tenant resolved: other allowed", alice, ActionPublish, "/tenant/other/admin", true, ReasonDefaultAllow},
		{"no claim: every tenant denied", bob, ActionPublish, "/tenant/other/admin", false, ReasonRuleDeny},
	})
}

func TestEvaluateHandshake(t *testing.T) {
	cases := []struct {
		name   string
		def    Effect
		anon   bool
		rules  []Rule
		id     Identity
		want   bool
		reason string
	}{
		{"anonymous refused", Allow, false, nil, Anonymous, false, ReasonAnonymous},
		{"anonymous allowed by default", Allow, true, nil, Anonymous, true, ReasonDefaultAllow},
		{"anonymous, default deny", Deny, true, nil, Anonymous, false, ReasonDefaultDeny},
		{"anonymous with rule", Deny, true, []Rule{allow("hs", []Action{ActionHandshake}, nil, "anonymous")}, Anonymous, true, ReasonRuleAllow},
		{"anonymous disallowed beats rule", Deny, false, []Rule{allow("hs", []Action{ActionHandshake}, nil, "*")}, Anonymous, false, ReasonAnonymous},
		{"authenticated by default", Allow, false, nil, alice, true, ReasonDefaultAllow},
		{"authenticated by rule", Deny, false, []Rule{allow("hs", []Action{ActionHandshake}, nil, "authenticated")}, alice, true, ReasonRuleAllow},
		{"banned user", Allow, false, []Rule{
			allow("hs", []Action{ActionHandshake}, nil, "authenticated"),
			deny("ban", []Action{ActionHandshake}, nil, "user:alice")}, alice, false, ReasonRuleDeny},
		{"channels ignored", Deny, false, []Rule{allow("hs", []Action{ActionHandshake, ActionSubscribe}, []string{"/x"}, "authenticated")}, alice, true, ReasonRuleAllow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := mustACL(t, c.def, c.anon, c.rules...)
			d := a.Evaluate(c.id, ActionHandshake, "/meta/handshake")
			if d.Allowed != c.want || d.Reason != c.reason {
				t.Fatalf("handshake = %+v, want allowed=%v reason %q", d, c.want, c.reason)
			}
		})
	}
}

// The byFirst index must give the same answers as checking every rule.
func TestEvaluateIndexAgreesWithScan(t *testing.T) {
	rules := []Rule{
		allow("a", sub, []string{"/a/**", "/b/*"}, "*"),
		deny("b", sub, []string{"/a/x", "/*/y"}, "*"),
		allow("c", sub, []string{"/{sub}/z"}, "authenticated"),
		allow("d", sub, []string{"/*/*"}, "user:bob"),
	}
	a := mustACL(t, Deny, true, rules...)
	chans := []string{"/a", "/a/x", "/a/y", "/a/z", "/b/q", "/b/y", "/alice/z", "/bob/z", "/c/d",
		"/*", "/**", "/a/*", "/a/**", "/b/*", "/b/**", "/c/*", "/alice/*"}
	for _, id := range []Identity{Anonymous, alice, bob} {
		for _, ch := range chans {
			got := a.Evaluate(id, ActionSubscribe, ch)
			want := scanEvaluate(a, &id, ch)
			if got.Allowed != want {
				t.Errorf("%s %s: index says %v, scan says %v", id.Subject, ch, got.Allowed, want)
			}
		}
	}
}

func scanEvaluate(a *ACL, id *Identity, ch string) bool {
	var buf [MaxDepth]string
	cs, ok := parseChannel(ch, &buf)
	if !ok {
		return false
	}
	allowed := a.defaultAllow
	covered := false
	for _, ip := range a.index[ActionSubscribe.index()].all {
		if !ip.r.appliesTo(id) {
			continue
		}
		if ip.r.deny && overlaps(ip.pat, id, &cs) {
			return false
		}
		if !ip.r.deny && covers(ip.pat, id, &cs) {
			covered = true
		}
	}
	return allowed || covered
}

func BenchmarkEvaluate(b *testing.B) {
	var rules []Rule
	for i := 0; i < 100; i++ {
		n := strings.Repeat("x", i%7+1) + string(rune('a'+i%26))
		rules = append(rules,
			allow("r"+n, subPub, []string{"/" + n + "/**", "/user/{sub}/" + n}, "authenticated"),
			deny("d"+n, pub, []string{"/" + n + "/readonly"}, "*"))
	}
	rules = append(rules, allow("chat", subPub, []string{"/chat/*"}, "group:staff"))
	a := mustACL(b, Deny, true, rules...)
	for _, bc := range []struct{ name, action, channel string }{
		{"concrete-allow", "publish", "/chat/room1"},
		{"template", "publish", "/user/alice/xa"},
		{"deep-deny", "publish", "/xxxa/readonly"},
		{"wildcard-sub", "subscribe", "/chat/*"},
		{"root-wildcard", "subscribe", "/**"},
		{"invalid", "subscribe", "/chat/%2e%2e"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.Evaluate(alice, Action(bc.action), bc.channel)
			}
		})
	}
}

// FuzzEvaluate: with only /chat/public allowed (and a deny on /chat/public for
// user mallory), no channel string other than /chat/public is ever allowed, and
// the evaluator never panics; and every allowed or rule-decided channel is in
// the exported channel grammar.
func FuzzEvaluate(f *testing.F) {
	a := mustACL(f, Deny, true,
		allow("public", allActs, []string{"/chat/public", "/user/{sub}/**"}, "*"),
		deny("mallory", allActs, []string{"/chat/public"}, "user:mallory"))
	chanRE := regexpMust(ChannelRegexp)
	for _, s := range []string{"/chat/public", "/chat/*", "/**", "/chat/public/", "/chat%2Fpublic", "/chat/./public",
		"/meta/connect", "/chat/ｐublic", "/user/alice/x", "/user/*/x", "//", "/", ""} {
		f.Add(s, "alice")
		f.Add(s, "*")
	}
	f.Fuzz(func(t *testing.T, ch, subject string) {
		id := Identity{Subject: subject, Authenticated: subject != ""}
		for _, act := range []Action{ActionSubscribe, ActionPublish, ActionCreate} {
			d := a.Evaluate(id, act, ch)
			if !d.Allowed {
				continue
			}
			own := validSegment(subject) && strings.HasPrefix(ch, "/user/"+subject+"/") && len(ch) > len("/user/"+subject+"/")
			if ch != "/chat/public" && !own {
				t.Fatalf("%s %q allowed for %q: %+v", act, ch, subject, d)
			}
			if !chanRE.MatchString(ch) {
				t.Fatalf("allowed channel %q is outside ChannelRegexp", ch)
			}
			if subject == "mallory" && ch == "/chat/public" {
				t.Fatal("deny did not win")
			}
		}
	})
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
