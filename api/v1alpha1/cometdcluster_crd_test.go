package v1alpha1_test

import (
	"context"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// The API server applies the CRD's defaults: a CometdCluster created without
// replicas comes back with one.
func TestCometdClusterDefaultsReplicas(t *testing.T) {
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
	if got.Spec.Replicas == nil || *got.Spec.Replicas != 1 {
		t.Fatalf("spec.replicas = %v, want defaulted to 1", got.Spec.Replicas)
	}
}

// `kubectl scale` goes through the scale subresource: writing it changes spec.replicas.
func TestCometdClusterScaleSubresource(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	cc := &v1.CometdCluster{ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: ns},
		Spec: v1.CometdClusterSpec{Replicas: ptr.To[int32](2)}}
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
