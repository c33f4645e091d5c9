package resources

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
)

// BenchmarkRenderAllChildren measures what one reconcile spends building the
// desired state: every builder of a managed-NATS cluster, applied to objects
// that are already as desired (the steady state, a no-op).
func BenchmarkRenderAllChildren(b *testing.B) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		b.Fatal(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		b.Fatal(err)
	}
	cc := cluster(managed)
	doc := []byte(`{"apiVersion":"cometd.bayeux.dev/policy/v1","default":"allow"}`)
	bs, err := Builders(cc, Options{}, s, doc)
	if err != nil {
		b.Fatal(err)
	}
	var current []client.Object
	for _, bl := range bs {
		o := bl.Build()
		if err := bl.Update(o); err != nil {
			b.Fatal(err)
		}
		current = append(current, o)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bs, err := Builders(cc, Options{}, s, doc)
		if err != nil {
			b.Fatal(err)
		}
		for i, bl := range bs {
			o := current[i].DeepCopyObject().(client.Object)
			if err := bl.Update(o); err != nil {
				b.Fatal(err)
			}
		}
	}
}
