package v1alpha1_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

// Every sample in config/samples is accepted by the API server as written, and
// decodes into the Go types without unknown fields.
func TestSamplesAreValid(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "cometd_v1alpha1_*.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("samples: %v, %v (want at least 3)", files, err)
	}
	ns := newNamespace(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var kind struct{ Kind string }
			if err := yaml.Unmarshal(b, &kind); err != nil {
				t.Fatal(err)
			}
			var typed any
			switch kind.Kind {
			case "CometdCluster":
				typed = &v1.CometdCluster{}
			case "ChannelPolicy":
				typed = &v1.ChannelPolicy{}
			default:
				t.Fatalf("unexpected kind %q", kind.Kind)
			}
			if err := yaml.UnmarshalStrict(b, typed); err != nil {
				t.Fatalf("sample has fields the API does not know: %v", err)
			}
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(b, &u.Object); err != nil {
				t.Fatal(err)
			}
			u.SetNamespace(ns)
			if err := env.Client.Create(context.Background(), u); err != nil {
				t.Fatalf("API server refused the sample: %v", err)
			}
		})
	}
}
