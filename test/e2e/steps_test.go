//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cometd-operator/cometd-operator/broker/client"
	"github.com/cometd-operator/cometd-operator/internal/jsclient"
)

// adminPort is the brokers' admin port (controllers/resources.AdminPort).
const adminPort = "8081"

// The autoscaling the step sets: 20 sessions per broker, between 1 and 3
// brokers, with a short scale-down window so that the test sees it.
const autoscalePatch = `{"spec":{"autoscaling":{"minReplicas":1,"maxReplicas":3,"metric":"sessions","targetSessionsPerPod":20,
"behavior":{"scaleDown":{"stabilizationWindowSeconds":20,"periodSeconds":10}}}}}`

// idleSessions is how many Go websocket clients the step opens: with the
// traffic's seven sessions, 60, three brokers' worth.
const idleSessions = 53

// autoscaleOnSessions turns sessions autoscaling on for a one-broker cluster
// and, with the traffic of withTraffic running, opens enough sessions through
// the Service for three brokers: the cluster grows to three, the operator
// rebalances the sessions until no broker holds more than 20 % above the
// mean, and, once the sessions close, the cluster shrinks back to one. The ack
// clients lose nothing, and every client, moved or not, keeps its clientId.
func autoscaleOnSessions(t *testing.T, e env, ns, name string) {
	e.kubectl(t, "patch", "cometdcluster", name, "-n", ns, "--type=merge", "-p", autoscalePatch)
	withTraffic(t, e, ns, name, func(t *testing.T) {
		url := serviceURL(t, e, ns, name)
		idle := openIdleSessions(t, url, idleSessions)
		opened := time.Now()
		waitReplicas(t, e, ns, name, 3, 4*time.Minute)
		waitSettled(t, e, ns, name, 3, 4*time.Minute)
		t.Logf("scale-up to 3 brokers took %v after the sessions opened", time.Since(opened).Round(time.Second))
		grown := time.Now()
		spread := waitEven(t, e, ns, name, 3*time.Minute)
		t.Logf("rebalanced in %v after the cluster settled: sessions per broker %v", time.Since(grown).Round(time.Second), spread)
		printed := e.kubectl(t, "get", "cometdcluster", name, "-n", ns)
		if !strings.Contains(printed, "SESSIONS") || !strings.Contains(printed, "STATUS") || !strings.Contains(printed, "Available") {
			t.Errorf("kubectl get shows no SESSIONS or STATUS column:\n%s", printed)
		}
		idle.check(t)
		closed := time.Now()
		idle.close(t)
		waitReplicas(t, e, ns, name, 1, 4*time.Minute)
		waitSettled(t, e, ns, name, 1, 4*time.Minute)
		t.Logf("scale-down to 1 broker took %v after the sessions closed", time.Since(closed).Round(time.Second))
	})
	events := e.kubectl(t, "get", "events", "-n", ns, "--field-selector", "involvedObject.name="+name, "-o", "custom-columns=REASON:.reason,MESSAGE:.message")
	for _, reason := range []string{"Scaled", "Rebalancing"} {
		if !strings.Contains(events, reason) {
			t.Errorf("no %s event:\n%s", reason, events)
		}
	}
	// Back to a fixed size for the steps that follow.
	e.kubectl(t, "patch", "cometdcluster", name, "-n", ns, "--type=json", "-p", `[{"op":"remove","path":"/spec/autoscaling"}]`)
}

// serviceBase is http://<ClusterIP>:<port> of the cluster's client Service.
func serviceBase(t *testing.T, e env, ns, name string) string {
	t.Helper()
	ip := strings.TrimSpace(e.kubectl(t, "get", "service", name, "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
	port := strings.TrimSpace(e.kubectl(t, "get", "service", name, "-n", ns, "-o", "jsonpath={.spec.ports[0].port}"))
	if ip == "" || ip == "None" || port == "" {
		t.Fatalf("service %s/%s has no ClusterIP/port (%q, %q)", ns, name, ip, port)
	}
	return fmt.Sprintf("http://%s:%s", ip, port)
}

// serviceURL is the Bayeux endpoint through the cluster's client Service.
func serviceURL(t *testing.T, e env, ns, name string) string {
	t.Helper()
	return serviceBase(t, e, ns, name) + "/cometd"
}

// waitReplicas waits until the autoscaler has set spec.replicas to n.
func waitReplicas(t *testing.T, e env, ns, name string, n int32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("spec.replicas %d", n), func(ctx context.Context) (bool, string, error) {
		var cc struct {
			Spec struct {
				Replicas int32 `json:"replicas"`
			} `json:"spec"`
			Status struct {
				Sessions    int64 `json:"sessions"`
				Autoscaling struct {
					Reason string `json:"reason"`
				} `json:"autoscaling"`
			} `json:"status"`
		}
		if err := e.getJSON(ctx, &cc, "cometdcluster", name, "-n", ns); err != nil {
			return false, "", err
		}
		return cc.Spec.Replicas == n, fmt.Sprintf("replicas %d, %d sessions: %s", cc.Spec.Replicas, cc.Status.Sessions, cc.Status.Autoscaling.Reason), nil
	})
}

// waitEven waits until no ready broker holds more than 20 % above the mean
// of client sessions (plus one, for a mean that does not divide), as each
// broker's admin /status says, and returns the sessions per broker.
func waitEven(t *testing.T, e env, ns, name string, timeout time.Duration) []int64 {
	t.Helper()
	var spread []int64
	eventually(t, timeout, "sessions even across the brokers", func(ctx context.Context) (bool, string, error) {
		pods, err := e.brokerPods(ctx, ns, name)
		if err != nil {
			return false, "", err
		}
		spread = spread[:0]
		var total, most int64
		for _, p := range pods {
			if !p.ready() {
				continue
			}
			var st struct {
				ClientSessions int64 `json:"clientSessions"`
			}
			if err := getPodJSON(ctx, p.Status.PodIP, "/status", &st); err != nil {
				return false, "", err
			}
			spread = append(spread, st.ClientSessions)
			total += st.ClientSessions
			most = max(most, st.ClientSessions)
		}
		if len(spread) == 0 {
			return false, "no ready broker", nil
		}
		mean := float64(total) / float64(len(spread))
		return float64(most) <= math.Floor(mean*1.2)+1, fmt.Sprintf("sessions per broker %v", spread), nil
	})
	return spread
}

func getPodJSON(ctx context.Context, ip, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(ip, adminPort)+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// idleClients are Go websocket clients subscribed to a quiet channel.
type idleClients struct {
	channel string
	clients []*client.Client
	ids     []string
	mu      sync.Mutex
	got     map[int]int // client → messages received on the channel
}

func openIdleSessions(t *testing.T, url string, n int) *idleClients {
	t.Helper()
	ic := &idleClients{channel: fmt.Sprintf("/e2e/idle/%d", time.Now().UnixNano()), got: map[int]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range n {
		c, err := client.NewClient(client.Config{URL: url, Transports: []string{"websocket"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Handshake(ctx); err != nil {
			t.Fatalf("idle session %d: handshake: %v", i, err)
		}
		if _, err := c.Subscribe(ctx, ic.channel, func(*client.Message) {
			ic.mu.Lock()
			ic.got[i]++
			ic.mu.Unlock()
		}); err != nil {
			t.Fatalf("idle session %d: subscribe: %v", i, err)
		}
		ic.clients = append(ic.clients, c)
		ic.ids = append(ic.ids, c.ClientID())
	}
	t.Cleanup(func() {
		for _, c := range ic.clients {
			_ = c.Disconnect(context.Background())
		}
	})
	return ic
}

// check publishes one message on the channel and waits until every client
// got it exactly once, with the clientId it started with.
func (ic *idleClients) check(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ic.clients[0].Publish(ctx, ic.channel, "ping"); err != nil {
		t.Fatalf("publish to the idle sessions: %v", err)
	}
	eventually(t, 30*time.Second, "every idle session to get the message", func(context.Context) (bool, string, error) {
		ic.mu.Lock()
		defer ic.mu.Unlock()
		var missing, dup []int
		for i := range ic.clients {
			switch ic.got[i] {
			case 0:
				missing = append(missing, i)
			case 1:
			default:
				dup = append(dup, i)
			}
		}
		if len(dup) > 0 {
			return false, "", fmt.Errorf("idle sessions %v got the message more than once", dup)
		}
		return len(missing) == 0, fmt.Sprintf("missing at %v", missing), nil
	})
	for i, c := range ic.clients {
		if id := c.ClientID(); id != ic.ids[i] {
			t.Errorf("idle session %d changed clientId: %s → %s", i, ic.ids[i], id)
		}
	}
}

func (ic *idleClients) close(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, c := range ic.clients {
		if err := c.Disconnect(ctx); err != nil {
			t.Errorf("idle session %d: disconnect: %v", i, err)
		}
	}
}

// natsRefusesStrangers checks the managed NATS's authentication on the real
// cluster: a client without the cluster's token, or with a wrong one, cannot
// connect (so cannot read or inject backbone traffic); the token from the
// operator's Secret can.
func natsRefusesStrangers(t *testing.T, e env, ns, name string) {
	ip := strings.TrimSpace(e.kubectl(t, "get", "service", name+"-nats", "-n", ns, "-o", "jsonpath={.spec.clusterIP}"))
	u := "nats://" + net.JoinHostPort(ip, "4222")
	for what, opts := range map[string][]nats.Option{"no token": nil, "a wrong token": {nats.Token("guess")}} {
		nc, err := nats.Connect(u, append(opts, nats.Timeout(10*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatalf("the managed NATS accepted a client with %s", what)
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("a client with %s: %v, want an authorization error", what, err)
		}
	}
	token, err := base64.StdEncoding.DecodeString(strings.TrimSpace(
		e.kubectl(t, "get", "secret", name+"-nats-auth", "-n", ns, "-o", "jsonpath={.data.token}")))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(u, nats.Token(string(token)), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("the operator's token is refused: %v", err)
	}
	nc.Close()
}

// forceDeletedBrokerClientsRecover force-deletes (`kubectl delete pod
// --grace-period=0 --force`, as an operator does with a pod stuck on a lost
// node) the broker pod that owns the sessions of a long-polling and a
// websocket CometD client: each client publishes and receives through the
// Service again within a bound well under the 30 s connect timeout. The time
// to recover, and whether the session survived (the pod's process, told to
// stop, hands it over) or the client handshook again, are logged.
func forceDeletedBrokerClientsRecover(t *testing.T, e env, ns, name string) {
	jsclient.NodeModules(t)
	url := serviceURL(t, e, ns, name)
	channel := fmt.Sprintf("/e2e/kill/%d", time.Now().UnixNano())
	pods, err := e.brokerPods(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	// Clients until one of each transport has its session on the same pod.
	var victim string
	var clients []*jsclient.Client
	var ids []string
	for attempt := 0; attempt < 12 && len(clients) < 2; attempt++ {
		tr := []string{"long-polling", "websocket"}[len(clients)]
		c := jsclient.Start(t, "cometd", url, tr)
		id := c.Wait(func(ev jsclient.Event) bool { return ev.Ev == "ready" }, "ready").ClientID
		owner, _, _ := strings.Cut(id, "~")
		if victim == "" {
			victim = owner
		}
		if owner == victim {
			c.Subscribe(channel + "/**")
			clients = append(clients, c)
			ids = append(ids, id)
		}
	}
	if len(clients) < 2 {
		t.Fatalf("no two clients landed on one of %d brokers", len(pods))
	}
	killed := time.Now()
	e.kubectl(t, "delete", "pod", victim, "-n", ns, "--grace-period=0", "--force")
	const bound = 15 * time.Second
	for k, c := range clients {
		// Publish every half second until one comes back; a client that
		// handshook again subscribes again, as an application's handshake
		// listener does.
		resubscribed := false
		for i := 0; ; i++ {
			if !resubscribed && handshookAgain(c, ids[k]) {
				c.Subscribe(channel + "/**")
				resubscribed = true
			}
			id := fmt.Sprintf("after-%d-%d", k, i)
			c.Send(map[string]any{"op": "publish-async", "channel": channel + "/x", "data": jsclient.Payload{ID: id, Ch: channel + "/x"}})
			if received(c, id, time.Now().Add(500*time.Millisecond)) {
				break
			}
			if time.Since(killed) > 2*bound {
				t.Fatalf("%s publishes and receives nothing %v after its broker %s was force-deleted", c, time.Since(killed).Round(time.Second), victim)
			}
		}
		recovered := time.Since(killed)
		how := "kept its session (handed over)"
		if handshookAgain(c, ids[k]) {
			how = "handshook again (its session was lost)"
		}
		t.Logf("%s publishes and receives again %v after its broker %s was force-deleted; it %s", c, recovered.Round(100*time.Millisecond), victim, how)
		if recovered > bound {
			t.Errorf("%s took %v to recover, want under %v", c, recovered, bound)
		}
	}
	waitSettled(t, e, ns, name, int32(len(pods)), 4*time.Minute)
}

// handshookAgain reports whether c has a session other than the first.
func handshookAgain(c *jsclient.Client, first string) bool {
	for _, ev := range c.Events() {
		if ev.Ev == "handshake" && ev.ClientID != first {
			return true
		}
	}
	return false
}

// received waits until c got the message with payload id, or deadline.
func received(c *jsclient.Client, id string, deadline time.Time) bool {
	for {
		if c.Count(id) > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-time.After(20 * time.Millisecond) // poll: the client reports by events
	}
}
