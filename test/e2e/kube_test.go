//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// Labels and annotations the operator puts on what it creates (they match
// controllers/resources; the suite keeps its own copy so that it tests the
// operator from the outside).
const (
	labelInstance        = "app.kubernetes.io/instance"
	labelName            = "app.kubernetes.io/name"
	annotationConfigHash = "cometd.bayeux.dev/config-hash"
	operatorNamespace    = "cometd-system"
	operatorSelector     = "app.kubernetes.io/component=manager"
)

// kubectlTimeout bounds every kubectl call.
const kubectlTimeout = 90 * time.Second

// env is the suite's view of the cluster, from the environment make e2e sets.
type env struct {
	root       string // repository root
	kubeconfig string
	kubectlBin string
	kustomize  string
}

func loadEnv() (env, error) {
	e := env{
		kubeconfig: os.Getenv("E2E_KUBECONFIG"),
		kubectlBin: os.Getenv("E2E_KUBECTL"),
		kustomize:  os.Getenv("E2E_KUSTOMIZE"),
	}
	if e.kubeconfig == "" {
		return e, fmt.Errorf("E2E_KUBECONFIG is not set: the e2e suite needs a cluster; run it with `make e2e`")
	}
	if e.kubectlBin == "" {
		e.kubectlBin = "kubectl"
	}
	wd, err := os.Getwd()
	if err != nil {
		return e, err
	}
	e.root = filepath.Clean(filepath.Join(wd, "..", ".."))
	if e.kustomize == "" {
		e.kustomize = filepath.Join(e.root, "bin", "kustomize")
	}
	return e, nil
}

// run runs kubectl with args (and stdin, when not empty) and returns its stdout.
func (e env) run(ctx context.Context, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, kubectlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectlBin, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// kubectl runs kubectl and fails the test on error.
func (e env) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run(context.Background(), "", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply applies a manifest given as a string.
func (e env) apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if _, err := e.run(context.Background(), manifest, "apply", "-n", ns, "-f", "-"); err != nil {
		t.Fatal(err)
	}
}

// getJSON reads an object (or list) into out.
func (e env) getJSON(ctx context.Context, out any, args ...string) error {
	s, err := e.run(ctx, "", append([]string{"get", "-o", "json"}, args...)...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(s), out)
}

// eventually waits (testutil.Eventually) until check reports done without
// an error, and logs how long that took; on timeout the failure carries the
// last state and error check described.
func eventually(t *testing.T, timeout time.Duration, what string, check func(ctx context.Context) (done bool, state string, err error)) {
	t.Helper()
	took := testutil.Eventually(t, timeout, what, func(ctx context.Context) (bool, string) {
		done, state, err := check(ctx)
		if err != nil {
			return false, fmt.Sprintf("%s; last error: %v", state, err)
		}
		return done, state
	})
	t.Logf("%s (%.1fs)", what, took.Seconds())
}

// Minimal views of the objects the suite reads. Only the fields it asserts on.
type (
	objectMeta struct {
		Name              string            `json:"name"`
		UID               string            `json:"uid"`
		Generation        int64             `json:"generation"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
		OwnerReferences   []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"ownerReferences"`
	}
	condition struct {
		Type    string `json:"type"`
		Status  string `json:"status"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	cometdCluster struct {
		Metadata objectMeta `json:"metadata"`
		Status   struct {
			ObservedGeneration int64       `json:"observedGeneration"`
			Replicas           int32       `json:"replicas"`
			ReadyReplicas      int32       `json:"readyReplicas"`
			Endpoint           string      `json:"endpoint"`
			PolicyVersion      string      `json:"policyVersion"`
			Conditions         []condition `json:"conditions"`
		} `json:"status"`
	}
	deployment struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			Replicas int32 `json:"replicas"`
			Template struct {
				Metadata objectMeta `json:"metadata"`
			} `json:"template"`
		} `json:"spec"`
		Status struct {
			ObservedGeneration int64 `json:"observedGeneration"`
			Replicas           int32 `json:"replicas"`
			UpdatedReplicas    int32 `json:"updatedReplicas"`
			ReadyReplicas      int32 `json:"readyReplicas"`
			AvailableReplicas  int32 `json:"availableReplicas"`
		} `json:"status"`
	}
	pod struct {
		Metadata objectMeta `json:"metadata"`
		Spec     struct {
			ServiceAccountName string `json:"serviceAccountName"`
		} `json:"spec"`
		Status struct {
			Phase      string      `json:"phase"`
			PodIP      string      `json:"podIP"`
			Conditions []condition `json:"conditions"`
		} `json:"status"`
	}
	list[T any] struct {
		Items []T `json:"items"`
	}
)

func (c cometdCluster) condition(typ string) condition {
	for _, cond := range c.Status.Conditions {
		if cond.Type == typ {
			return cond
		}
	}
	return condition{Type: typ, Status: "Unknown"}
}

// readyCount is how many of pods are ready.
func readyCount(pods []pod) int {
	n := 0
	for _, p := range pods {
		if p.ready() {
			n++
		}
	}
	return n
}

func (p pod) ready() bool {
	if p.Metadata.DeletionTimestamp != nil || p.Status.Phase != "Running" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// testNamespace creates a namespace named prefix and a random suffix, which
// the test's cleanup deletes, after collecting its diagnostics if the test
// failed.
func (e env) testNamespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := prefix + randomSuffix()
	e.kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() { _, _ = e.run(context.Background(), "", "delete", "namespace", ns, "--wait=false") })
	t.Cleanup(func() {
		if t.Failed() {
			e.collectDiagnostics(t, ns)
		}
	})
	return ns
}

// collectDiagnostics writes what is needed to understand a failure under
// bin/e2e-artifacts/<test>/ and logs the most useful parts.
func (e env) collectDiagnostics(t *testing.T, namespaces ...string) {
	dir := filepath.Join(e.root, "bin", "e2e-artifacts", strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().UTC().Format("150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("diagnostics: %v", err)
		return
	}
	ctx := context.Background()
	save := func(name string, args ...string) string {
		out, err := e.run(ctx, "", args...)
		if err != nil {
			out += "\n" + err.Error()
		}
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
		return out
	}
	save("nodes.txt", "describe", "nodes")
	for _, ns := range append(namespaces, operatorNamespace) {
		save(ns+"-objects.txt", "get", "all,cometdclusters,configmaps,pdb,events", "-n", ns, "-o", "wide")
		events := save(ns+"-events.txt", "get", "events", "-n", ns, "--sort-by=.lastTimestamp")
		t.Logf("kubectl get events -n %s:\n%s", ns, tail(events, 40))
		save(ns+"-pods-describe.txt", "describe", "pods", "-n", ns)
		var pods list[pod]
		if err := e.getJSON(ctx, &pods, "pods", "-n", ns); err == nil {
			for _, p := range pods.Items {
				logs := save(ns+"-"+p.Metadata.Name+".log", "logs", "-n", ns, p.Metadata.Name, "--all-containers", "--tail=500")
				if prev, err := e.run(ctx, "", "logs", "-n", ns, p.Metadata.Name, "--all-containers", "--previous", "--tail=200"); err == nil {
					_ = os.WriteFile(filepath.Join(dir, ns+"-"+p.Metadata.Name+".previous.log"), []byte(prev), 0o644)
				}
				if ns == operatorNamespace {
					t.Logf("operator log %s:\n%s", p.Metadata.Name, tail(logs, 30))
				}
			}
		}
	}
	t.Logf("diagnostics written to %s", dir)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
