// Package conformance runs clients nobody here wrote (the CometD JavaScript
// client and the Faye Node client) against the real broker binary, over every
// transport they support, and checks the broker's process-level behaviour
// (admin endpoints, drain on SIGTERM).
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
)

// repoRoot is the module root.
func repoRoot(t *testing.T) string { return brokertest.RepoRoot(t) }

// brokerBinary builds cmd/broker, with the race detector, once per test process.
func brokerBinary(t *testing.T) string { return brokertest.Binary(t, "./cmd/broker", true) }

// requireNode fails (never skips) when node or the npm clients are missing.
func requireNode(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the conformance suite runs the CometD and Faye clients with node")
	}
	for _, pkg := range []string{"cometd", "cometd-nodejs-client", "faye"} {
		if _, err := os.Stat(filepath.Join(repoRoot(t), "test", "conformance", "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is missing from test/conformance/node_modules: run `make npm-deps`", pkg)
		}
	}
}

// broker is a running broker process.
type broker = brokertest.Broker

// startBroker runs the broker binary on loopback ports chosen by the kernel.
func startBroker(t *testing.T, env ...string) *broker {
	t.Helper()
	return brokertest.Start(t, brokerBinary(t), "conformance-0", []string{"--node", "conformance-0"}, env...)
}

// runNode runs a node script from this directory with a deadline and returns
// its stdout, stderr and error.
func runNode(t *testing.T, timeout time.Duration, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = filepath.Join(repoRoot(t), "test", "conformance")
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("node %s: deadline of %v exceeded: %w", strings.Join(args, " "), timeout, err)
	}
	return stdout.String(), stderr.String(), err
}

// sigterm is the signal Kubernetes sends to stop a pod.
var sigterm = syscall.SIGTERM
