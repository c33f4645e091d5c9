package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/controllers"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

func createPolicy(ns, name string, spec map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "ChannelPolicy",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
	return env.Client.Create(context.Background(), u)
}

func rule(mut func(r map[string]any)) map[string]any {
	r := map[string]any{"name": "r", "effect": "allow", "actions": []any{"subscribe"},
		"channels": []any{"/chat/**"}, "principals": []any{"authenticated"}}
	if mut != nil {
		mut(r)
	}
	return r
}

// The CRD refuses exactly what broker/policy would refuse: its patterns are
// the package's grammar, character for character.
func TestChannelPolicySchemaMatchesPolicyGrammar(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "cometd.bayeux.dev_channelpolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(b, &crd); err != nil {
		t.Fatal(err)
	}
	r := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["rules"].Items.Schema
	if got := r.Properties["channels"].Items.Schema.Pattern; got != policy.PatternRegexp {
		t.Errorf("channel pattern in the CRD:\n%s\nbroker/policy.PatternRegexp:\n%s", got, policy.PatternRegexp)
	}
	if got := r.Properties["principals"].Items.Schema.Pattern; got != policy.PrincipalRegexp {
		t.Errorf("principal pattern in the CRD %s, broker/policy %s", got, policy.PrincipalRegexp)
	}
	if got := r.Properties["channels"].Items.Schema.MaxLength; got == nil || *got != policy.MaxPatternLength {
		t.Errorf("channel maxLength %v, want %d", got, policy.MaxPatternLength)
	}
	if got := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["rules"].MaxItems; got == nil || *got != policy.MaxRulesPerPolicy {
		t.Errorf("rules maxItems %v, want %d", got, policy.MaxRulesPerPolicy)
	}
}

func TestChannelPolicyAcceptsValidRules(t *testing.T) {
	ns := newNamespace(t)
	err := createPolicy(ns, "chat", map[string]any{"clusterName": "chat", "rules": []any{
		rule(nil),
		rule(func(r map[string]any) {
			r["name"] = "own-inbox"
			r["actions"] = []any{"subscribe", "publish", "create"}
			r["channels"] = []any{"/user/{sub}/**", "/team/{claim:team_id}/*", "/a/*/b", strings.Repeat("/a", 31) + "/**"}
			r["principals"] = []any{"user:alice@example.com", "group:admins", "*", "anonymous"}
		}),
		rule(func(r map[string]any) {
			r["name"] = "hs"
			r["effect"] = "deny"
			r["actions"] = []any{"handshake"}
			delete(r, "channels")
			r["principals"] = []any{"group:banned"}
		}),
	}})
	if err != nil {
		t.Fatalf("valid policy refused: %v", err)
	}
	// What the API server accepts, broker/policy compiles.
	var p v1.ChannelPolicy
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "chat"}, &p); err != nil {
		t.Fatal(err)
	}
	sp := controllers.SourcePolicy(&p)
	if errs := policy.ValidatePolicy(sp); len(errs) > 0 {
		t.Fatalf("the API server accepted a policy broker/policy refuses: %v", errs)
	}
}

// One case per rule a user can get wrong; each message names what is wrong.
func TestChannelPolicyValidation(t *testing.T) {
	ns := newNamespace(t)
	withRule := func(r map[string]any) map[string]any {
		return map[string]any{"clusterName": "chat", "rules": []any{r}}
	}
	cases := []struct {
		name string
		spec map[string]any
		want string
	}{
		{"no cluster", map[string]any{"rules": []any{rule(nil)}}, "spec.clusterName: Required value"},
		{"no rules", map[string]any{"clusterName": "chat", "rules": []any{}}, "spec.rules"},
		{"meta channel", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/meta/connect"} })),
			"meta channels (/meta/**) are never under a policy's control"},
		{"meta wildcard", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/meta/**"} })),
			"meta channels (/meta/**) are never under a policy's control"},
		{"deep wildcard not last", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/a/**/b"} })),
			"spec.rules[0].channels[0]"},
		{"space in a segment", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/chat/a b"} })),
			"spec.rules[0].channels[0]"},
		{"no leading slash", withRule(rule(func(r map[string]any) { r["channels"] = []any{"chat/*"} })),
			"spec.rules[0].channels[0]"},
		{"dot segment", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/chat/.."} })),
			"spec.rules[0].channels[0]"},
		{"half template", withRule(rule(func(r map[string]any) { r["channels"] = []any{"/user/{sub}x/**"} })),
			"spec.rules[0].channels[0]"},
		{"too deep", withRule(rule(func(r map[string]any) { r["channels"] = []any{strings.Repeat("/a", 33)} })),
			"a channel pattern has at most 32 segments"},
		{"principal without kind", withRule(rule(func(r map[string]any) { r["principals"] = []any{"alice"} })),
			"spec.rules[0].principals[0]"},
		{"empty user", withRule(rule(func(r map[string]any) { r["principals"] = []any{"user:"} })),
			"spec.rules[0].principals[0]"},
		{"no principals", withRule(rule(func(r map[string]any) { r["principals"] = []any{} })),
			"spec.rules[0].principals"},
		{"unknown action", withRule(rule(func(r map[string]any) { r["actions"] = []any{"read"} })),
			`Unsupported value: "read"`},
		{"no actions", withRule(rule(func(r map[string]any) { r["actions"] = []any{} })),
			"spec.rules[0].actions"},
		{"bad effect", withRule(rule(func(r map[string]any) { r["effect"] = "maybe" })),
			`Unsupported value: "maybe"`},
		{"subscribe without channels", withRule(rule(func(r map[string]any) { delete(r, "channels") })),
			"channels: at least one pattern is required for subscribe, publish and create"},
		{"duplicate rule names", map[string]any{"clusterName": "chat", "rules": []any{rule(nil), rule(nil)}},
			"Duplicate value"},
		{"rule name", withRule(rule(func(r map[string]any) { r["name"] = "Not_A_Name" })),
			"spec.rules[0].name"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := createPolicy(ns, fmt.Sprintf("bad-%d", i), tc.spec)
			if err == nil {
				t.Fatalf("the API server accepted an invalid policy %v", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejection message does not say %q:\n%v", tc.want, err)
			}
		})
	}
}

func TestChannelPolicyClusterNameIsImmutable(t *testing.T) {
	ns := newNamespace(t)
	if err := createPolicy(ns, "p", map[string]any{"clusterName": "chat", "rules": []any{rule(nil)}}); err != nil {
		t.Fatal(err)
	}
	var p v1.ChannelPolicy
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "p"}, &p); err != nil {
		t.Fatal(err)
	}
	p.Spec.ClusterName = "other"
	err := env.Client.Update(context.Background(), &p)
	if err == nil || !strings.Contains(err.Error(), "spec.clusterName is immutable") {
		t.Fatalf("changing clusterName: err = %v", err)
	}
}

func TestCometdClusterAccessValidation(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		access map[string]any
		want   string
	}{
		{"nobody can handshake", map[string]any{"allowAnonymous": false},
			"spec.access: with allowAnonymous false, set spec.access.auth"},
		{"algorithm none", map[string]any{"auth": map[string]any{"algorithm": "none", "keysSecret": "k",
			"keys": []any{map[string]any{"key": "k"}}}}, `Unsupported value: "none"`},
		{"auth without keys", map[string]any{"auth": map[string]any{"algorithm": "RS256", "keysSecret": "k", "keys": []any{}}},
			"spec.access.auth.keys"},
		{"default", map[string]any{"default": "maybe"}, `Unsupported value: "maybe"`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := createRaw(ns, fmt.Sprintf("access-%d", i), map[string]any{"access": tc.access})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
	if err := createRaw(ns, "locked", map[string]any{"access": map[string]any{"default": "deny", "allowAnonymous": false,
		"auth": map[string]any{"algorithm": "ES256", "keysSecret": "jwt-keys", "issuer": "https://idp",
			"keys": []any{map[string]any{"key": "current.pem", "id": "2026-11"}}}}}); err != nil {
		t.Fatalf("valid access refused: %v", err)
	}
}
