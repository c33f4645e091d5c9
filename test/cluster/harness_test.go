// Package cluster runs several real broker processes (the cmd/broker binary) on
// one real NATS server and checks that they behave as one Bayeux server, with
// clients nobody here wrote (the CometD JavaScript client and the Faye Node
// client).
package cluster

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

const (
	// waitTimeout bounds every wait for a condition: generous for a loaded
	// machine, while the happy path returns as soon as the condition holds.
	waitTimeout = 20 * time.Second
)

// repoRoot is the module root.
func repoRoot(t testing.TB) string { return brokertest.RepoRoot(t) }

// binary builds a command of this module once per test process.
func binary(t testing.TB, pkg string, race bool) string { return brokertest.Binary(t, pkg, race) }

// brokerBinary is cmd/broker built with the race detector, for the tests.
func brokerBinary(t testing.TB) string { return binary(t, "./cmd/broker", true) }

// natsServer is a real NATS server embedded in the test process.
type natsServer struct {
	t        testing.TB
	port     int
	storeDir string // JetStream's, when on
	mu       sync.Mutex
	srv      *natsserver.Server
}

// startNATS runs NATS on a random loopback port.
func startNATS(t testing.TB) *natsServer {
	n := &natsServer{t: t}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// startJetStream runs NATS with JetStream (for durable sessions) on a random
// loopback port.
func startJetStream(t testing.TB) *natsServer {
	n := &natsServer{t: t, storeDir: t.TempDir()}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	port := n.port
	if port == 0 {
		port = natsserver.RANDOM_PORT
	}
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true,
		JetStream: n.storeDir != "", StoreDir: n.storeDir})
	if err != nil {
		n.t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(waitTimeout) {
		s.Shutdown()
		n.t.Fatal("NATS did not start")
	}
	n.mu.Lock()
	n.srv = s
	n.port = s.Addr().(*net.TCPAddr).Port
	n.mu.Unlock()
}

func (n *natsServer) stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// syncBuffer collects a process's output safely.
type syncBuffer = brokertest.SyncBuffer

// broker is a running broker process.
type broker struct{ *brokertest.Broker }

// startBroker runs one broker of cluster, joined to NATS at natsURL, on loopback
// ports chosen by the kernel, and waits until it is ready.
func startBroker(t testing.TB, cluster, node, natsURL string) *broker {
	t.Helper()
	return startBrokerBin(t, brokerBinary(t), cluster, node, natsURL)
}

// startBrokerBin is startBroker with a given broker binary.
func startBrokerBin(t testing.TB, bin, cluster, node, natsURL string) *broker {
	t.Helper()
	b := &broker{brokertest.Start(t, bin, cluster+"/"+node, []string{"--node", node, "--nats-url", natsURL},
		"COMETD_CLUSTER="+cluster, "COMETD_DRAIN_GRACE_PERIOD_MS=2000")}
	b.waitReady(t, true)
	return b
}

// startCluster starts n brokers named b0…b(n-1) of cluster.
func startCluster(t testing.TB, cluster string, n int, nats *natsServer) []*broker {
	t.Helper()
	bs := make([]*broker, n)
	for i := range bs {
		bs[i] = startBroker(t, cluster, fmt.Sprintf("b%d", i), nats.url())
	}
	return bs
}

// ready reports whether /readyz answers 200.
func (b *broker) ready() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(b.Admin + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits until /readyz says want.
func (b *broker) waitReady(t testing.TB, want bool) {
	t.Helper()
	testutil.Eventually(t, waitTimeout, fmt.Sprintf("%s ready=%v", b.Name, want), func(context.Context) (bool, string) {
		got := b.ready()
		return got == want, fmt.Sprintf("ready=%v", got)
	})
}

// ownerOf returns the node prefix of a clientId ("b1~…" → "b1").
func ownerOf(clientID string) string {
	if i := strings.LastIndex(clientID, "~"); i > 0 {
		return clientID[:i]
	}
	return ""
}
