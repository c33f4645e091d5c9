//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// probeSubscribe asks the CometD JavaScript client to subscribe to channel at
// url once and reports whether the server allowed it (and its error if not).
func probeSubscribe(ctx context.Context, e env, url, channel string) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "clients.mjs", "probe", "cometd", url, channel)
	cmd.Dir = filepath.Join(e.root, "test", "e2e")
	cmd.Env = append(os.Environ(), "DEADLINE_MS=20000")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	var ev struct {
		Event      string `json:"event"`
		Successful bool   `json:"successful"`
		Error      string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(strings.TrimSpace(lastLine(string(out)))), &ev); jerr != nil || ev.Event != "subscribe" {
		return false, "", fmt.Errorf("probe: %v; output %q", err, out)
	}
	return ev.Successful, ev.Error, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// enforcedEverywhere waits until subscribing to channel through every broker
// pod directly gives want (allowed or not).
func enforcedEverywhere(t *testing.T, e env, ns, name, channel string, want bool, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("subscribe %s allowed=%v on every broker", channel, want), func(ctx context.Context) (bool, string, error) {
		eps, err := e.serviceEndpoints(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		var state []string
		done := len(eps) > 0
		for _, ep := range eps {
			ok, errMsg, err := probeSubscribe(ctx, e, ep.url, channel)
			if err != nil {
				return false, strings.Join(state, "; "), err
			}
			state = append(state, fmt.Sprintf("%s allowed=%v %s", ep.pod, ok, errMsg))
			done = done && ok == want
		}
		return done, strings.Join(state, "; "), nil
	})
}

// restarts is the broker pods' identity and container restart counts, to show
// that nothing restarted.
func (e env) restarts(t *testing.T, ns, name string) string {
	t.Helper()
	out := e.kubectl(t, "get", "pods", "-n", ns, "-l", labelName+"=cometd-broker,"+labelInstance+"="+name,
		"-o", `jsonpath={range .items[*]}{.metadata.uid}={.status.containerStatuses[0].restartCount} {end}`)
	return strings.TrimSpace(out)
}

// TestChannelPolicyHotReload applies a ChannelPolicy to a running cluster and
// checks that every broker starts enforcing it, then stops when it is deleted,
// with no pod restarted or replaced.
func TestChannelPolicyHotReload(t *testing.T) {
	e := cluster
	ensureNodeModules(t, e)
	deployOperator(t, e)
	ns := e.testNamespace(t, "e2e-policy-")
	const name = "guarded"

	e.apply(t, ns, fmt.Sprintf(`apiVersion: cometd.bayeux.dev/v1alpha1
kind: CometdCluster
metadata:
  name: %s
spec:
  replicas: 2
  nats:
    managed:
      replicas: 1
`, name))
	waitSettled(t, e, ns, name, 2, 4*time.Minute)
	const guarded, open = "/e2e/guarded/room", "/e2e/open/room"
	enforcedEverywhere(t, e, ns, name, guarded, true, time.Minute)
	before := e.restarts(t, ns, name)
	cc, err := e.getCluster(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	versionBefore := cc.Status.PolicyVersion

	e.apply(t, ns, fmt.Sprintf(`apiVersion: cometd.bayeux.dev/v1alpha1
kind: ChannelPolicy
metadata:
  name: deny-guarded
spec:
  clusterName: %s
  rules:
  - name: no-guarded-subscriptions
    effect: deny
    actions: [subscribe]
    channels: ["/e2e/guarded/**"]
    principals: ["*"]
`, name))
	// Brokers see a ConfigMap volume update on the kubelet's next sync of the pod
	// (up to its sync period, a minute by default) plus their own poll interval.
	eventually(t, 3*time.Minute, "the ChannelPolicy Accepted and a new policy version applied", func(ctx context.Context) (bool, string, error) {
		var cp struct {
			Status struct {
				Conditions []condition `json:"conditions"`
			} `json:"status"`
		}
		if err := e.getJSON(ctx, &cp, "channelpolicy", "deny-guarded", "-n", ns); err != nil {
			return false, "", err
		}
		cc, err := e.getCluster(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		accepted := condition{Status: "Unknown"}
		for _, c := range cp.Status.Conditions {
			if c.Type == "Accepted" {
				accepted = c
			}
		}
		applied := cc.condition("PolicyApplied")
		state := fmt.Sprintf("Accepted=%s (%s), policyVersion %q -> %q, PolicyApplied=%s (%s)",
			accepted.Status, accepted.Reason, versionBefore, cc.Status.PolicyVersion, applied.Status, applied.Reason)
		return accepted.Status == "True" && cc.Status.PolicyVersion != versionBefore && applied.Status == "True", state, nil
	})
	// A ConfigMap volume update reaches the pods on the kubelet's sync period.
	enforcedEverywhere(t, e, ns, name, guarded, false, 3*time.Minute)
	enforcedEverywhere(t, e, ns, name, open, true, time.Minute)

	e.kubectl(t, "delete", "channelpolicy", "deny-guarded", "-n", ns)
	enforcedEverywhere(t, e, ns, name, guarded, true, 3*time.Minute)

	if after := e.restarts(t, ns, name); after != before {
		t.Errorf("broker pods changed while the policy changed: before %q, after %q", before, after)
	}
}
