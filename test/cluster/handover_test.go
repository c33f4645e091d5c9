package cluster

import (
	"encoding/json"
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
	waitCond(p.t, b.Name+" in the proxy", func() bool { return p.has(b) })
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
// long enough to hand its sessions over.
func startDrainingBroker(t *testing.T, cluster, node, natsURL string) *broker {
	t.Helper()
	b := &broker{brokertest.Start(t, brokerBinary(t), cluster+"/"+node, []string{"--node", node, "--nats-url", natsURL},
		"COMETD_CLUSTER="+cluster, "COMETD_DRAIN_GRACE_PERIOD_MS=15000")}
	b.waitReady(t, true)
	return b
}

// ratePublisher publishes {id: m<i>} on channel through c every period until
// stopped, without waiting for each reply; c reports every outcome.
type ratePublisher struct {
	c    *client
	stop chan struct{}
	done chan struct{}
	sent atomic.Int64
}

func startRatePublisher(c *client, channel string, period time.Duration) *ratePublisher {
	p := &ratePublisher{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; i < 100_000; i++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			b, _ := json.Marshal(map[string]any{"op": "publish-async", "channel": channel, "data": payload{ID: fmt.Sprintf("m%d", i), Ch: channel}})
			if _, err := c.stdin.Write(append(b, '\n')); err != nil {
				return
			}
			p.sent.Add(1)
		}
	}()
	return p
}

// finish stops publishing, waits for every outcome, and returns the IDs
// published successfully and the failures.
func (p *ratePublisher) finish(t *testing.T) (ok []string, failed []event) {
	close(p.stop)
	<-p.done
	n := int(p.sent.Load())
	waitCond(t, fmt.Sprintf("the outcome of %d publishes", n), func() bool {
		k := 0
		for _, e := range p.c.snapshot() {
			if e.Ev == "published" || e.Ev == "publish-failed" {
				k++
			}
		}
		return k >= n
	})
	for _, e := range p.c.snapshot() {
		var pl payload
		_ = json.Unmarshal(e.Data, &pl)
		switch e.Ev {
		case "published":
			ok = append(ok, pl.ID)
		case "publish-failed":
			failed = append(failed, e)
		}
	}
	return ok, failed
}

// lossReport counts, for one client, the published IDs it never received and
// the ones it received more than once.
func lossReport(c *client, ids []string) (lost, dup int) {
	got := map[string]int{}
	for key, n := range c.received() {
		got[key[strings.IndexByte(key, ' ')+1:]] += n
	}
	for _, id := range ids {
		switch n := got[id]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	return lost, dup
}

// TestRollingRestartHandsSessionsOver replaces each of three brokers in turn
// (SIGTERM, and a new process with a new node name), behind a proxy that
// follows /readyz, while a CometD client publishes at 50 messages a second.
// The CometD clients with the ack extension, on long-polling and websocket,
// lose and duplicate nothing, keep their clientIds and never handshake again;
// no publish is refused. What the Faye clients (which have no ack) lose is
// reported.
func TestRollingRestartHandsSessionsOver(t *testing.T) {
	nodeModules(t)
	nats := startNATS(t)
	px := newReadyProxy(t)
	var gen0 []*broker
	for i := range 3 {
		b := startDrainingBroker(t, "roll", fmt.Sprintf("g0-b%d", i), nats.url())
		px.add(b)
		gen0 = append(gen0, b)
	}
	endpoint := px.srv.URL + "/cometd"
	type spec struct{ kind, transport, option string }
	var acks, fayes []*client
	for _, s := range []spec{
		{"cometd", "long-polling", "ack"}, {"cometd", "long-polling", "ack"},
		{"cometd", "websocket", "ack"}, {"cometd", "websocket", "ack"},
		{"faye", "long-polling", ""}, {"faye", "websocket", ""},
	} {
		var c *client
		if s.option != "" {
			c = startClient(t, s.kind, endpoint, s.transport, s.option)
			acks = append(acks, c)
		} else {
			c = startClient(t, s.kind, endpoint, s.transport)
			fayes = append(fayes, c)
		}
		c.subscribe("/roll/**")
	}
	all := append(append([]*client(nil), acks...), fayes...)
	ids := map[*client]string{}
	for _, c := range all {
		ids[c] = c.wait(func(e event) bool { return e.Ev == "ready" }, "ready").ClientID
	}
	pubClient := startClient(t, "cometd", endpoint, "long-polling")
	pub := startRatePublisher(pubClient, "/roll/x", 20*time.Millisecond)

	started := time.Now()
	for i, old := range gen0 {
		nb := startDrainingBroker(t, "roll", fmt.Sprintf("g1-b%d", i), nats.url())
		px.add(nb)
		before := pub.sent.Load()
		waitCond(t, "traffic before the next drain", func() bool { return pub.sent.Load() >= before+25 })
		t0 := time.Now()
		old.Stop(t) // SIGTERM; returns once the process exited
		t.Logf("%s drained and exited in %v", old.Name, time.Since(t0).Round(time.Millisecond))
		px.remove(old)
	}
	before := pub.sent.Load()
	waitCond(t, "traffic after the last drain", func() bool { return pub.sent.Load() >= before+25 })
	published, failed := pub.finish(t)
	t.Logf("%d messages published in %v, %d refused", len(published), time.Since(started).Round(time.Millisecond), len(failed))

	// Every client has had time to receive the last message.
	last := published[len(published)-1]
	for _, c := range acks {
		c.waitMessage(last)
	}
	deadline := time.Now().Add(waitTimeout)
	for _, c := range fayes {
		waitCond(t, c.name+" to settle", func() bool { return c.count(last) > 0 || time.Now().After(deadline) })
	}
	for _, c := range all {
		lost, dup := lossReport(c, published)
		t.Logf("%-28s %s: %d lost, %d duplicated of %d; %d handshakes; meta errors %v",
			c.name, ids[c], lost, dup, len(published), c.handshakes(), c.metaErrors())
		isAck := false
		for _, a := range acks {
			isAck = isAck || a == c
		}
		if isAck && (lost > 0 || dup > 0) {
			t.Errorf("ack client %s lost %d and duplicated %d of %d messages", c, lost, dup, len(published))
		}
		if n := c.handshakes(); n != 1 {
			t.Errorf("%s handshook %d times: its clientId changed", c, n)
		}
		if errs := c.metaErrors(); isAck && len(errs) > 0 {
			t.Errorf("%s saw meta errors %+v", c, errs)
		}
	}
	if n := pubClient.handshakes(); n != 1 {
		t.Errorf("the publisher handshook %d times", n)
	}
	if len(failed) > 0 {
		t.Errorf("%d publishes refused during the rolling restart: %+v", len(failed), failed[:min(len(failed), 5)])
	}
}
