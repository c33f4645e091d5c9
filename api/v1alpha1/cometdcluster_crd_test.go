package v1alpha1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// createRaw creates a CometdCluster from an untyped spec, so tests can send what
// a user could type in YAML, including values the Go types cannot hold.
func createRaw(ns, name string, spec map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1.GroupVersion.String(),
		"kind":       "CometdCluster",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"spec":       spec,
	}}
	return env.Client.Create(context.Background(), u)
}

// The API server applies the CRD's defaults: a CometdCluster created with an
// empty spec comes back with every documented default.
func TestCometdClusterDefaults(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns}}
	if err := env.Client.Create(ctx, cc); err != nil {
		t.Fatalf("create: %v", err)
	}
	var got v1.CometdCluster
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cc), &got); err != nil {
		t.Fatalf("get: %v", err)
	}
	s := got.Spec
	checks := []struct {
		name string
		ok   bool
	}{
		{"replicas=1", s.Replicas != nil && *s.Replicas == 1},
		{"imagePullPolicy=IfNotPresent", s.ImagePullPolicy == "IfNotPresent"},
		{"broker.timeout=30s", s.Broker.Timeout != nil && s.Broker.Timeout.Duration.String() == "30s"},
		{"broker.interval=0s", s.Broker.Interval != nil && s.Broker.Interval.Duration == 0},
		{"broker.maxInterval=10s", s.Broker.MaxInterval != nil && s.Broker.MaxInterval.Duration.String() == "10s"},
		{"broker.maxQueue=-1", s.Broker.MaxQueue != nil && *s.Broker.MaxQueue == -1},
		{"broker.maxQueueSize=4Mi", s.Broker.MaxQueueSize != nil && s.Broker.MaxQueueSize.Value() == 4<<20},
		{"broker.maxMessageSize=64Ki", s.Broker.MaxMessageSize != nil && s.Broker.MaxMessageSize.Value() == 64<<10},
		{"broker.transports=all five", len(s.Broker.Transports) == 5},
		{"broker.demo=false", !s.Broker.Demo},
		{"service.type=ClusterIP", s.Service.Type == "ClusterIP"},
		{"service.port=80", s.Service.Port == 80},
		{"disruptionBudget.maxUnavailable=1", s.DisruptionBudget.MaxUnavailable != nil && *s.DisruptionBudget.MaxUnavailable == intstr.FromInt32(1)},
		{"nats unset (embedded, single broker)", s.NATS == nil},
		{"access.default=allow", s.Access.Default == v1.EffectAllow},
		{"access.allowAnonymous=true", s.Access.AllowAnonymous != nil && *s.Access.AllowAnonymous},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("default %s not applied; spec = %+v", c.name, s)
		}
	}
}

// Defaults inside optional blocks apply when the block is given.
func TestCometdClusterNestedDefaults(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	if err := createRaw(ns, "chat", map[string]any{
		"replicas":    3,
		"nats":        map[string]any{"managed": map[string]any{}},
		"autoscaling": map[string]any{"maxReplicas": 5, "targetSessionsPerPod": 1000},
	}); err != nil {
		t.Fatalf("create: %v", err)
	}
	var got v1.CometdCluster
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "chat"}, &got); err != nil {
		t.Fatalf("get: %v", err)
	}
	m := got.Spec.NATS.Managed
	if m.Replicas == nil || *m.Replicas != 3 || m.Cluster.Port != 6222 {
		t.Errorf("managed NATS defaults = replicas %v, route port %d; want 3, 6222", m.Replicas, m.Cluster.Port)
	}
	a := got.Spec.Autoscaling
	if a.Metric != v1.MetricSessions || a.MinReplicas == nil || *a.MinReplicas != 1 {
		t.Errorf("autoscaling defaults = metric %q, min %v; want sessions, 1", a.Metric, a.MinReplicas)
	}
}

// A spec that uses every field is accepted.
func TestCometdClusterAcceptsFullSpec(t *testing.T) {
	ns := newNamespace(t)
	err := createRaw(ns, "full", map[string]any{
		"replicas":        4,
		"image":           "registry.example.com/cometd-broker:1.2.3",
		"imagePullPolicy": "Always",
		"resources": map[string]any{
			"requests": map[string]any{"cpu": "250m", "memory": "256Mi"},
			"limits":   map[string]any{"memory": "512Mi"},
		},
		"broker": map[string]any{
			"timeout": "25s", "interval": "0s", "maxInterval": "1m30s",
			"maxQueue": 1000, "maxQueueSize": "8Mi", "maxMessageSize": "128Ki", "maxSessions": 20000,
			"transports":     []any{"websocket", "long-polling"},
			"allowedOrigins": []any{"https://app.example.com", "http://localhost:3000"},
		},
		"nats": map[string]any{
			"url":               "nats://nats-0.nats:4222,tls://nats-1.nats:4222",
			"credentialsSecret": map[string]any{"name": "nats-creds"},
		},
		"service": map[string]any{"type": "LoadBalancer", "port": 8080,
			"annotations": map[string]any{"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
		"pod": map[string]any{
			"labels":       map[string]any{"team": "chat"},
			"annotations":  map[string]any{"prometheus.io/scrape": "true"},
			"nodeSelector": map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":  []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "chat", "effect": "NoSchedule"}},
			"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
				"whenUnsatisfiable": "ScheduleAnyway"}},
			"priorityClassName":             "high",
			"terminationGracePeriodSeconds": 60,
			"securityContext":               map[string]any{"runAsNonRoot": true, "runAsUser": 65532},
		},
		"disruptionBudget": map[string]any{"maxUnavailable": "25%"},
		"autoscaling": map[string]any{"minReplicas": 2, "maxReplicas": 10, "metric": "cpu",
			"targetCPUUtilizationPercentage": 70},
	})
	if err != nil {
		t.Fatalf("a valid full spec was rejected: %v", err)
	}
}

// Every rule a user can get wrong is refused by the API server with a message
// that names the field and says what to do. One case per rule.
func TestCometdClusterValidation(t *testing.T) {
	ns := newNamespace(t)
	managed := map[string]any{"managed": map[string]any{}}
	cases := []struct {
		name string
		spec map[string]any
		want string
	}{
		{"replicas zero without autoscaling", map[string]any{"replicas": 0},
			"spec.replicas must be at least 1 unless spec.autoscaling is set"},
		{"replicas negative", map[string]any{"replicas": -1, "nats": managed},
			"should be greater than or equal to 0"},
		{"several brokers without a shared backbone", map[string]any{"replicas": 3},
			"more than one broker needs a shared backbone"},
		{"autoscaling without a shared backbone", map[string]any{
			"autoscaling": map[string]any{"maxReplicas": 3, "targetSessionsPerPod": 100}},
			"more than one broker needs a shared backbone"},
		{"nats url and managed", map[string]any{"nats": map[string]any{"url": "nats://n:4222", "managed": map[string]any{}}},
			"spec.nats: set either url or managed, not both"},
		{"nats credentials without url", map[string]any{"nats": map[string]any{"managed": map[string]any{},
			"credentialsSecret": map[string]any{"name": "x"}}},
			"spec.nats.credentialsSecret is only used with spec.nats.url"},
		{"nats url scheme", map[string]any{"nats": map[string]any{"url": "http://nats:4222"}},
			"spec.nats.url"},
		{"managed nats replicas zero", map[string]any{"nats": map[string]any{"managed": map[string]any{"replicas": 0}}},
			"spec.nats.managed.replicas"},
		{"autoscaling min above max", map[string]any{"nats": managed,
			"autoscaling": map[string]any{"minReplicas": 5, "maxReplicas": 2, "targetSessionsPerPod": 100}},
			"spec.autoscaling.minReplicas must not exceed spec.autoscaling.maxReplicas"},
		{"autoscaling sessions without a target", map[string]any{"nats": managed,
			"autoscaling": map[string]any{"maxReplicas": 5}},
			"spec.autoscaling.metric sessions needs targetSessionsPerPod"},
		{"autoscaling cpu without a target", map[string]any{"nats": managed,
			"autoscaling": map[string]any{"maxReplicas": 5, "metric": "cpu", "targetSessionsPerPod": 10}},
			"spec.autoscaling.metric cpu needs targetCPUUtilizationPercentage"},
		{"autoscaling unknown metric", map[string]any{"nats": managed,
			"autoscaling": map[string]any{"maxReplicas": 5, "metric": "memory"}},
			`Unsupported value: "memory"`},
		{"broker timeout not a duration", map[string]any{"broker": map[string]any{"timeout": "30 seconds"}},
			"spec.broker.timeout"},
		{"broker maxInterval too short", map[string]any{"broker": map[string]any{"maxInterval": "500ms"}},
			"spec.broker.maxInterval must be at least 1s"},
		{"broker maxQueue below -1", map[string]any{"broker": map[string]any{"maxQueue": -2}},
			"spec.broker.maxQueue"},
		{"broker maxSessions negative", map[string]any{"broker": map[string]any{"maxSessions": -1}},
			"spec.broker.maxSessions"},
		{"broker maxMessageSize not a quantity", map[string]any{"broker": map[string]any{"maxMessageSize": "lots"}},
			"spec.broker.maxMessageSize"},
		{"broker maxMessageSize too large", map[string]any{"broker": map[string]any{"maxMessageSize": "1Gi"}},
			"spec.broker.maxMessageSize must be a whole number of bytes between 1Ki and 64Mi"},
		{"broker maxMessageSize fractional", map[string]any{"broker": map[string]any{"maxMessageSize": "1500m"}},
			"spec.broker.maxMessageSize must be a whole number of bytes between 1Ki and 64Mi"},
		{"broker maxQueueSize too small", map[string]any{"broker": map[string]any{"maxQueueSize": "100"}},
			"spec.broker.maxQueueSize must be a whole number of bytes, at least 1Ki"},
		{"broker unknown transport", map[string]any{"broker": map[string]any{"transports": []any{"websocket", "sse"}}},
			`Unsupported value: "sse"`},
		{"broker no transport", map[string]any{"broker": map[string]any{"transports": []any{}}},
			"spec.broker.transports"},
		{"broker origin with a path", map[string]any{"broker": map[string]any{"allowedOrigins": []any{"https://a.example.com/app"}}},
			"spec.broker.allowedOrigins[0]"},
		{"resources not a quantity", map[string]any{"resources": map[string]any{"requests": map[string]any{"cpu": "fast"}}},
			"spec.resources.requests.cpu"},
		{"service type", map[string]any{"service": map[string]any{"type": "ExternalName"}},
			`Unsupported value: "ExternalName"`},
		{"service port", map[string]any{"service": map[string]any{"port": 70000}},
			"spec.service.port"},
		{"pod labels override the selector", map[string]any{"pod": map[string]any{"labels": map[string]any{"app.kubernetes.io/instance": "x"}}},
			"spec.pod.labels must not set app.kubernetes.io/name"},
		{"grace period zero", map[string]any{"pod": map[string]any{"terminationGracePeriodSeconds": 0}},
			"spec.pod.terminationGracePeriodSeconds"},
		{"maxUnavailable negative", map[string]any{"disruptionBudget": map[string]any{"maxUnavailable": -1}},
			"spec.disruptionBudget.maxUnavailable must be a non-negative number or a percentage"},
		{"auth with keys and a jwksURL", map[string]any{"access": map[string]any{"auth": map[string]any{"algorithm": "RS256",
			"keysSecret": "k", "keys": []any{map[string]any{"key": "a.pem"}}, "jwksURL": "https://idp.example/jwks"}}},
			"spec.access.auth: set keysSecret and keys, or jwksURL, not both"},
		{"auth with neither keys nor a jwksURL", map[string]any{"access": map[string]any{"auth": map[string]any{"algorithm": "RS256"}}},
			"spec.access.auth: set keysSecret and keys, or jwksURL, not both"},
		{"auth HS256 from a jwksURL", map[string]any{"access": map[string]any{"auth": map[string]any{"algorithm": "HS256",
			"jwksURL": "https://idp.example/jwks"}}},
			"spec.access.auth.jwksURL holds public keys"},
		{"auth jwksURL not http", map[string]any{"access": map[string]any{"auth": map[string]any{"algorithm": "ES256",
			"jwksURL": "file:///etc/passwd"}}},
			"spec.access.auth.jwksURL"},
		{"maxUnavailable bad percentage", map[string]any{"disruptionBudget": map[string]any{"maxUnavailable": "150%"}},
			"spec.disruptionBudget.maxUnavailable must be a non-negative number or a percentage"},
	}
	cases = append(cases, durabilityRefusals(managed)...)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := createRaw(ns, "bad-"+strings.ToLower(strings.ReplaceAll(intName(i), " ", "-")), tc.spec)
			if err == nil {
				t.Fatalf("the API server accepted an invalid spec %v", tc.spec)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("rejection message does not say %q:\n%v", tc.want, err)
			}
		})
	}
}

func intName(i int) string { return "case-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

// `kubectl scale` goes through the scale subresource: writing it changes spec.replicas.
func TestCometdClusterScaleSubresource(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns},
		Spec: v1.CometdClusterSpec{Replicas: ptr.To[int32](2), NATS: &v1.NATSSpec{Managed: &v1.ManagedNATS{}}}}
	if err := env.Client.Create(ctx, cc); err != nil {
		t.Fatalf("create: %v", err)
	}
	scale := &autoscalingv1.Scale{}
	if err := env.Client.SubResource("scale").Get(ctx, cc, scale); err != nil {
		t.Fatalf("get scale: %v", err)
	}
	if scale.Spec.Replicas != 2 {
		t.Fatalf("scale.spec.replicas = %d, want 2", scale.Spec.Replicas)
	}
	scale.Spec.Replicas = 5
	if err := env.Client.SubResource("scale").Update(ctx, cc, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("update scale: %v", err)
	}
	var got v1.CometdCluster
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(cc), &got); err != nil {
		t.Fatalf("get: %v", err)
	}
	if *got.Spec.Replicas != 5 {
		t.Fatalf("spec.replicas after scale = %d, want 5", *got.Spec.Replicas)
	}
}

// Scaling a single-broker cluster that has no shared backbone is refused by the
// scale subresource too, with the same message as a direct edit.
func TestCometdClusterScaleRefusedWithoutBackbone(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "solo", Namespace: ns}}
	if err := env.Client.Create(ctx, cc); err != nil {
		t.Fatalf("create: %v", err)
	}
	scale := &autoscalingv1.Scale{}
	if err := env.Client.SubResource("scale").Get(ctx, cc, scale); err != nil {
		t.Fatalf("get scale: %v", err)
	}
	scale.Spec.Replicas = 3
	err := env.Client.SubResource("scale").Update(ctx, cc, client.WithSubResourceBody(scale))
	if err == nil || !strings.Contains(err.Error(), "more than one broker needs a shared backbone") {
		t.Fatalf("scaling to 3 without NATS: err = %v, want the shared-backbone rule", err)
	}
}

type refusal = struct {
	name string
	spec map[string]any
	want string
}

// durabilityRefusals are the spec.durability cases of TestCometdClusterValidation.
func durabilityRefusals(managed map[string]any) []refusal {
	durable := func(d map[string]any) map[string]any {
		return map[string]any{"nats": map[string]any{"url": "nats://n:4222"}, "durability": d}
	}
	managedNATS := func(m map[string]any, d map[string]any) map[string]any {
		return map[string]any{"nats": map[string]any{"managed": m}, "durability": d}
	}
	return []refusal{
		{"durability without NATS", map[string]any{"durability": map[string]any{}},
			"spec.durability keeps sessions in NATS JetStream: set spec.nats.managed (the operator enables JetStream on it) or spec.nats.url"},
		{"durability with more replicas than managed NATS servers", managedNATS(map[string]any{"replicas": 1},
			map[string]any{"replicas": 3}),
			"spec.durability.replicas must not exceed spec.nats.managed.replicas"},
		{"durability replicas above the default managed NATS", managedNATS(map[string]any{}, map[string]any{"replicas": 5}),
			"spec.durability.replicas must not exceed spec.nats.managed.replicas"},
		{"durability replicas even", durable(map[string]any{"replicas": 2}), "spec.durability.replicas: Unsupported value: 2"},
		{"durability unknown storage", durable(map[string]any{"storage": "disk"}), `spec.durability.storage: Unsupported value: "disk"`},
		{"durability maxAge too short", durable(map[string]any{"maxAge": "500ms"}), "spec.durability.maxAge must be at least 1s"},
		{"durability maxAge not a duration", durable(map[string]any{"maxAge": "ten minutes"}), "spec.durability.maxAge"},
		{"durability maxBytes zero", durable(map[string]any{"maxBytes": 0}),
			"spec.durability.maxBytes must be a whole number of bytes between 1Mi and 1Ti"},
		{"durability maxBytes negative", durable(map[string]any{"maxBytes": "-1Gi"}),
			"spec.durability.maxBytes must be a whole number of bytes between 1Mi and 1Ti"},
		{"durability maxSessionBytes zero", durable(map[string]any{"maxSessionBytes": "0"}),
			"spec.durability.maxSessionBytes must be a whole number of bytes, at least 1Ki"},
		{"durability maxSessionBytes fractional", durable(map[string]any{"maxSessionBytes": "1500m"}),
			"spec.durability.maxSessionBytes must be a whole number of bytes, at least 1Ki"},
		{"durability maxSessionBytes above maxBytes", durable(map[string]any{"maxBytes": "16Mi", "maxSessionBytes": "32Mi"}),
			"spec.durability.maxSessionBytes must not exceed spec.durability.maxBytes"},
		{"durability maxSessionBytes above the default maxBytes", durable(map[string]any{"maxSessionBytes": "1Gi"}),
			"spec.durability.maxSessionBytes must not exceed spec.durability.maxBytes"},
	}
}

// Durable sessions are accepted with a NATS that can have JetStream, with
// their defaults filled in.
func TestCometdClusterDurability(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	limit := func(mem string) map[string]any {
		return map[string]any{"resources": map[string]any{"limits": map[string]any{"memory": mem}}}
	}
	for _, tc := range []struct {
		name string
		spec map[string]any
	}{
		{"url", map[string]any{"nats": map[string]any{"url": "nats://n:4222"}, "durability": map[string]any{}}},
		{"managed, defaults", map[string]any{"nats": map[string]any{"managed": map[string]any{}}, "durability": map[string]any{}}},
		{"managed, three replicas", map[string]any{"nats": map[string]any{"managed": map[string]any{"replicas": 3}},
			"durability": map[string]any{"replicas": 3, "storage": "file", "maxAge": "1h", "maxBytes": "1Gi", "maxSessionBytes": "1Gi"}}},
		{"managed, five of five", map[string]any{"nats": map[string]any{"managed": map[string]any{"replicas": 5}},
			"durability": map[string]any{"replicas": 5, "maxBytes": 1 << 20, "maxSessionBytes": 1024}}},
		{"memory limit on managed nats", map[string]any{"nats": map[string]any{"managed": limit(fmt.Sprint(544 << 20))},
			"durability": map[string]any{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ",", "")
			if err := createRaw(ns, name, tc.spec); err != nil {
				t.Fatalf("a valid durability spec was refused: %v", err)
			}
		})
	}

	var got v1.CometdCluster
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "managed-defaults"}, &got); err != nil {
		t.Fatal(err)
	}
	d := got.Spec.Durability
	if d == nil || d.Storage != v1.StorageMemory || d.Replicas == nil || *d.Replicas != 1 ||
		d.MaxAge == nil || d.MaxAge.Duration != 10*time.Minute || d.MaxBytes == nil || d.MaxBytes.Value() != 256<<20 ||
		d.MaxSessionBytes == nil || d.MaxSessionBytes.Value() != 64<<10 {
		t.Fatalf("durability defaults = %+v, want memory, 1, 10m, 256Mi, 64Ki", d)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "url"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Durability == nil {
		t.Fatal("spec.durability: {} was dropped")
	}
}
