//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// helm runs the helm binary (E2E_HELM) against the suite's cluster.
func (e env) helm(ctx context.Context, args ...string) (string, error) {
	bin := os.Getenv("E2E_HELM")
	if bin == "" {
		return "", fmt.Errorf("E2E_HELM is not set: run the suite with `make e2e`")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// TestHelmInstall installs the operator the other way users do, with the Helm
// chart, and proves the sample cluster it renders becomes Available and serves
// a third-party client. The kustomize-installed manager is stopped first so that
// exactly one operator reconciles; a later test redeploys it.
func TestHelmInstall(t *testing.T) {
	e := cluster
	ensureNodeModules(t, e)
	ctx := context.Background()
	// One operator at a time: remove the kustomize-installed manager, if any.
	if _, err := e.run(ctx, "", "delete", "deployment", "-n", operatorNamespace, "-l", operatorSelector,
		"--ignore-not-found", "--wait=true"); err != nil {
		t.Fatal(err)
	}
	ns := "e2e-helm-" + randomSuffix()
	const release, name = "cometd", "helm-chat"
	e.kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() {
		if t.Failed() {
			e.collectDiagnostics(t, ns)
		}
		_, _ = e.helm(context.Background(), "uninstall", release, "-n", ns, "--wait")
		_, _ = e.run(context.Background(), "", "delete", "namespace", ns, "--wait=false")
	})
	chart := filepath.Join(e.root, "charts", "cometd-operator")
	out, err := e.helm(ctx, "install", release, chart, "-n", ns,
		"-f", filepath.Join(chart, "examples", "quickstart-managed-nats.yaml"),
		"--set", "image.repository=cometd-operator", "--set", "image.tag=dev",
		"--set", "operator.brokerImage=cometd-broker:dev", "--set", "operator.natsImage=nats:2.15.2",
		"--set", "sampleCluster.name="+name, "--set", "sampleCluster.spec.replicas=2",
		"--set", "sampleCluster.spec.nats.managed.replicas=1",
		"--wait", "--timeout", "3m")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "STATUS: deployed") {
		t.Fatalf("helm install did not report a deployed release:\n%s", out)
	}
	// The chart's manager, under its own ServiceAccount and ClusterRole, brings
	// the sample cluster up.
	waitSettled(t, e, ns, name, 2, 4*time.Minute)
	checkFanout(t, e, ns, name, clientKind{"cometd", "websocket"}, clientKind{"faye", "long-polling"})
}
