// Package helm proves that the Helm chart installs what config/ installs: the same
// CRDs and the same manager permissions, and that its templates render.
package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/cometd-operator/cometd-operator/internal/testenv"
)

var (
	root  = testenv.RepoRoot()
	chart = filepath.Join(root, "charts", "cometd-operator")
)

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("HELM")
	if h == "" {
		t.Fatal("HELM is not set: run the tests with `make test` (it installs helm into bin/)")
	}
	if _, err := os.Stat(h); err != nil {
		t.Fatalf("helm binary %s: %v (run `make helm`)", h, err)
	}
	return h
}

// render runs `helm template` with the given values files and splits the output
// into documents.
func render(t *testing.T, valuesFiles ...string) []map[string]any {
	t.Helper()
	args := []string{"template", "cometd", chart, "-n", "cometd-system", "--include-crds", "--kube-version", "1.37.2"}
	for _, f := range valuesFiles {
		args = append(args, "-f", f)
	}
	out, err := exec.Command(helmBin(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", valuesFiles, err, out)
	}
	var docs []map[string]any
	for _, part := range bytes.Split(out, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(part, &m); err != nil {
			t.Fatalf("helm output is not YAML: %v\n%s", err, part)
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
	return docs
}

func find(docs []map[string]any, kind string) []map[string]any {
	var out []map[string]any
	for _, d := range docs {
		if d["kind"] == kind {
			out = append(out, d)
		}
	}
	return out
}

// The chart's crds/ folder holds exactly the generated CRDs.
func TestChartCRDsMatchGenerated(t *testing.T) {
	gen, err := filepath.Glob(filepath.Join(root, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(gen) == 0 {
		t.Fatalf("no generated CRDs: %v", err)
	}
	inChart, _ := filepath.Glob(filepath.Join(chart, "crds", "*.yaml"))
	if len(inChart) != len(gen) {
		t.Fatalf("chart has %d CRDs, config/crd/bases has %d: run `make manifests`", len(inChart), len(gen))
	}
	for _, g := range gen {
		want, _ := os.ReadFile(g)
		got, err := os.ReadFile(filepath.Join(chart, "crds", filepath.Base(g)))
		if err != nil {
			t.Fatalf("chart lacks %s: %v", filepath.Base(g), err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("chart CRD %s differs from the generated one: run `make manifests`", filepath.Base(g))
		}
	}
	// And helm really installs them.
	crds := find(render(t), "CustomResourceDefinition")
	if len(crds) != len(gen) {
		t.Errorf("helm template --include-crds renders %d CRDs, want %d", len(crds), len(gen))
	}
}

// The ClusterRole the chart renders grants exactly the generated manager role's rules.
func TestChartRBACMatchesGenerated(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.ClusterRole
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Rules) == 0 {
		t.Fatal("generated role has no rules")
	}
	roles := find(render(t), "ClusterRole")
	if len(roles) != 1 {
		t.Fatalf("chart renders %d ClusterRoles, want 1", len(roles))
	}
	b, _ := yaml.Marshal(roles[0])
	var got rbacv1.ClusterRole
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("chart ClusterRole rules differ from config/rbac/role.yaml:\n got %+v\nwant %+v", got.Rules, want.Rules)
	}
}

// Every examples file renders, and the values reach the objects.
func TestChartExamplesRender(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(chart, "examples", "*.yaml"))
	if len(files) < 3 {
		t.Fatalf("want at least 3 examples, found %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			docs := render(t, f)
			if n := len(find(docs, "Deployment")); n != 1 {
				t.Fatalf("%d manager Deployments, want 1", n)
			}
			if n := len(find(docs, "CometdCluster")); n != 1 {
				t.Fatalf("%d sample CometdClusters, want 1", n)
			}
		})
	}
	docs := render(t, filepath.Join(chart, "examples", "production.yaml"))
	if n := len(find(docs, "ServiceMonitor")); n != 1 {
		t.Errorf("production example renders %d ServiceMonitors, want 1", n)
	}
	if n := len(find(docs, "ChannelPolicy")); n != 1 {
		t.Errorf("production example renders %d ChannelPolicies, want 1", n)
	}
	docs = render(t)
	dep, _ := yaml.Marshal(find(docs, "Deployment")[0])
	if !strings.Contains(string(dep), "readOnlyRootFilesystem: true") || !strings.Contains(string(dep), "runAsNonRoot: true") {
		t.Errorf("manager pod is not non-root with a read-only root filesystem:\n%s", dep)
	}
}

// The Role the chart renders for leader election grants exactly the rules of
// config/rbac/leader_election_role.yaml, and is bound to the manager's
// ServiceAccount.
func TestChartLeaderElectionRoleMatchesGenerated(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "config", "rbac", "leader_election_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.Role
	if err := yaml.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Rules) == 0 {
		t.Fatal("config/rbac/leader_election_role.yaml has no rules")
	}
	docs := render(t)
	roles := find(docs, "Role")
	if len(roles) != 1 {
		t.Fatalf("chart renders %d Roles, want 1 (leader election)", len(roles))
	}
	var got rbacv1.Role
	b, _ := yaml.Marshal(roles[0])
	if err := yaml.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("chart leader-election Role rules differ from config/rbac/leader_election_role.yaml:\n got %+v\nwant %+v", got.Rules, want.Rules)
	}
	if got.Namespace != "cometd-system" {
		t.Errorf("leader-election Role is in namespace %q, want the release namespace", got.Namespace)
	}
	var sa string
	for _, d := range find(docs, "ServiceAccount") {
		var o rbacv1.Subject
		b, _ := yaml.Marshal(d["metadata"])
		if err := yaml.Unmarshal(b, &o); err != nil {
			t.Fatal(err)
		}
		sa = o.Name
	}
	bound := false
	for _, d := range find(docs, "RoleBinding") {
		var rb rbacv1.RoleBinding
		b, _ := yaml.Marshal(d)
		if err := yaml.Unmarshal(b, &rb); err != nil {
			t.Fatal(err)
		}
		if rb.RoleRef.Kind != "Role" || rb.RoleRef.Name != got.Name {
			continue
		}
		for _, s := range rb.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == "cometd-system" {
				bound = true
			}
		}
	}
	if sa == "" || !bound {
		t.Errorf("no RoleBinding binds Role %s to the manager's ServiceAccount %q", got.Name, sa)
	}
}

// The manager always runs with leader election, whatever replicaCount: during
// `helm upgrade` (or any pod replacement) the old and the new pod run side by
// side, and without a Lease both would reconcile.
func TestChartAlwaysElectsALeader(t *testing.T) {
	for _, values := range []string{"", filepath.Join(chart, "examples", "production.yaml")} {
		var docs []map[string]any
		if values == "" {
			docs = render(t)
		} else {
			docs = render(t, values)
		}
		deps := find(docs, "Deployment")
		if len(deps) != 1 {
			t.Fatalf("values %q: %d Deployments, want 1", values, len(deps))
		}
		b, _ := yaml.Marshal(deps[0])
		var dep appsv1.Deployment
		if err := yaml.Unmarshal(b, &dep); err != nil {
			t.Fatal(err)
		}
		args := dep.Spec.Template.Spec.Containers[0].Args
		if !slices.Contains(args, "--leader-elect") || slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--leader-elect=") }) {
			t.Errorf("values %q: manager args %q, want --leader-elect and no --leader-elect=...", values, args)
		}
	}
}
