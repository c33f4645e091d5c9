package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/cometd-operator/cometd-operator/api/v1alpha1"
	"github.com/cometd-operator/cometd-operator/controllers/resources"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// fakeNATS serves a NATS server's monitoring /routez from an httptest server.
type fakeNATS struct {
	mu    sync.Mutex
	peers int
}

func (f *fakeNATS) setPeers(n int) {
	f.mu.Lock()
	f.peers = n
	f.mu.Unlock()
}

// startNATSPod creates a ready managed NATS Pod of the cluster and its fake
// monitoring endpoint, which reports route pools of 3 connections per peer
// like NATS 2.10+ does.
func startNATSPod(t *testing.T, cc *v1.CometdCluster, name string) *fakeNATS {
	t.Helper()
	f := &fakeNATS{}
	startReadyPod(t, cc, name, resources.NATSLabels(cc), corev1.Container{Name: "nats", Image: "nats:test"}, "10.1.1.7",
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/routez" {
				http.NotFound(w, r)
				return
			}
			f.mu.Lock()
			peers := f.peers
			f.mu.Unlock()
			var routes []map[string]any
			for p := range peers {
				for range 3 {
					routes = append(routes, map[string]any{"remote_id": fmt.Sprintf("ID%d", p), "remote_name": fmt.Sprintf("peer-%d", p)})
				}
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"server_name": name, "num_routes": len(routes), "routes": routes})
		}))
	return f
}

// managedFanoutCluster creates a cluster "chat" with managed NATS, two ready
// brokers with fake admin endpoints and three ready NATS pods with fake
// monitoring endpoints that report no routes yet.
func managedFanoutCluster(t *testing.T) (*v1.CometdCluster, *fakeBroker, *fakeBroker, []*fakeNATS) {
	t.Helper()
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "chat", 2, true))
	waitForChildren(t, cc, append(brokerChildren("chat"), natsChildren("chat")...))
	a, b := startBrokerPod(t, cc, "chat-a"), startBrokerPod(t, cc, "chat-b")
	var servers []*fakeNATS
	for i := range 3 {
		servers = append(servers, startNATSPod(t, cc, fmt.Sprintf("chat-nats-%d", i)))
	}
	return cc, a, b, servers
}

func TestFanoutReadyFollowsNATSRoutesAndBrokers(t *testing.T) {
	// Three NATS servers up, none routed yet: brokers are connected, but a
	// message may stay on one server.
	cc, a, b, servers := managedFanoutCluster(t)
	waitConditionsSaying(t, cc, map[string]string{
		v1.ConditionFanoutReady: "False/" + ReasonNATSNotMeshed,
		v1.ConditionAvailable:   "False/" + ReasonNoBrokerReady, // envtest runs no Deployment controller
	}, "chat-nats-0 (0)")

	// Two of three meshed is not enough: one server still lacks a peer.
	servers[0].setPeers(2)
	servers[1].setPeers(2)
	servers[2].setPeers(1)
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionFanoutReady: "False/" + ReasonNATSNotMeshed}, "chat-nats-2 (1)")

	// Fully meshed, every broker connected.
	servers[2].setPeers(2)
	waitConditions(t, cc, map[string]string{v1.ConditionFanoutReady: "True/" + ReasonFanoutMeshed})

	// A broker loses its NATS connection.
	b.setDisconnected(true)
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionFanoutReady: "False/" + ReasonBackboneDisconnected}, "chat-b")
	b.setDisconnected(false)
	waitConditions(t, cc, map[string]string{v1.ConditionFanoutReady: "True/" + ReasonFanoutMeshed})

	// A broker whose admin endpoint fails: the operator cannot tell.
	a.set("", true)
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionFanoutReady: "False/" + ReasonFanoutUnknown}, "chat-a")
	a.set("", false)
	waitConditions(t, cc, map[string]string{v1.ConditionFanoutReady: "True/" + ReasonFanoutMeshed})
}

// Once fan-out is ready and the brokers enforce the policy, no event comes
// when NATS routes break (every pod stays Ready): the operator re-checks on
// its own, so FanoutReady follows the mesh.
func TestFanoutReadyIsRecheckedWhenTheMeshBreaksLater(t *testing.T) {
	cc, a, b, servers := managedFanoutCluster(t)
	for _, f := range servers {
		f.setPeers(2)
	}
	enforceCurrentPolicy(t, cc, a, b)
	waitConditions(t, cc, map[string]string{
		v1.ConditionFanoutReady:   "True/" + ReasonFanoutMeshed,
		v1.ConditionPolicyApplied: "True/" + ReasonPolicyEnforced,
	})

	// A server loses its routes; no event tells the operator.
	servers[1].setPeers(0)
	waitConditionsSaying(t, cc, map[string]string{v1.ConditionFanoutReady: "False/" + ReasonNATSNotMeshed}, "chat-nats-1 (0)")
	servers[1].setPeers(2)
	waitConditions(t, cc, map[string]string{v1.ConditionFanoutReady: "True/" + ReasonFanoutMeshed})
}

func TestPolicyRecheck(t *testing.T) {
	r := &CometdClusterReconciler{}
	cond := func(typ string, st metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: st, Reason: reason}
	}
	settled := []metav1.Condition{cond(v1.ConditionPolicyApplied, metav1.ConditionTrue, ReasonPolicyEnforced),
		cond(v1.ConditionFanoutReady, metav1.ConditionTrue, ReasonFanoutMeshed)}
	with := func(cc *v1.CometdCluster, conds ...metav1.Condition) *v1.CometdCluster {
		cc.Status.Conditions = conds
		return cc
	}
	for _, tc := range []struct {
		name string
		cc   *v1.CometdCluster
		want time.Duration
	}{
		{"single broker without NATS, settled", with(newCluster("ns", "c", 1, false), settled...), 0},
		{"managed NATS, settled", with(newCluster("ns", "c", 2, true), settled...), DefaultFanoutRecheck},
		{"external NATS, settled", with(newCluster("ns", "c", 2, false), settled...), DefaultFanoutRecheck},
		{"policy propagating", with(newCluster("ns", "c", 1, false),
			cond(v1.ConditionPolicyApplied, metav1.ConditionFalse, ReasonPolicyPropagating)), defaultPolicyRecheck},
		{"fan-out not ready", with(newCluster("ns", "c", 2, true), settled[0],
			cond(v1.ConditionFanoutReady, metav1.ConditionFalse, ReasonNATSNotMeshed)), defaultPolicyRecheck},
	} {
		if got := r.policyRecheck(tc.cc); got != tc.want {
			t.Errorf("%s: recheck in %v, want %v", tc.name, got, tc.want)
		}
	}
	r.FanoutRecheckInterval = time.Second
	if got := r.policyRecheck(with(newCluster("ns", "c", 2, true), settled...)); got != time.Second {
		t.Errorf("configured interval: recheck in %v, want 1s", got)
	}
}

func TestFanoutReadyForASingleBrokerWithoutNATS(t *testing.T) {
	ns := newNamespace(t)
	cc := create(t, newCluster(ns, "solo", 1, false))
	waitConditions(t, cc, map[string]string{v1.ConditionFanoutReady: "True/" + ReasonFanoutSingleBroker})
}

func TestFanoutReadyCondition(t *testing.T) {
	connected := []brokerReport{{Pod: "b0", BackboneConnected: true}, {Pod: "b1", BackboneConnected: true}}
	meshed := []natsReport{{Pod: "n0", Peers: 2}, {Pod: "n1", Peers: 2}, {Pod: "n2", Peers: 2}}
	managed := func(nats []natsReport, brokers []brokerReport) fanoutInput {
		return fanoutInput{DesiredBrokers: 2, ManagedNATS: true, NATSReplicas: 3, NATS: nats, Brokers: brokers, BrokersChecked: true}
	}
	external := func(brokers []brokerReport) fanoutInput {
		return fanoutInput{DesiredBrokers: 2, ExternalNATS: true, Brokers: brokers, BrokersChecked: true}
	}
	for _, tc := range []struct {
		name   string
		in     fanoutInput
		status metav1.ConditionStatus
		reason string
		says   string
	}{
		{"single broker without NATS", fanoutInput{DesiredBrokers: 1}, metav1.ConditionTrue, ReasonFanoutSingleBroker, "single broker"},
		{"single broker, brokers never asked", fanoutInput{DesiredBrokers: 1, BrokersChecked: false}, metav1.ConditionTrue, ReasonFanoutSingleBroker, ""},
		{"meshed and connected", managed(meshed, connected), metav1.ConditionTrue, ReasonFanoutMeshed, "all 3 NATS servers"},
		{"no NATS server ready", managed(nil, connected), metav1.ConditionFalse, ReasonNATSNotMeshed, "0 of 3"},
		{"one server short of a peer", managed([]natsReport{{Pod: "n0", Peers: 2}, {Pod: "n1", Peers: 1}, {Pod: "n2", Peers: 2}}, connected),
			metav1.ConditionFalse, ReasonNATSNotMeshed, "n1 (1)"},
		{"two of three ready and routed to each other", managed([]natsReport{{Pod: "n0", Peers: 2}, {Pod: "n1", Peers: 2}}, connected),
			metav1.ConditionFalse, ReasonNATSNotMeshed, "2 of 3"},
		{"NATS monitor unreachable", managed([]natsReport{{Pod: "n0", Err: errors.New("refused")}, {Pod: "n1", Peers: 2}, {Pod: "n2", Peers: 2}}, connected),
			metav1.ConditionFalse, ReasonFanoutUnknown, "n0 (refused)"},
		{"meshed, one broker disconnected", managed(meshed, []brokerReport{{Pod: "b0", BackboneConnected: true}, {Pod: "b1"}}),
			metav1.ConditionFalse, ReasonBackboneDisconnected, "b1"},
		{"meshed, broker unreachable", managed(meshed, []brokerReport{{Pod: "b0", Err: errors.New("timeout")}, {Pod: "b1", BackboneConnected: true}}),
			metav1.ConditionFalse, ReasonFanoutUnknown, "b0 (timeout)"},
		{"meshed, no ready broker", managed(meshed, nil), metav1.ConditionFalse, ReasonFanoutUnknown, "no ready broker"},
		{"meshed, brokers not asked", fanoutInput{DesiredBrokers: 2, ManagedNATS: true, NATSReplicas: 3, NATS: meshed},
			metav1.ConditionFalse, ReasonFanoutUnknown, "cannot read"},
		{"not meshed wins over disconnected", managed(nil, []brokerReport{{Pod: "b0"}}), metav1.ConditionFalse, ReasonNATSNotMeshed, ""},
		{"one managed NATS server needs no routes", fanoutInput{DesiredBrokers: 2, ManagedNATS: true, NATSReplicas: 1, NATS: []natsReport{{Pod: "n0"}},
			Brokers: connected, BrokersChecked: true}, metav1.ConditionTrue, ReasonFanoutMeshed, ""},
		{"meshed, a broker too old to report its backbone", managed(meshed, []brokerReport{{Pod: "b0", BackboneConnected: true}, {Pod: "b1", BackboneUnreported: true}}),
			metav1.ConditionFalse, ReasonFanoutUnknown, "b1"},
		{"external NATS, connected", external(connected), metav1.ConditionTrue, ReasonFanoutMeshed, "connected to NATS"},
		{"external NATS, disconnected", external([]brokerReport{{Pod: "b0"}, {Pod: "b1", BackboneConnected: true}}),
			metav1.ConditionFalse, ReasonBackboneDisconnected, "1 of 2"},
		{"single broker with external NATS, disconnected", fanoutInput{DesiredBrokers: 1, ExternalNATS: true, Brokers: []brokerReport{{Pod: "b0"}}, BrokersChecked: true},
			metav1.ConditionFalse, ReasonBackboneDisconnected, "b0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fanoutReadyCondition(tc.in)
			if c.Type != v1.ConditionFanoutReady || c.Status != tc.status || c.Reason != tc.reason || c.Message == "" || !strings.Contains(c.Message, tc.says) {
				t.Errorf("%s %s/%s %q, want %s/%s saying %q", c.Type, c.Status, c.Reason, c.Message, tc.status, tc.reason, tc.says)
			}
		})
	}
}

// HTTPNATSMonitorClient counts the peers of a real NATS cluster of two servers,
// whose routes are pooled (several connections to the same peer).
func TestHTTPNATSMonitorClientCountsRealPeers(t *testing.T) {
	start := func(name, seed string) *natsserver.Server {
		opts := &natsserver.Options{
			ServerName: name, Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, HTTPHost: "127.0.0.1", HTTPPort: natsserver.RANDOM_PORT,
			NoLog: true, NoSigs: true,
			Cluster: natsserver.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT},
		}
		if seed != "" {
			opts.Routes = natsserver.RoutesFromStr(seed)
		}
		s, err := natsserver.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s did not start", name)
		}
		return s
	}
	n0 := start("n0", "")
	servers := []*natsserver.Server{n0, start("n1", "nats://"+n0.ClusterAddr().String())}
	c := &HTTPNATSMonitorClient{Address: func(pod *corev1.Pod) string {
		i, _ := strconv.Atoi(strings.TrimPrefix(pod.Name, "n"))
		return servers[i].MonitorAddr().String()
	}}
	for _, name := range []string{"n0", "n1"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
		var last NATSRoutes
		var lastErr error
		testutil.Eventually(t, waitTimeout, name+" to route to its peer", func(context.Context) (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			last, lastErr = c.Routes(ctx, pod)
			return lastErr == nil && last.Peers() == 1, fmt.Sprintf("%+v, %v", last, lastErr)
		})
		if last.ServerName != name {
			t.Errorf("server_name = %q, want %q", last.ServerName, name)
		}
		if last.NumRoutes < last.Peers() {
			t.Errorf("num_routes %d < peers %d", last.NumRoutes, last.Peers())
		}
	}
	// A pod without an IP and no Address is an error, not a request.
	if _, err := (&HTTPNATSMonitorClient{}).Routes(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}); err == nil {
		t.Error("Routes of a pod without IP: no error")
	}
}

// A broker's /status without backboneConnected (an older broker) decodes as
// unreported, not as disconnected.
func TestBrokerStatusBackboneConnectedField(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want *bool
	}{
		{`{"node":"a"}`, nil},
		{`{"node":"a","backboneConnected":true}`, ptrTrue()},
		{`{"node":"a","backboneConnected":false}`, new(bool)},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.doc)) }))
		c := &HTTPBrokerStatusClient{Address: func(*corev1.Pod) string { return srv.Listener.Addr().String() }}
		st, err := c.Status(context.Background(), &corev1.Pod{})
		srv.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.doc, err)
		}
		if (st.BackboneConnected == nil) != (tc.want == nil) || (tc.want != nil && *st.BackboneConnected != *tc.want) {
			t.Errorf("%s: backboneConnected = %v, want %v", tc.doc, st.BackboneConnected, tc.want)
		}
	}
}
