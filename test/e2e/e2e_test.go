//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/jsclient"
)

var cluster env

func TestMain(m *testing.M) {
	var err error
	cluster, err = loadEnv()
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = cluster.run(ctx, "", "get", "--raw", "/readyz")
		cancel()
		if err != nil {
			err = fmt.Errorf("the cluster of E2E_KUBECONFIG=%s is not reachable: %w", cluster.kubeconfig, err)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestCometdClusterLifecycle walks a user's path: install the operator, create a
// three-broker cluster with managed NATS, use it with third-party clients
// through its Service, scale it, change a broker setting, delete it.
// Each step needs the previous one, so the first failure ends the test.
func TestCometdClusterLifecycle(t *testing.T) {
	e := cluster
	ensureNodeModules(t, e)
	ns := "e2e-" + randomSuffix()
	const name = "e2e"

	e.kubectl(t, "create", "namespace", ns)
	t.Cleanup(func() {
		_, _ = e.run(context.Background(), "", "delete", "namespace", ns, "--wait=false")
	})

	// Faye upgrades to websocket after handshaking over HTTP, so behind a
	// Service its websocket may reach another pod than the one that owns its
	// session; several subscribers make that case (near) certain to occur.
	fayeWS := []clientKind{{"faye", "websocket"}, {"faye", "websocket"}, {"faye", "websocket"}, {"faye", "websocket"}}
	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"DeployOperator", func(t *testing.T) { deployOperator(t, e) }},
		{"ThreeBrokersWithManagedNATSBecomeAvailable", func(t *testing.T) { createCluster(t, e, ns, name) }},
		{"ManagedNATSRefusesStrangers", func(t *testing.T) { natsRefusesStrangers(t, e, ns, name) }},
		{"ThirdPartyClientsFanOutAcrossPods", func(t *testing.T) { checkFanout(t, e, ns, name, allClients...) }},
		{"FayeWebSocketAcrossPods", func(t *testing.T) { checkFanout(t, e, ns, name, fayeWS...) }},
		{"ScaleTo5", func(t *testing.T) { scale(t, e, ns, name, 5) }},
		{"ScaleTo2", func(t *testing.T) { scale(t, e, ns, name, 2) }},
		{"FanOutAfterScaling", func(t *testing.T) { checkFanout(t, e, ns, name, allClients...) }},
		{"ScaleTo3", func(t *testing.T) { scale(t, e, ns, name, 3) }},
		{"ForceDeletedBrokerClientsRecover", func(t *testing.T) { forceDeletedBrokerClientsRecover(t, e, ns, name) }},
		{"BrokerSettingRollsPodsLosingNothing", func(t *testing.T) {
			withTraffic(t, e, ns, name, func(t *testing.T) { rollingRestart(t, e, ns, name) })
		}},
		{"ScaleTo1LosingNothing", func(t *testing.T) {
			withTraffic(t, e, ns, name, func(t *testing.T) { scale(t, e, ns, name, 1) })
		}},
		{"AutoscaleOnSessionsLosingNothing", func(t *testing.T) { autoscaleOnSessions(t, e, ns, name) }},
		{"DeleteGarbageCollects", func(t *testing.T) { deleteCluster(t, e, ns, name) }},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			e.collectDiagnostics(t, ns)
			t.FailNow()
		}
	}
}

// allClients are the CometD JavaScript client and the Faye client over
// websocket and long-polling (Faye's websocket also has a step of its own).
var allClients = []clientKind{{"cometd", "websocket"}, {"cometd", "long-polling"}, {"faye", "websocket"}, {"faye", "long-polling"}}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// deployOperator installs the CRDs and the operator with kustomize from
// config/default, exactly as hack/cluster/deploy.sh does for `make run`, then
// checks that the manager runs under its own ServiceAccount whose RBAC allows
// what the operator needs and no more than that in the places checked.
func deployOperator(t *testing.T, e env) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.root+"/hack/cluster/deploy.sh")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+e.kubeconfig, "KUSTOMIZE="+e.kustomize)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy.sh: %v\n%s", err, out)
	}
	var pods list[pod]
	if err := e.getJSON(ctx, &pods, "pods", "-n", operatorNamespace, "-l", operatorSelector); err != nil {
		t.Fatal(err)
	}
	sa := ""
	ready := 0
	for _, p := range pods.Items {
		if p.ready() {
			ready++
			sa = p.Spec.ServiceAccountName
		}
	}
	if ready == 0 {
		t.Fatalf("no ready manager pod in %s", operatorNamespace)
	}
	if sa == "" || sa == "default" {
		t.Fatalf("the manager runs as ServiceAccount %q, want its own", sa)
	}
	as := "--as=system:serviceaccount:" + operatorNamespace + ":" + sa
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "cometdclusters.cometd.bayeux.dev"}, "yes"},
		{[]string{"patch", "cometdclusters.cometd.bayeux.dev", "--subresource=status"}, "yes"},
		{[]string{"create", "deployments.apps"}, "yes"},
		{[]string{"create", "statefulsets.apps"}, "yes"},
		{[]string{"create", "services"}, "yes"},
		{[]string{"create", "configmaps"}, "yes"},
		{[]string{"create", "poddisruptionbudgets.policy"}, "yes"},
		{[]string{"delete", "nodes"}, "no"},
		{[]string{"create", "clusterrolebindings.rbac.authorization.k8s.io"}, "no"},
		{[]string{"escalate", "clusterroles.rbac.authorization.k8s.io"}, "no"},
	} {
		out, _ := e.run(ctx, "", append(append([]string{"auth", "can-i"}, c.args...), "-A", as)...)
		if got := strings.TrimSpace(out); got != c.want {
			t.Errorf("can the manager %s? %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
}

func clusterManifest(name string, replicas int, maxQueue int) string {
	return fmt.Sprintf(`apiVersion: cometd.bayeux.dev/v1alpha1
kind: CometdCluster
metadata:
  name: %s
spec:
  replicas: %d
  broker:
    maxQueue: %d
  nats:
    managed:
      replicas: 3
`, name, replicas, maxQueue)
}

func (e env) getCluster(ctx context.Context, ns, name string) (cometdCluster, error) {
	var cc cometdCluster
	err := e.getJSON(ctx, &cc, "cometdcluster", name, "-n", ns)
	return cc, err
}

// brokerPods lists the cluster's broker pods that are not being deleted.
func (e env) brokerPods(ctx context.Context, ns, name string) ([]pod, error) {
	var pods list[pod]
	if err := e.getJSON(ctx, &pods, "pods", "-n", ns, "-l", labelName+"=cometd-broker,"+labelInstance+"="+name); err != nil {
		return nil, err
	}
	var out []pod
	for _, p := range pods.Items {
		if p.Metadata.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}

// waitSettled waits until the CometdCluster reports replicas ready brokers for
// its current generation and is Available, and the Deployment agrees.
func waitSettled(t *testing.T, e env, ns, name string, replicas int32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s/%s Available with %d ready brokers", ns, name, replicas), func(ctx context.Context) (bool, string, error) {
		cc, err := e.getCluster(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		var d deployment
		if err := e.getJSON(ctx, &d, "deployment", name, "-n", ns); err != nil {
			return false, "", err
		}
		pods, err := e.brokerPods(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		ready := readyCount(pods)
		avail := cc.condition("Available")
		state := fmt.Sprintf("generation %d observed %d, status %d/%d ready, Available=%s (%s), deployment %d/%d updated %d ready %d, pods %d ready %d",
			cc.Metadata.Generation, cc.Status.ObservedGeneration, cc.Status.ReadyReplicas, cc.Status.Replicas, avail.Status, avail.Reason,
			d.Spec.Replicas, d.Status.Replicas, d.Status.UpdatedReplicas, d.Status.ReadyReplicas, len(pods), ready)
		done := cc.Status.ObservedGeneration == cc.Metadata.Generation &&
			avail.Status == "True" &&
			cc.Status.ReadyReplicas == replicas &&
			d.Status.ObservedGeneration == d.Metadata.Generation &&
			d.Spec.Replicas == replicas && d.Status.Replicas == replicas &&
			d.Status.UpdatedReplicas == replicas && d.Status.ReadyReplicas == replicas &&
			len(pods) == int(replicas) && ready == int(replicas)
		return done, state, nil
	})
}

func createCluster(t *testing.T, e env, ns, name string) {
	e.apply(t, ns, clusterManifest(name, 3, 1000))
	waitSettled(t, e, ns, name, 3, 4*time.Minute)

	ctx := context.Background()
	cc, err := e.getCluster(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%s.%s.svc", name, ns); !strings.Contains(cc.Status.Endpoint, want) {
		t.Errorf("status.endpoint = %q, want it to name %s", cc.Status.Endpoint, want)
	}
	// Managed NATS: a StatefulSet of three ready servers, owned by the cluster.
	var sts struct {
		Metadata objectMeta `json:"metadata"`
		Status   struct {
			ReadyReplicas int32 `json:"readyReplicas"`
		} `json:"status"`
	}
	eventually(t, 2*time.Minute, "3 ready managed NATS servers", func(ctx context.Context) (bool, string, error) {
		if err := e.getJSON(ctx, &sts, "statefulset", name+"-nats", "-n", ns); err != nil {
			return false, "", err
		}
		return sts.Status.ReadyReplicas == 3, fmt.Sprintf("%d ready", sts.Status.ReadyReplicas), nil
	})
	// Fan-out needs the NATS servers meshed, which can take a while after they
	// are ready: each server resolves its peers through the headless Service,
	// and a name looked up before the Service had endpoints stays negatively
	// cached (CoreDNS cache, 30 s). Available does not cover this yet.
	eventually(t, 2*time.Minute, "managed NATS servers meshed (each routes to the 2 others)", func(ctx context.Context) (bool, string, error) {
		return natsMeshed(ctx, e, ns, name, 3)
	})
	// The operator says so too: FanoutReady checks the same routes and every
	// broker's backbone connection.
	eventually(t, 2*time.Minute, "FanoutReady=True on the CometdCluster", func(ctx context.Context) (bool, string, error) {
		cc, err := e.getCluster(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		c := cc.condition("FanoutReady")
		return c.Status == "True", fmt.Sprintf("%s/%s: %s", c.Status, c.Reason, c.Message), nil
	})
	// The operator reports what it does as events on the CometdCluster.
	eventually(t, time.Minute, "events about the CometdCluster", func(ctx context.Context) (bool, string, error) {
		out, err := e.run(ctx, "", "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=CometdCluster,involvedObject.name="+name, "-o", "name")
		return err == nil && strings.TrimSpace(out) != "", "none", err
	})
	if len(sts.Metadata.OwnerReferences) == 0 || sts.Metadata.OwnerReferences[0].Kind != "CometdCluster" || sts.Metadata.OwnerReferences[0].Name != name {
		t.Errorf("NATS StatefulSet owner references = %+v, want the CometdCluster %s", sts.Metadata.OwnerReferences, name)
	}
}

// natsMeshed reports whether each of the cluster's n NATS servers has routes to
// the n-1 others, from their monitoring endpoint (/routez on port 8222).
func natsMeshed(ctx context.Context, e env, ns, name string, n int) (bool, string, error) {
	var pods list[pod]
	if err := e.getJSON(ctx, &pods, "pods", "-n", ns, "-l", labelName+"=nats,"+labelInstance+"="+name); err != nil {
		return false, "", err
	}
	var state []string
	meshed := len(pods.Items) == n
	for _, p := range pods.Items {
		peers, err := natsPeers(ctx, p.Status.PodIP)
		if err != nil {
			return false, strings.Join(state, ", "), err
		}
		state = append(state, fmt.Sprintf("%s routes to %v", p.Metadata.Name, peers))
		meshed = meshed && len(peers) == n-1
	}
	return meshed, strings.Join(state, ", "), nil
}

func natsPeers(ctx context.Context, ip string) ([]string, error) {
	if ip == "" {
		return nil, fmt.Errorf("no pod IP yet")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, "8222")+"/routez", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var peers []string
	for _, r := range rz.Routes {
		if r.RemoteName != "" && !seen[r.RemoteName] {
			seen[r.RemoteName] = true
			peers = append(peers, r.RemoteName)
		}
	}
	sort.Strings(peers)
	return peers, nil
}

func scale(t *testing.T, e env, ns, name string, replicas int32) {
	e.kubectl(t, "scale", "cometdcluster/"+name, "-n", ns, fmt.Sprintf("--replicas=%d", replicas))
	waitSettled(t, e, ns, name, replicas, 4*time.Minute)
}

// rollingRestart changes a broker setting and checks that every broker pod is
// replaced by one started with the new configuration.
func rollingRestart(t *testing.T, e env, ns, name string) {
	ctx := context.Background()
	var before deployment
	if err := e.getJSON(ctx, &before, "deployment", name, "-n", ns); err != nil {
		t.Fatal(err)
	}
	oldHash := before.Spec.Template.Metadata.Annotations[annotationConfigHash]
	if oldHash == "" {
		t.Fatalf("the broker pod template has no %s annotation", annotationConfigHash)
	}
	oldPods, err := e.brokerPods(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, p := range oldPods {
		old[p.Metadata.UID] = true
	}
	replicas := int32(len(oldPods))

	e.kubectl(t, "patch", "cometdcluster/"+name, "-n", ns, "--type=merge", "-p", `{"spec":{"broker":{"maxQueue":2345}}}`)
	eventually(t, 4*time.Minute, "every broker pod replaced by one with the new configuration", func(ctx context.Context) (bool, string, error) {
		var d deployment
		if err := e.getJSON(ctx, &d, "deployment", name, "-n", ns); err != nil {
			return false, "", err
		}
		newHash := d.Spec.Template.Metadata.Annotations[annotationConfigHash]
		pods, err := e.brokerPods(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		fresh, ready := 0, 0
		for _, p := range pods {
			if !old[p.Metadata.UID] && p.Metadata.Annotations[annotationConfigHash] == newHash {
				fresh++
				if p.ready() {
					ready++
				}
			}
		}
		state := fmt.Sprintf("hash %s -> %s, %d pods, %d new, %d new ready", oldHash, newHash, len(pods), fresh, ready)
		return newHash != oldHash && len(pods) == int(replicas) && ready == int(replicas), state, nil
	})
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := e.getJSON(ctx, &cm, "configmap", name+"-config", "-n", ns); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range cm.Data {
		found = found || strings.Contains(v, "2345")
	}
	if !found {
		t.Errorf("the broker ConfigMap does not carry the new maxQueue 2345: %v", cm.Data)
	}
	waitSettled(t, e, ns, name, replicas, 2*time.Minute)
}

// deleteCluster deletes the CometdCluster and waits for the garbage collector to
// remove everything the operator created for it.
func deleteCluster(t *testing.T, e env, ns, name string) {
	e.kubectl(t, "delete", "cometdcluster/"+name, "-n", ns, "--wait=true", "--timeout=60s")
	eventually(t, 3*time.Minute, "every child of the CometdCluster garbage-collected", func(ctx context.Context) (bool, string, error) {
		out, err := e.run(ctx, "", "get", "deployments,statefulsets,services,configmaps,poddisruptionbudgets,pods",
			"-n", ns, "-l", labelInstance+"="+name, "-o", "name")
		if err != nil {
			return false, "", err
		}
		left := strings.Fields(out)
		return len(left) == 0, fmt.Sprintf("left: %v", left), nil
	})
}

// withTraffic runs change (a rolling update, a scale-down) while third-party
// clients are subscribed through the Service and a CometD client publishes 50
// messages a second through it: the CometD clients with the ack extension,
// on long-polling and websocket, must lose and duplicate nothing, every client
// must keep its clientId, and at most 2 % of the publishes may fail. What the
// Faye clients (no ack) lose is reported.
func withTraffic(t *testing.T, e env, ns, name string, change func(t *testing.T)) {
	t.Helper()
	tr := startTraffic(t, e, ns, name, "traffic")
	started := time.Now()
	change(t)
	t.Logf("the change took %v", time.Since(started).Round(time.Second))
	tr.waitSent(tr.pub.Sent() + 25)
	tr.finish()
}

// traffic is the clients of a test under load through a cluster's Service:
// the mix of subscribers (StartMix) and a CometD publisher at 50 messages a
// second on a channel of their pattern.
type traffic struct {
	t            *testing.T
	acks, others []*jsclient.Client
	pubClient    *jsclient.Client
	pub          *jsclient.RatePublisher
}

// startTraffic starts the clients, on channels named after what, and waits
// for the first 25 publishes.
func startTraffic(t *testing.T, e env, ns, name, what string) *traffic {
	t.Helper()
	jsclient.NodeModules(t)
	url := serviceURL(t, e, ns, name)
	channel := fmt.Sprintf("/e2e/%s/%d", what, time.Now().UnixNano())
	tr := &traffic{t: t}
	tr.acks, tr.others = jsclient.StartMix(t, url, channel+"/**")
	tr.pubClient = jsclient.Start(t, "cometd", url, "long-polling")
	tr.pub = jsclient.StartRatePublisher(tr.pubClient, channel+"/x", 20*time.Millisecond)
	tr.waitSent(25)
	return tr
}

// waitSent waits until n publishes were sent.
func (tr *traffic) waitSent(n int64) {
	eventually(tr.t, time.Minute, fmt.Sprintf("%d publishes sent", n), func(context.Context) (bool, string, error) {
		return tr.pub.Sent() >= n, fmt.Sprintf("%d sent", tr.pub.Sent()), nil
	})
}

// finish stops the publisher and checks every client's deliveries: ack
// clients lose and duplicate nothing, nobody handshakes again.
func (tr *traffic) finish() {
	t, pubClient, acks, others := tr.t, tr.pubClient, tr.acks, tr.others
	t.Helper()
	published, failed := tr.pub.Finish(t)
	t.Logf("%d messages published, %d failed", len(published), len(failed))
	// Through a real Service a publish in flight on a connection that the
	// pod closes at its exit (or on a pod killed) can fail (the client sees
	// "socket hang up"): at most 2 % may, and every delivery is checked all
	// the same.
	jsclient.CheckDelivery(t, acks, others, published, failed, len(published)/50)
	if n := pubClient.Handshakes(); n != 1 {
		t.Errorf("the publisher handshook %d times", n)
	}
}
