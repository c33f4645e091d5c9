package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cometd-operator/cometd-operator/internal/brokertest"
	"github.com/cometd-operator/cometd-operator/internal/jsclient"
	"github.com/cometd-operator/cometd-operator/internal/testutil"
)

// readyProxy is a round-robin proxy, like a Service without session affinity,
// over the brokers whose /readyz answers 200: it looks every 50 ms, so a
// draining broker stops getting new requests, as it would stop getting new
// connections from kube-proxy.
type readyProxy struct {
	t    *testing.T
	srv  *httptest.Server
	next atomic.Int64

	mu       sync.Mutex
	backends []*broker
	ready    []*url.URL
}

func newReadyProxy(t *testing.T) *readyProxy {
	p := &readyProxy{t: t}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			p.mu.Lock()
			targets := p.ready
			p.mu.Unlock()
			if len(targets) == 0 {
				r.SetURL(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}) // answered 502, as a Service with no endpoint
				return
			}
			r.SetURL(targets[int(p.next.Add(1)-1)%len(targets)])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0), // a refused dial is the point, not news
	}
	p.srv = httptest.NewServer(rp)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p.refresh()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		p.srv.Close()
	})
	return p
}

func (p *readyProxy) refresh() {
	p.mu.Lock()
	backends := append([]*broker(nil), p.backends...)
	p.mu.Unlock()
	var ready []*url.URL
	for _, b := range backends {
		if b.ready() {
			u, _ := url.Parse(strings.TrimSuffix(b.URL, "/cometd"))
			ready = append(ready, u)
		}
	}
	p.mu.Lock()
	p.ready = ready
	p.mu.Unlock()
}

func (p *readyProxy) add(b *broker) {
	p.mu.Lock()
	p.backends = append(p.backends, b)
	p.mu.Unlock()
	testutil.Eventually(p.t, waitTimeout, b.Name+" in the proxy", func(context.Context) (bool, string) { return p.has(b), "" })
}

func (p *readyProxy) remove(b *broker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.backends {
		if x == b {
			p.backends = append(p.backends[:i:i], p.backends[i+1:]...)
			return
		}
	}
}

func (p *readyProxy) has(b *broker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.ready {
		if strings.HasPrefix(b.URL, u.String()) {
			return true
		}
	}
	return false
}

// startDrainingBroker starts a broker of cluster with a drain grace period
// long enough to hand its sessions over, and, as in production, a linger
// after SIGTERM (3 s here, 5 s by default) so that the proxy, whose view of
// /readyz may lag on a loaded machine, stops sending it requests before its
// port closes.
func startDrainingBroker(t *testing.T, cluster, node, natsURL string) *broker {
	t.Helper()
	b := &broker{brokertest.Start(t, brokerBinary(t), cluster+"/"+node, []string{"--node", node, "--nats-url", natsURL},
		"COMETD_CLUSTER="+cluster, "COMETD_DRAIN_GRACE_PERIOD_MS=15000", "COMETD_DRAIN_LINGER_MS=3000")}
	b.waitReady(t, true)
	return b
}

// proxiedCluster starts NATS and three brokers of cluster named prefix0…2
// behind a readyProxy, with the npm clients at hand.
func proxiedCluster(t *testing.T, cluster, prefix string) (*natsServer, *readyProxy, []*broker) {
	t.Helper()
	jsclient.NodeModules(t)
	nats := startNATS(t)
	px := newReadyProxy(t)
	var bs []*broker
	for i := range 3 {
		b := startDrainingBroker(t, cluster, fmt.Sprintf("%s%d", prefix, i), nats.url())
		px.add(b)
		bs = append(bs, b)
	}
	return nats, px, bs
}

// TestRollingRestartHandsSessionsOver replaces each of three brokers in turn
// (SIGTERM, and a new process with a new node name), behind a proxy that
// follows /readyz, while a CometD client publishes at 50 messages a second.
// The CometD clients with the ack extension, on long-polling and websocket,
// lose and duplicate nothing, keep their clientIds and never handshake again;
// no publish is refused. What the Faye clients (which have no ack) lose is
// reported.
func TestRollingRestartHandsSessionsOver(t *testing.T) {
	nats, px, gen0 := proxiedCluster(t, "roll", "g0-b")
	endpoint := px.srv.URL + "/cometd"
	acks, fayes := jsclient.StartMix(t, endpoint, "/roll/**")
	pubClient := jsclient.Start(t, "cometd", endpoint, "long-polling")
	pub := jsclient.StartRatePublisher(pubClient, "/roll/x", 20*time.Millisecond)

	started := time.Now()
	for i, old := range gen0 {
		nb := startDrainingBroker(t, "roll", fmt.Sprintf("g1-b%d", i), nats.url())
		px.add(nb)
		before := pub.Sent()
		testutil.Eventually(t, waitTimeout, "traffic before the next drain", func(context.Context) (bool, string) {
			return pub.Sent() >= before+25, fmt.Sprintf("%d sent", pub.Sent())
		})
		t0 := time.Now()
		old.Stop(t) // SIGTERM; returns once the process exited
		t.Logf("%s drained and exited in %v", old.Name, time.Since(t0).Round(time.Millisecond))
		px.remove(old)
	}
	before := pub.Sent()
	testutil.Eventually(t, waitTimeout, "traffic after the last drain", func(context.Context) (bool, string) {
		return pub.Sent() >= before+25, fmt.Sprintf("%d sent", pub.Sent())
	})
	published, failed := pub.Finish(t)
	t.Logf("%d messages published in %v, %d refused", len(published), time.Since(started).Round(time.Millisecond), len(failed))

	jsclient.CheckDelivery(t, acks, fayes, published, failed, 0)
	if n := pubClient.Handshakes(); n != 1 {
		t.Errorf("the publisher handshook %d times", n)
	}
}

// TestKilledOwnerClientsRecover SIGKILLs the broker that owns a CometD
// client's session while the client's connect waits, forwarded through
// another broker: the waiting broker finds the owner dead within a couple of
// seconds (not at the end of the 30 s connect timeout), the client
// handshakes again and publishes and receives through the cluster. This part
// of crash recovery needs no durability: the session itself is lost.
func TestKilledOwnerClientsRecover(t *testing.T) {
	_, px, bs := proxiedCluster(t, "kill", "k")
	endpoint := px.srv.URL + "/cometd"
	c := jsclient.Start(t, "cometd", endpoint, "long-polling")
	c.Subscribe("/kill/**")
	id := c.Wait(func(e jsclient.Event) bool { return e.Ev == "ready" }, "ready").ClientID
	var owner *broker
	for _, b := range bs {
		if strings.HasSuffix(b.Name, "/"+ownerOf(id)) {
			owner = b
		}
	}
	if owner == nil {
		t.Fatalf("no broker owns %s", id)
	}
	c.Publish("/kill/before", "before")
	c.WaitMessage("before")
	killed := time.Now()
	owner.Kill(t)
	px.remove(owner)
	c.Wait(func(e jsclient.Event) bool { return e.Ev == "handshake" && e.ClientID != id }, "a new handshake after the kill")
	recovered := time.Since(killed)
	c.Subscribe("/kill/**") // as an application's handshake listener does
	c.Publish("/kill/after", "after")
	c.WaitMessage("after")
	t.Logf("the client handshook again %v after its broker was killed, and publishes and receives", recovered.Round(time.Millisecond))
	if recovered > 10*time.Second {
		t.Errorf("the client took %v to recover from its broker's death, want well under the 30 s connect timeout", recovered)
	}
}
