package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cometd-operator/cometd-operator/internal/jsclient"
)

// subscriber is a client of the fanout test with its subscription and what it
// must receive.
type subscriber struct {
	c       *jsclient.Client
	pattern []string
	want    map[string]bool // "<pattern> <id>" it must receive, each exactly once
}

// checkExactlyOnce asserts every subscriber received exactly its wanted IDs,
// once each, and nothing else.
func checkExactlyOnce(t *testing.T, subs []subscriber) {
	t.Helper()
	for _, s := range subs {
		for key := range s.want {
			s.c.WaitMessage(key[strings.IndexByte(key, ' ')+1:])
		}
	}
	for _, s := range subs {
		for id, n := range s.c.Received() {
			switch {
			case !s.want[id]:
				t.Errorf("%s (subscribed to %v) received %q %d times; it should not have", s.c, s.pattern, id, n)
			case n != 1:
				t.Errorf("%s received %q %d times, want once", s.c, id, n)
			}
		}
	}
}

// TestFanoutAcrossBrokers subscribes third-party clients on three brokers, with
// exact and wildcard patterns, publishes from every broker, and checks that each
// client receives exactly the matching messages, once.
func TestFanoutAcrossBrokers(t *testing.T) {
	jsclient.NodeModules(t)
	nats := startNATS(t)
	bs := startCluster(t, "fanout", 3, nats)

	subs := []subscriber{
		{c: jsclient.Start(t, "cometd", bs[0].URL, "websocket"), pattern: []string{"/chat/room"}},
		{c: jsclient.Start(t, "faye", bs[1].URL, "long-polling"), pattern: []string{"/chat/*"}},
		{c: jsclient.Start(t, "cometd", bs[2].URL, "long-polling"), pattern: []string{"/chat/**"}},
		{c: jsclient.Start(t, "faye", bs[2].URL, "websocket"), pattern: []string{"/chat/*", "/chat/**"}},
		{c: jsclient.Start(t, "cometd", bs[1].URL, "long-polling"), pattern: []string{"/other"}},
	}
	for _, s := range subs {
		for _, p := range s.pattern {
			s.c.Subscribe(p)
		}
	}
	matches := func(pattern, channel string) bool {
		switch {
		case strings.HasSuffix(pattern, "/**"):
			return strings.HasPrefix(channel, strings.TrimSuffix(pattern, "**"))
		case strings.HasSuffix(pattern, "/*"):
			rest, ok := strings.CutPrefix(channel, strings.TrimSuffix(pattern, "*"))
			return ok && !strings.Contains(rest, "/")
		}
		return pattern == channel
	}
	for i := range subs {
		subs[i].want = map[string]bool{}
	}
	// Every subscriber publishes to a shallow and a deep channel, so each broker
	// publishes to every other.
	for i, pub := range subs {
		for _, ch := range []string{"/chat/room", "/chat/room/deep"} {
			id := fmt.Sprintf("%d%s", i, ch)
			pub.c.Publish(ch, id)
			for j := range subs {
				for _, p := range subs[j].pattern {
					if matches(p, ch) {
						subs[j].want[p+" "+id] = true
					}
				}
			}
		}
	}
	checkExactlyOnce(t, subs)
	for _, s := range subs {
		if errs := s.c.MetaErrors(); len(errs) != 0 {
			t.Errorf("%s saw meta errors: %+v", s.c, errs)
		}
	}
}

// roundRobin is a reverse proxy that sends each request to the next broker.
func roundRobin(t *testing.T, bs []*broker) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	targets := make([]*url.URL, len(bs))
	for i, b := range bs {
		u, err := url.Parse(strings.TrimSuffix(b.URL, "/cometd"))
		if err != nil {
			t.Fatal(err)
		}
		targets[i] = u
	}
	var next atomic.Int64
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(targets[int(next.Add(1)-1)%len(targets)])
			r.Out.Host = r.In.Host
		},
		FlushInterval: -1,
	}
	hs := httptest.NewServer(proxy)
	t.Cleanup(hs.Close)
	return hs, &next
}

// TestRoundRobinProxy puts a proxy that sends every HTTP request to the next of
// three brokers in front of the cluster: the CometD client's two connections and
// every connect, subscribe and publish land on different brokers, and none may
// meet an unknown session. Websocket clients ride along: Faye handshakes over
// HTTP and then opens its websocket, which lands on another broker.
func TestRoundRobinProxy(t *testing.T) {
	nats := startNATS(t)
	bs := startCluster(t, "proxy", 3, nats)
	proxy, requests := roundRobin(t, bs)
	endpoint := proxy.URL + "/cometd"

	var clients []*jsclient.Client
	owners := map[string]bool{}
	for _, spec := range [][2]string{
		{"cometd", "long-polling"}, {"cometd", "callback-polling"}, {"faye", "long-polling"},
		{"faye", "websocket"}, {"cometd", "websocket"},
	} {
		c := jsclient.Start(t, spec[0], endpoint, spec[1])
		clients = append(clients, c)
		owners[ownerOf(c.Wait(func(e jsclient.Event) bool { return e.Ev == "ready" }, "ready").ClientID)] = true
		c.Subscribe("/rr/**")
		requests.Add(1) // shift the rotation, so the next handshake lands elsewhere
	}
	subs := make([]subscriber, len(clients))
	for i, c := range clients {
		subs[i] = subscriber{c: c, pattern: []string{"/rr/**"}, want: map[string]bool{}}
	}
	const rounds = 5
	for r := range rounds {
		for i, c := range clients {
			id := fmt.Sprintf("r%d-c%d", r, i)
			c.Publish(fmt.Sprintf("/rr/%d", i), id)
			for j := range subs {
				subs[j].want["/rr/** "+id] = true
			}
		}
	}
	checkExactlyOnce(t, subs)
	for _, c := range clients {
		if errs := c.MetaErrors(); len(errs) != 0 {
			t.Errorf("%s saw meta errors through the proxy: %+v", c, errs)
		}
		if n := c.Handshakes(); n != 1 {
			t.Errorf("%s handshook %d times, want once", c, n)
		}
	}
	if requests.Load() < int64(len(bs)*len(clients)) {
		t.Errorf("only %d requests went through the proxy", requests.Load())
	}
	if len(owners) < 2 {
		t.Errorf("every session is owned by %v: the test must spread them", owners)
	}
	t.Logf("%d requests through the proxy; sessions owned by %v", requests.Load(), owners)
}

// TestNATSRestart kills NATS under a running cluster: /readyz fails on every
// broker while it is down, and when NATS comes back the brokers reconnect,
// resubscribe by themselves, and fanout resumes, with no duplicates.
func TestNATSRestart(t *testing.T) {
	nats := startNATS(t)
	bs := startCluster(t, "restart", 3, nats)
	subs := []*jsclient.Client{
		jsclient.Start(t, "cometd", bs[1].URL, "websocket"),
		jsclient.Start(t, "faye", bs[2].URL, "long-polling"),
	}
	pub := jsclient.Start(t, "faye", bs[0].URL, "long-polling")
	for _, sub := range subs {
		sub.Subscribe("/news")
	}
	pub.Publish("/news", "before")
	for _, sub := range subs {
		sub.WaitMessage("before")
	}

	nats.stop()
	for _, b := range bs {
		b.waitReady(t, false)
	}
	nats.start()
	for _, b := range bs {
		b.waitReady(t, true)
	}
	// The clients' sessions lived on through the outage; the subscriptions made
	// before it carry traffic again, without any client doing anything.
	for _, id := range []string{"after", "end"} {
		pub.Publish("/news", id)
		for _, sub := range subs {
			sub.WaitMessage(id)
		}
	}
	for _, sub := range subs {
		for id, n := range sub.Received() {
			if n != 1 {
				t.Errorf("%s: %q received %d times", sub, id, n)
			}
		}
		if errs := sub.MetaErrors(); len(errs) != 0 {
			t.Errorf("%s saw meta errors: %+v", sub, errs)
		}
		if n := sub.Handshakes(); n != 1 {
			t.Errorf("%s handshook %d times, want once", sub, n)
		}
	}
}

// TestClustersIsolated runs two clusters with the same node names on one NATS:
// neither sees the other's messages, and a clientId of one cluster is unknown to
// the other even though a node of the same name exists there.
func TestClustersIsolated(t *testing.T) {
	nats := startNATS(t)
	one := startCluster(t, "one", 2, nats)
	two := startCluster(t, "two", 2, nats)
	sub1 := jsclient.Start(t, "cometd", one[0].URL, "long-polling")
	sub2 := jsclient.Start(t, "faye", two[0].URL, "long-polling")
	pub1 := jsclient.Start(t, "faye", one[1].URL, "long-polling")
	pub2 := jsclient.Start(t, "cometd", two[1].URL, "long-polling")
	sub1.Subscribe("/**")
	sub2.Subscribe("/**")
	pub2.Publish("/chat", "from-two")
	sub2.WaitMessage("from-two")
	pub1.Publish("/chat", "from-one")
	sub1.WaitMessage("from-one")
	pub2.Publish("/chat", "end-two")
	sub2.WaitMessage("end-two")
	if n := sub1.Count("from-two") + sub1.Count("end-two"); n != 0 {
		t.Errorf("cluster one received %d messages of cluster two", n)
	}
	if n := sub2.Count("from-one"); n != 0 {
		t.Errorf("cluster two received %d messages of cluster one", n)
	}

	// sub1's session belongs to node b0 of cluster one; cluster two's b1 must
	// not reach cluster one's b0 for it.
	id := sub1.Wait(func(e jsclient.Event) bool { return e.Ev == "ready" }, "ready").ClientID
	body := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","advice":{"timeout":0}}]`, id)
	for _, c := range []struct {
		b       *broker
		unknown bool
	}{{one[1], false}, {two[1], true}} {
		resp, err := http.Post(c.b.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(b), "402::session_unknown"); got != c.unknown {
			t.Errorf("connect for %s on %s: %s (want unknown=%v)", id, c.b.Name, b, c.unknown)
		}
	}
}
