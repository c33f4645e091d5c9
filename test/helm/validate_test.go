package helm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.RunMain(m, &env)) }

// The custom resources every examples file renders are accepted by the real API
// server's OpenAPI and CEL validation: a user who copies an example gets no error.
func TestChartExamplesAreValidObjects(t *testing.T) {
	ctx := context.Background()
	files, _ := filepath.Glob(filepath.Join(chart, "examples", "*.yaml"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "helm-example-"}}
			if err := env.Client.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = env.Client.Delete(ctx, ns) })
			checked := 0
			for _, doc := range render(t, f) {
				kind, _ := doc["kind"].(string)
				if kind != "CometdCluster" && kind != "ChannelPolicy" {
					continue
				}
				u := &unstructured.Unstructured{Object: doc}
				u.SetNamespace(ns.Name)
				if err := env.Client.Create(ctx, u, client.DryRunAll); err != nil {
					t.Errorf("%s %s from %s is refused by the API server: %v", kind, u.GetName(), filepath.Base(f), err)
				}
				checked++
			}
			if checked == 0 {
				t.Fatalf("%s renders no CometdCluster or ChannelPolicy", filepath.Base(f))
			}
		})
	}
}
