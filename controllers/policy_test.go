package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/broker/policy"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// fakeBroker serves a broker's admin /status from an httptest server: pods do
// not run in envtest, so the test plays the broker.
type fakeBroker struct {
	mu      sync.Mutex
	version string
	fail    bool
	// disconnected makes /status report backboneConnected false.
	disconnected bool
	// sessions is the client sessions /status reports (3 unless set);
	// shedding its shed.active; sheds the POST /shed bodies received.
	sessions int64
	shedding bool
	sheds    []ShedRequest
}

func (f *fakeBroker) setSessions(n int64) {
	f.mu.Lock()
	f.sessions = n
	f.mu.Unlock()
}

func (f *fakeBroker) setShedding(on bool) {
	f.mu.Lock()
	f.shedding = on
	f.mu.Unlock()
}

func (f *fakeBroker) shedRequests() []ShedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]ShedRequest(nil), f.sheds...)
}

func (f *fakeBroker) setDisconnected(d bool) {
	f.mu.Lock()
	f.disconnected = d
	f.mu.Unlock()
}

func (f *fakeBroker) set(version string, fail bool) {
	f.mu.Lock()
	f.version, f.fail = version, fail
	f.mu.Unlock()
}

// enforceCurrentPolicy waits until the cluster has compiled a policy version
// and makes every broker report that it enforces it.
func enforceCurrentPolicy(t *testing.T, cc *v1.CometdCluster, brokers ...*fakeBroker) string {
	t.Helper()
	var version string
	testutil.Eventually(t, waitTimeout, "a policy version", func(context.Context) (bool, string) {
		cur := &v1.CometdCluster{}
		get(t, cc.Namespace, cc.Name, cur)
		version = cur.Status.PolicyVersion
		return version != "", "none yet"
	})
	for _, b := range brokers {
		b.set(version, false)
	}
	return version
}

// startBrokerPod creates a ready broker Pod of the cluster and its fake admin endpoint.
func startBrokerPod(t *testing.T, cc *v1.CometdCluster, name string) *fakeBroker {
	t.Helper()
	return startBrokerPodWithSessions(t, cc, name, 3)
}

// startBrokerPodWithSessions is startBrokerPod whose broker reports sessions
// from its first answer on (an autoscaler may decide on that answer).
func startBrokerPodWithSessions(t *testing.T, cc *v1.CometdCluster, name string, sessions int64) *fakeBroker {
	t.Helper()
	f := &fakeBroker{sessions: sessions}
	startReadyPod(t, cc, name, resources.BrokerLabels(cc), corev1.Container{Name: "broker", Image: testBrokerImage}, "10.1.0.7",
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if r.Method == http.MethodPost && r.URL.Path == "/shed" {
				var req ShedRequest
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				f.sheds = append(f.sheds, req)
				w.WriteHeader(http.StatusAccepted)
				return
			}
			if r.URL.Path != "/status" || f.fail {
				http.Error(w, "broken", http.StatusInternalServerError)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"node": name, "sessions": f.sessions + 1, "clientSessions": f.sessions,
				"policyVersion": f.version, "backboneConnected": !f.disconnected, "shed": map[string]any{"active": f.shedding}})
		}))
	return f
}

func newPolicy(ns, name, cluster string, rules ...v1.ChannelRule) *v1.ChannelPolicy {
	return &v1.ChannelPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: v1.ChannelPolicySpec{ClusterName: cluster, Rules: rules}}
}

func allow(name string, actions []v1.PolicyAction, channels []v1.ChannelPattern, principals ...v1.Principal) v1.ChannelRule {
	return v1.ChannelRule{Name: name, Effect: v1.EffectAllow, Actions: actions, Channels: channels, Principals: principals}
}

// policyDoc reads and parses the cluster's policy ConfigMap as a broker would.
func policyDoc(t *testing.T, cc *v1.CometdCluster) (policy.Document, bool) {
	t.Helper()
	cm := &corev1.ConfigMap{}
	if !get(t, cc.Namespace, cc.Name+"-policy", cm) {
		return policy.Document{}, false
	}
	doc, err := policy.Parse([]byte(cm.Data["policy.json"]))
	if err != nil {
		t.Fatalf("the broker would refuse the policy ConfigMap: %v\n%s", err, cm.Data["policy.json"])
	}
	return doc, true
}

func waitAccepted(t *testing.T, p *v1.ChannelPolicy, status metav1.ConditionStatus, reason string) *v1.ChannelPolicy {
	t.Helper()
	got := &v1.ChannelPolicy{}
	testutil.Eventually(t, waitTimeout, fmt.Sprintf("policy %s Accepted=%s/%s", p.Name, status, reason), func(context.Context) (bool, string) {
		get(t, p.Namespace, p.Name, got)
		c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAccepted)
		if c == nil {
			return false, "no condition"
		}
		return c.Status == status && c.Reason == reason && c.ObservedGeneration == got.Generation,
			fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message)
	})
	return got
}

func TestPoliciesCompileIntoTheConfigMapWithoutRollingPods(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	testutil.Eventually(t, waitTimeout, "open default policy", func(context.Context) (bool, string) {
		doc, ok := policyDoc(t, cc)
		return ok && doc.Default == policy.Allow && doc.AllowAnonymous && len(doc.Rules) == 0, fmt.Sprintf("%+v", doc)
	})
	dep0 := getDeployment(t, cc)

	members := newPolicy(ns, "members", "chat",
		allow("read", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/chat/**"}, "authenticated"),
		allow("inbox", []v1.PolicyAction{v1.ActionSubscribe, v1.ActionPublish}, []v1.ChannelPattern{"/user/{sub}/**"}, "authenticated"))
	banned := newPolicy(ns, "banned", "chat", v1.ChannelRule{Name: "no-publish", Effect: v1.EffectDeny,
		Actions: []v1.PolicyAction{v1.ActionPublish}, Channels: []v1.ChannelPattern{"/**"}, Principals: []v1.Principal{"group:banned"}})
	other := newPolicy(ns, "other", "another-cluster",
		allow("x", []v1.PolicyAction{v1.ActionPublish}, []v1.ChannelPattern{"/x"}, "*"))
	for _, p := range []*v1.ChannelPolicy{members, banned, other} {
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create policy %s: %v", p.Name, err)
		}
	}
	var doc policy.Document
	testutil.Eventually(t, waitTimeout, "both policies compiled", func(context.Context) (bool, string) {
		doc, _ = policyDoc(t, cc)
		return len(doc.Rules) == 3, fmt.Sprintf("%+v", doc.Rules)
	})
	sources := map[string]bool{}
	for _, r := range doc.Rules {
		sources[r.Source+"#"+r.Name] = true
	}
	for _, want := range []string{ns + "/members#read", ns + "/members#inbox", ns + "/banned#no-publish"} {
		if !sources[want] {
			t.Errorf("compiled rules lack %s: %v", want, sources)
		}
	}
	// The document really decides: the deny wins for a banned member.
	acl, err := policy.NewACL(doc)
	if err != nil {
		t.Fatal(err)
	}
	id := policy.Identity{Authenticated: true, Subject: "bob", Groups: []string{"banned"}}
	if d := acl.Evaluate(id, policy.ActionPublish, "/user/bob/x"); d.Allowed {
		t.Errorf("banned user may publish: %+v", d)
	}
	if d := acl.Evaluate(id, policy.ActionSubscribe, "/chat/room"); !d.Allowed {
		t.Errorf("member may not subscribe to /chat/room: %+v", d)
	}

	waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "Unknown/" + ReasonNoReadyBroker})
	testutil.Eventually(t, waitTimeout, "status.policyVersion = the ConfigMap's", func(context.Context) (bool, string) {
		cur := &v1.CometdCluster{}
		get(t, ns, "chat", cur)
		return cur.Status.PolicyVersion == doc.Version, fmt.Sprintf("status %q, ConfigMap %q", cur.Status.PolicyVersion, doc.Version)
	})
	waitAccepted(t, members, metav1.ConditionTrue, ReasonAccepted)
	waitAccepted(t, other, metav1.ConditionFalse, ReasonClusterNotFound)

	// Editing a policy changes the document, not the pods.
	updatePolicy(t, banned, func(p *v1.ChannelPolicy) { p.Spec.Rules[0].Channels = []v1.ChannelPattern{"/chat/**"} })
	testutil.Eventually(t, waitTimeout, "edited policy compiled", func(context.Context) (bool, string) {
		d, _ := policyDoc(t, cc)
		return d.Version != doc.Version, "version still " + d.Version
	})
	dep1 := getDeployment(t, cc)
	if dep1.ResourceVersion != dep0.ResourceVersion || dep1.Generation != dep0.Generation {
		t.Errorf("a policy change touched the Deployment (generation %d -> %d): pods would roll", dep0.Generation, dep1.Generation)
	}
	// Deleting a policy removes its rules.
	if err := env.Client.Delete(ctx, members); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitTimeout, "deleted policy gone", func(context.Context) (bool, string) {
		d, _ := policyDoc(t, cc)
		return len(d.Rules) == 1, fmt.Sprintf("%+v", d.Rules)
	})
}

func updatePolicy(t *testing.T, p *v1.ChannelPolicy, mut func(*v1.ChannelPolicy)) {
	t.Helper()
	for range 10 {
		cur := &v1.ChannelPolicy{}
		get(t, p.Namespace, p.Name, cur)
		mut(cur)
		err := env.Client.Update(context.Background(), cur)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatalf("update policy: %v", err)
		}
	}
	t.Fatal("update policy: too many conflicts")
}

func TestPolicyForAMissingClusterIsAcceptedOnceItExists(t *testing.T) {
	ns := newNamespace(t)
	p := newPolicy(ns, "early", "late", allow("r", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/a"}, "*"))
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got := waitAccepted(t, p, metav1.ConditionFalse, ReasonClusterNotFound)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAccepted); !strings.Contains(c.Message, `"late"`) {
		t.Errorf("message does not name the missing cluster: %q", c.Message)
	}
	cc := create(t, newCluster(ns, "late", 1, false))
	waitAccepted(t, p, metav1.ConditionTrue, ReasonAccepted)
	testutil.Eventually(t, waitTimeout, "late cluster's document has the early policy", func(context.Context) (bool, string) {
		d, _ := policyDoc(t, cc)
		return len(d.Rules) == 1 && d.Rules[0].Source == ns+"/early", fmt.Sprintf("%+v", d.Rules)
	})
	if err := env.Client.Delete(context.Background(), cc); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, p, metav1.ConditionFalse, ReasonClusterNotFound)
}

func TestAccessSettingsReachTheDocumentAndPods(t *testing.T) {
	ns := newNamespace(t)
	cc := newCluster(ns, "secure", 1, false)
	cc.Spec.Access = v1.AccessSpec{Default: v1.EffectDeny, AllowAnonymous: ptr.To(false), Auth: &v1.AuthSpec{
		Algorithm: "ES256", Issuer: "https://idp.example.com", Audience: "chat", KeysSecret: "jwt-keys",
		Keys: []v1.AuthKey{{Key: "current.pem", ID: "2026-11"}}}}
	create(t, cc)
	waitForChildren(t, cc, brokerChildren("secure"))
	testutil.Eventually(t, waitTimeout, "locked-down document", func(context.Context) (bool, string) {
		d, ok := policyDoc(t, cc)
		return ok && d.Default == policy.Deny && !d.AllowAnonymous && d.Auth.Algorithm == policy.ES256 &&
			d.Auth.Issuer == "https://idp.example.com" && len(d.Auth.Keys) == 1 &&
			d.Auth.Keys[0].File == "/etc/cometd/keys/current.pem" && d.Auth.LeewaySeconds != nil && *d.Auth.LeewaySeconds == 30, fmt.Sprintf("%+v", d)
	})
	var mounted bool
	for _, v := range getDeployment(t, cc).Spec.Template.Spec.Volumes {
		mounted = mounted || (v.Secret != nil && v.Secret.SecretName == "jwt-keys")
	}
	if !mounted {
		t.Error("the keys Secret is not mounted into the broker pods")
	}
}

func TestPolicyAppliedFollowsWhatBrokersEnforce(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	a, b := startBrokerPod(t, cc, "chat-a"), startBrokerPod(t, cc, "chat-b")

	// Brokers that enforce no policy yet.
	got := waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonPolicyPropagating})
	v1Version := got.Status.PolicyVersion
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionPolicyApplied); !strings.Contains(c.Message, "chat-a (none)") {
		t.Errorf("message does not say which broker lags: %q", c.Message)
	}
	// One catches up: still not applied.
	a.set(v1Version, false)
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonPolicyPropagating},
		"1 of 2 ready brokers enforce")
	// Both: applied.
	b.set(v1Version, false)
	waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced})

	// A new policy: not applied until the brokers report its version.
	p := newPolicy(ns, "p", "chat", allow("r", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/chat/*"}, "*"))
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	got = waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonPolicyPropagating})
	v2 := got.Status.PolicyVersion
	if v2 == v1Version || v2 == "" {
		t.Fatalf("policy version did not change: %q", v2)
	}
	a.set(v2, false)
	b.set(v2, true) // its admin endpoint fails
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonBrokerUnreachable}, "chat-b")
	b.set(v2, false)
	waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced})
}

func TestPolicyAppliedCondition(t *testing.T) {
	writeErr := errors.New("forbidden")
	for _, tc := range []struct {
		name     string
		err      error
		writeErr error
		reports  []brokerReport
		status   metav1.ConditionStatus
		reason   string
	}{
		{"rejected", errors.New("bad"), nil, []brokerReport{{Pod: "a", Version: "v"}}, metav1.ConditionFalse, ReasonPolicyRejected},
		{"no brokers", nil, nil, nil, metav1.ConditionUnknown, ReasonNoReadyBroker},
		{"all", nil, nil, []brokerReport{{Pod: "a", Version: "v"}, {Pod: "b", Version: "v"}}, metav1.ConditionTrue, ReasonPolicyEnforced},
		{"one behind", nil, nil, []brokerReport{{Pod: "a", Version: "v"}, {Pod: "b", Version: "old"}}, metav1.ConditionFalse, ReasonPolicyPropagating},
		{"unreachable", nil, nil, []brokerReport{{Pod: "a", Err: errors.New("refused")}, {Pod: "b", Version: "v"}}, metav1.ConditionFalse, ReasonBrokerUnreachable},
		{"not written, all enforce it anyway", nil, writeErr, []brokerReport{{Pod: "a", Version: "v"}}, metav1.ConditionTrue, ReasonPolicyEnforced},
		{"not written, one behind", nil, writeErr, []brokerReport{{Pod: "a", Version: "v"}, {Pod: "b", Version: "old"}}, metav1.ConditionFalse, ReasonApplyFailed},
	} {
		c := policyAppliedCondition("v", tc.err, tc.writeErr, tc.reports)
		if c.Status != tc.status || c.Reason != tc.reason || c.Message == "" {
			t.Errorf("%s: %s/%s %q, want %s/%s", tc.name, c.Status, c.Reason, c.Message, tc.status, tc.reason)
		}
	}
}

func TestAcceptedConditionReportsValidationErrors(t *testing.T) {
	// What the API server would refuse, in case a policy got past it (an older
	// CRD, a direct etcd write): the condition carries broker/policy's errors.
	p := newPolicy("ns", "p", "chat", v1.ChannelRule{Name: "r", Effect: v1.EffectAllow,
		Actions: []v1.PolicyAction{v1.ActionSubscribe}, Channels: []v1.ChannelPattern{"/meta/**"}, Principals: []v1.Principal{"bob"}})
	c := acceptedCondition(p, true, errors.New("policy ns/p: principals"))
	if c.Status != metav1.ConditionFalse || c.Reason != ReasonInvalid ||
		!strings.Contains(c.Message, "ns/p") || !strings.Contains(c.Message, "principals") ||
		!strings.Contains(c.Message, "keeps its last compiled ACL") {
		t.Fatalf("Accepted = %s/%s %q", c.Status, c.Reason, c.Message)
	}
	ok := newPolicy("ns", "ok", "chat", allow("r", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/a"}, "*"))
	if c := acceptedCondition(ok, true, nil); c.Status != metav1.ConditionTrue || c.Reason != ReasonAccepted {
		t.Fatalf("valid policy: %+v", c)
	}
	// A valid policy whose sibling is invalid is not compiled: the ACL is frozen.
	if c := acceptedCondition(ok, true, errors.New("policy ns/p: principals")); c.Status != metav1.ConditionFalse ||
		c.Reason != ReasonACLFrozen || !strings.Contains(c.Message, "ns/p") {
		t.Fatalf("valid policy next to an invalid one: %+v", c)
	}
}

// allowInvalidPrincipals replaces the ChannelPolicy CRD with one that does not
// check principals (like an older CRD would), until the test ends. It is the
// only way a policy that broker/policy refuses reaches the operator through
// the API server.
func allowInvalidPrincipals(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
	key := types.NamespacedName{Name: "channelpolicies." + v1.GroupVersion.Group}
	if err := env.Client.Get(ctx, key, crd); err != nil {
		t.Fatalf("get CRD: %v", err)
	}
	original, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	loose := runtime.DeepCopyJSONValue(original).([]any)
	for _, v := range loose {
		unstructured.RemoveNestedField(v.(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "properties",
			"rules", "items", "properties", "principals", "items", "pattern")
	}
	setVersions := func(versions []any) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur := crd.DeepCopy()
			if err := env.Client.Get(ctx, key, cur); err != nil {
				return err
			}
			if err := unstructured.SetNestedSlice(cur.Object, versions, "spec", "versions"); err != nil {
				return err
			}
			return env.Client.Update(ctx, cur)
		})
		if err != nil {
			t.Fatalf("update CRD: %v", err)
		}
	}
	// probe reports whether the API server accepts a policy with principal "bob".
	probe := func() (bool, string) {
		p := newPolicy("default", "probe", "x", allow("r", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/a"}, "bob"))
		err := env.Client.Create(ctx, p, client.DryRunAll)
		if err == nil {
			return true, "accepted"
		}
		return false, err.Error()
	}
	setVersions(loose)
	t.Cleanup(func() {
		setVersions(original)
		testutil.Eventually(t, waitTimeout, "the CRD to check principals again", func(context.Context) (bool, string) {
			ok, why := probe()
			return !ok, why
		})
	})
	testutil.Eventually(t, waitTimeout, "the CRD to accept any principal", func(context.Context) (bool, string) { return probe() })
}

// An invalid policy (past an older CRD) freezes the cluster's ACL at its last
// compiled version: the operator fails closed rather than drop a policy that
// may deny. The invalid policy says so, and so does its valid sibling, which
// is no longer compiled.
func TestInvalidPolicyFreezesTheACLAndEveryPolicySaysSo(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 1, false))
	waitForChildren(t, cc, brokerChildren("chat"))
	members := newPolicy(ns, "members", "chat",
		allow("read", []v1.PolicyAction{v1.ActionSubscribe}, []v1.ChannelPattern{"/chat/**"}, "authenticated"))
	if err := env.Client.Create(ctx, members); err != nil {
		t.Fatal(err)
	}
	var frozen policy.Document
	testutil.Eventually(t, waitTimeout, "members compiled", func(context.Context) (bool, string) {
		frozen, _ = policyDoc(t, cc)
		return len(frozen.Rules) == 1, fmt.Sprintf("%+v", frozen.Rules)
	})
	got := waitAccepted(t, members, metav1.ConditionTrue, ReasonAccepted)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAccepted); !strings.Contains(c.Message, "compiled into the ACL") {
		t.Errorf("Accepted message: %q", c.Message)
	}

	allowInvalidPrincipals(t)
	broken := newPolicy(ns, "broken", "chat", v1.ChannelRule{Name: "no-bob", Effect: v1.EffectDeny,
		Actions: []v1.PolicyAction{v1.ActionPublish}, Channels: []v1.ChannelPattern{"/**"}, Principals: []v1.Principal{"bob"}})
	if err := env.Client.Create(ctx, broken); err != nil {
		t.Fatalf("create the invalid policy: %v", err)
	}
	got = waitAccepted(t, broken, metav1.ConditionFalse, ReasonInvalid)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAccepted); !strings.Contains(c.Message, "principals") ||
		!strings.Contains(c.Message, "keeps its last compiled ACL") {
		t.Errorf("invalid policy's message does not tell what happens: %q", c.Message)
	}
	got = waitAccepted(t, members, metav1.ConditionFalse, ReasonACLFrozen)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionAccepted); !strings.Contains(c.Message, ns+"/broken") {
		t.Errorf("valid sibling's message does not name the invalid policy: %q", c.Message)
	}
	waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonPolicyRejected})

	// Frozen indeed: a change to the valid policy does not reach the ACL.
	updatePolicy(t, members, func(p *v1.ChannelPolicy) {
		p.Spec.Rules = append(p.Spec.Rules, allow("write", []v1.PolicyAction{v1.ActionPublish}, []v1.ChannelPattern{"/chat/**"}, "authenticated"))
	})
	waitAccepted(t, members, metav1.ConditionFalse, ReasonACLFrozen)
	// The cache now holds the changed policy (its reconciler saw it). A spec
	// change makes the cluster's reconciler run after that, and its status
	// says when it has: only then is an unchanged ACL proof of the freeze.
	updateCluster(t, cc, func(c *v1.CometdCluster) {
		c.Spec.Broker.Timeout = &metav1.Duration{Duration: 45 * time.Second}
	})
	waitConditions(t, cc, map[string]string{v1.ConditionPolicyApplied: "False/" + ReasonPolicyRejected})
	if d, _ := policyDoc(t, cc); d.Version != frozen.Version {
		t.Errorf("the ACL changed while a policy was invalid: %+v", d.Rules)
	}

	// The invalid policy goes: everything compiles again.
	if err := env.Client.Delete(ctx, broken); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, members, metav1.ConditionTrue, ReasonAccepted)
	testutil.Eventually(t, waitTimeout, "members' two rules compiled", func(context.Context) (bool, string) {
		d, _ := policyDoc(t, cc)
		return len(d.Rules) == 2, fmt.Sprintf("%+v", d.Rules)
	})
}
