// Package cluster runs several real broker processes (the cmd/broker binary) on
// one real NATS server and checks that they behave as one Bayeux server, with
// clients nobody here wrote (the CometD JavaScript client and the Faye Node
// client).
package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// nodeModules is where the npm clients are installed (shared with test/conformance).
func nodeModules(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "test", "conformance", "node_modules")
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is not installed: the cluster suite runs the CometD and Faye clients with node")
	}
	for _, pkg := range []string{"cometd", "cometd-nodejs-client", "faye"} {
		if _, err := os.Stat(filepath.Join(dir, pkg, "package.json")); err != nil {
			t.Fatalf("npm package %s is missing from %s: run `make npm-deps`", pkg, dir)
		}
	}
	return dir
}

// binary builds a command of this module once per test process.
func binary(t testing.TB, pkg string, race bool) string { return brokertest.Binary(t, pkg, race) }

// brokerBinary is cmd/broker built with the race detector, for the tests.
func brokerBinary(t testing.TB) string { return binary(t, "./cmd/broker", true) }

// natsServer is a real NATS server embedded in the test process.
type natsServer struct {
	t    testing.TB
	port int
	mu   sync.Mutex
	srv  *natsserver.Server
}

// startNATS runs NATS on a random loopback port.
func startNATS(t testing.TB) *natsServer {
	n := &natsServer{t: t}
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
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
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

// event is one line a client script reports.
type event struct {
	Ev       string          `json:"ev"`
	ClientID string          `json:"clientId"`
	Channel  string          `json:"channel"`
	Sub      string          `json:"sub"`
	Data     json.RawMessage `json:"data"`
	Error    string          `json:"error"`
	Op       string          `json:"op"`
}

// payload is the data the tests publish: an ID, and the channel it was published
// on (Faye hands its listeners the data only).
type payload struct {
	ID string `json:"id"`
	Ch string `json:"ch"`
}

// client is a node process running client.mjs.
type client struct {
	t      testing.TB
	name   string
	stdin  io.WriteCloser
	stderr *syncBuffer
	mu     sync.Mutex
	events []event
	notify chan struct{}
	done   chan struct{}
}

// startClient runs a third-party client (kind "cometd" or "faye") against url
// over transport, and waits until it has handshaken.
func startClient(t testing.TB, kind, url, transport string) *client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, "node", filepath.Join(repoRoot(t), "test", "cluster", "client.mjs"), kind, url, transport)
	cmd.Env = append(os.Environ(), "CLUSTER_NODE_MODULES="+nodeModules(t))
	cmd.WaitDelay = 5 * time.Second
	c := &client{t: t, name: kind + "/" + transport, stderr: &syncBuffer{}, notify: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = c.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.stdin = stdin
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = event{Ev: "garbage", Error: sc.Text()}
			}
			c.mu.Lock()
			c.events = append(c.events, e)
			c.mu.Unlock()
			select {
			case c.notify <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("client %s events: %v\nstderr: %s", c.name, c.snapshot(), c.stderr)
		}
	})
	c.wait(func(e event) bool { return e.Ev == "ready" }, "ready")
	return c
}

func (c *client) snapshot() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event(nil), c.events...)
}

// wait waits for an event matching ok and returns it.
func (c *client) wait(ok func(event) bool, what string) event {
	c.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		for _, e := range c.snapshot() {
			if ok(e) {
				return e
			}
			if e.Ev == "error" || e.Ev == "garbage" {
				c.t.Fatalf("client %s: %+v (waiting for %s)", c.name, e, what)
			}
		}
		select {
		case <-c.notify:
		case <-c.done:
			for _, e := range c.snapshot() {
				if ok(e) {
					return e
				}
			}
			c.t.Fatalf("client %s exited while waiting for %s; stderr: %s", c.name, what, c.stderr)
		case <-deadline:
			c.t.Fatalf("client %s: timed out waiting for %s; events: %v; stderr: %s", c.name, what, c.snapshot(), c.stderr)
		}
	}
}

func (c *client) send(cmd map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.t.Fatalf("client %s: %v", c.name, err)
	}
}

// subscribe subscribes and waits for the reply.
func (c *client) subscribe(channel string) {
	c.t.Helper()
	c.send(map[string]any{"op": "subscribe", "channel": channel})
	c.wait(func(e event) bool { return e.Ev == "subscribed" && e.Channel == channel }, "subscribed "+channel)
}

// publish publishes {id, ch} on channel and waits for the reply.
func (c *client) publish(channel, id string) {
	c.t.Helper()
	c.send(map[string]any{"op": "publish", "channel": channel, "data": payload{ID: id, Ch: channel}})
	c.wait(func(e event) bool {
		return e.Ev == "published" && e.Channel == channel
	}, "published "+id)
}

// received counts the messages received with each payload ID, by the pattern of
// the subscription that received them ("<pattern> <id>"): a client with two
// matching subscriptions calls both listeners for one delivered message.
func (c *client) received() map[string]int {
	n := map[string]int{}
	for _, e := range c.snapshot() {
		if e.Ev == "message" {
			var p payload
			if json.Unmarshal(e.Data, &p) == nil {
				n[e.Sub+" "+p.ID]++
			}
		}
	}
	return n
}

// count returns how many times a message with payload id was received, over all
// subscriptions.
func (c *client) count(id string) int {
	n := 0
	for key, k := range c.received() {
		if strings.HasSuffix(key, " "+id) {
			n += k
		}
	}
	return n
}

// waitMessage waits until a message with payload id has arrived.
func (c *client) waitMessage(id string) {
	c.t.Helper()
	c.wait(func(e event) bool {
		var p payload
		return e.Ev == "message" && json.Unmarshal(e.Data, &p) == nil && p.ID == id
	}, "message "+id)
}

// metaErrors returns the unsuccessful meta replies the client saw.
func (c *client) metaErrors() []event {
	var out []event
	for _, e := range c.snapshot() {
		if e.Ev == "meta-error" {
			out = append(out, e)
		}
	}
	return out
}

// handshakes counts the client's successful handshakes.
func (c *client) handshakes() int {
	n := 0
	for _, e := range c.snapshot() {
		if e.Ev == "handshake" {
			n++
		}
	}
	return n
}

func (c *client) String() string { return c.name }

// ownerOf returns the node prefix of a clientId ("b1~…" → "b1").
func ownerOf(clientID string) string {
	if i := strings.LastIndex(clientID, "~"); i > 0 {
		return clientID[:i]
	}
	return ""
}
