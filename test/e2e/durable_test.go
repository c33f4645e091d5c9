//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/jsclient"
)

// durableRecoveryBound is how soon, after a broker pod's death, every client
// of a durable cluster must publish and receive through the Service again.
const durableRecoveryBound = 15 * time.Second

// TestDurableSessionsSurviveBrokerDeaths runs a three-broker CometdCluster
// with spec.durability under 50 publishes a second to CometD ack clients
// (long-polling and websocket) and Faye clients, and kills a broker pod
// twice: `kubectl delete pod --grace-period=0 --force`, then a SIGKILL of
// the broker's process on the node. After each, every client publishes and
// receives again within durableRecoveryBound; at the end the ack clients have
// lost and duplicated nothing, and no client (the publisher included) has
// handshaken again: their sessions were adopted, clientIds and all.
func TestDurableSessionsSurviveBrokerDeaths(t *testing.T) {
	e := cluster
	ensureNodeModules(t, e)
	deployOperator(t, e)
	ns := e.testNamespace(t, "e2e-durable-")
	const name = "durable"
	e.apply(t, ns, fmt.Sprintf(`apiVersion: cometd.bayeux.dev/v1alpha1
kind: CometdCluster
metadata:
  name: %s
spec:
  replicas: 3
  nats:
    managed:
      replicas: 3
  durability:
    storage: memory
    replicas: 3
`, name))
	waitSettled(t, e, ns, name, 3, 4*time.Minute)
	tr := startTraffic(t, e, ns, name, "durable")
	acks, pub, pubClient := tr.acks, tr.pub, tr.pubClient
	all := append(append([]*jsclient.Client(nil), acks...), tr.others...)

	kills := []struct {
		how  string
		kill func(t *testing.T, pod string)
	}{
		{"force-deleted", func(t *testing.T, pod string) {
			e.kubectl(t, "delete", "pod", pod, "-n", ns, "--grace-period=0", "--force")
		}},
		{"SIGKILLed", func(t *testing.T, pod string) { sigkillPod(t, pod) }},
	}
	for k, kl := range kills {
		// The pod that created the first ack client's session: it holds it,
		// or handed it to another broker when the operator rebalanced.
		first := acks[k%len(acks)].Wait(func(ev jsclient.Event) bool { return ev.Ev == "ready" }, "ready")
		victim, _, _ := strings.Cut(first.ClientID, "~")
		if !e.podExists(t, ns, victim) {
			pods, err := e.brokerPods(context.Background(), ns, name)
			if err != nil || len(pods) == 0 {
				t.Fatalf("broker pods: %v", err)
			}
			victim = pods[0].Metadata.Name
		}
		sentBefore := pub.Sent() // publishes from this index on were sent after the kill
		killed := time.Now()
		kl.kill(t, victim)
		var took time.Duration
		eventually(t, 2*durableRecoveryBound, "every client to receive a message published after the kill", func(context.Context) (bool, string, error) {
			ok, state := jsclient.ReceivedByAll(pubClient, sentBefore, all)
			if ok {
				took = time.Since(killed)
			}
			return ok, state, nil
		})
		t.Logf("broker %s %s: every client publishing and receiving again after %v", victim, kl.how, took.Round(10*time.Millisecond))
		if took > durableRecoveryBound {
			t.Errorf("recovery took %v, more than %v", took, durableRecoveryBound)
		}
		waitSettled(t, e, ns, name, 3, 4*time.Minute)
		tr.waitSent(pub.Sent() + 25)
	}
	tr.finish()
}

// podExists reports whether the pod exists and is not being deleted.
func (e env) podExists(t *testing.T, ns, pod string) bool {
	out, err := e.run(context.Background(), "", "get", "pod", pod, "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}")
	return err == nil && strings.TrimSpace(out) == ""
}

// sigkillPod SIGKILLs the broker process of pod, which runs on this machine
// (the local cluster's only node), found by its POD_NAME.
func sigkillPod(t *testing.T, pod string) {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	want := []byte("\x00POD_NAME=" + pod + "\x00")
	for _, d := range dirs {
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), want) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL broker %s (pid %d): %v", pod, pid, err)
		}
		return
	}
	t.Fatalf("no process of pod %s on this machine", pod)
}
